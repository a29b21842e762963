// turnd self-test (see src/selftest.rs). Asks the admin listener for a
// short-lived TURN credential and the server's URLs, then in this browser:
// one relay-only peer connection per transport (turn: UDP, turn: TCP,
// turns: TLS) and one for stun:, each reporting its candidate or its
// icecandidateerror (code, text) or a timeout; then two relay-only peer
// connections pass a data channel round trip. Every wait is bounded; every
// value is shown with textContent. The result is also machine-readable:
// <body data-state="done|error" data-result="passed|failed"> and the JSON
// in #summary.
"use strict";

const params = new URLSearchParams(location.search);
const TIMEOUT_MS = Math.min(60000, Math.max(1000, Number(params.get("timeout_ms")) || 10000));
const PINGS = 3;

const $ = (id) => document.getElementById(id);

function within(ms, what, promise) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

function text(tag, value, cls) {
  const el = document.createElement(tag);
  el.textContent = value == null ? "" : String(value);
  if (cls) el.className = cls;
  return el;
}

async function session(token) {
  const r = await within(TIMEOUT_MS, "the session request", fetch("session", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
    credentials: "omit",
  }));
  if (r.status === 401) throw new Error("the admin token was refused (HTTP 401)");
  if (!r.ok) throw new Error(`the session request failed (HTTP ${r.status})`);
  return r.json();
}

function describeErrors(errors) {
  return errors.map((e) => `${e.errorCode} ${e.errorText || ""}`.trim()).join("; ");
}

// One peer connection gathering over `entry.url` alone: a relay candidate
// for turn:/turns:, a server-reflexive one (or none, without a NAT) for stun:.
async function probe(entry, sess) {
  const result = { transport: entry.transport, url: entry.url, status: "not_offered",
                   candidate: null, relayProtocol: null, errors: [], reason: null, ms: null };
  if (!entry.url) {
    result.reason = "no listener of this kind is configured";
    return result;
  }
  const stun = entry.transport === "stun";
  const server = stun ? { urls: entry.url }
    : { urls: entry.url, username: sess.username, credential: sess.credential };
  const started = performance.now();
  let pc;
  try {
    pc = new RTCPeerConnection({ iceServers: [server], iceTransportPolicy: stun ? "all" : "relay" });
    pc.addEventListener("icecandidateerror", (e) => {
      result.errors.push({ errorCode: e.errorCode, errorText: e.errorText, url: e.url });
    });
    const wanted = new Promise((resolve) => {
      pc.addEventListener("icecandidate", (e) => {
        const c = e.candidate;
        if (!c || !c.candidate || result.candidate) return;
        if (c.type === (stun ? "srflx" : "relay")) {
          result.candidate = c.candidate;
          resolve();
        }
      });
    });
    const complete = gatheringComplete(pc);
    pc.createDataChannel("selftest");
    await pc.setLocalDescription(await pc.createOffer());
    try {
      await within(TIMEOUT_MS, "no candidate", Promise.race([wanted, complete]));
    } catch (_) {
      result.reason = `timed out after ${TIMEOUT_MS} ms without a ${stun ? "STUN answer" : "relay candidate"}`;
    }
    if (result.candidate && !stun) {
      // How the browser reached turnd (udp, tcp or tls), from getStats().
      for (const s of (await within(TIMEOUT_MS, "getStats", pc.getStats())).values()) {
        if (s.type === "local-candidate" && s.candidateType === "relay") {
          result.relayProtocol = s.relayProtocol ?? null;
        }
      }
    }
  } catch (err) {
    result.reason = String(err);
  } finally {
    pc?.close();
  }
  result.ms = Math.round(performance.now() - started);
  if (result.candidate) {
    result.status = "passed";
  } else if (stun && !result.reason && result.errors.length === 0) {
    // Chromium drops a server-reflexive candidate equal to a host one.
    result.status = "passed";
    result.reason = "answered; no server-reflexive candidate distinct from the host ones (no NAT on the way)";
  } else {
    result.status = "failed";
    if (result.errors.length) {
      result.reason = describeErrors(result.errors) + (result.reason ? `; ${result.reason}` : "");
    } else if (!result.reason) {
      result.reason = "gathering ended without a candidate";
    }
  }
  return result;
}

async function selectedPair(pc) {
  const stats = await pc.getStats();
  for (const s of stats.values()) {
    if (s.type !== "transport" || !s.selectedCandidatePairId) continue;
    const pair = stats.get(s.selectedCandidatePairId);
    const local = pair && stats.get(pair.localCandidateId);
    const remote = pair && stats.get(pair.remoteCandidateId);
    if (!local || !remote) return null;
    return { local: { type: local.candidateType, relayProtocol: local.relayProtocol, url: local.url },
             remote: { type: remote.candidateType } };
  }
  return null;
}

// Two relay-only peers over every offered turn:/turns: URL; `PINGS` echoes.
async function roundTrip(urls, sess) {
  const result = { status: "failed", rttMs: [], selected: null, reason: null };
  if (urls.length === 0) {
    result.reason = "no TURN transport is offered";
    return result;
  }
  const config = { iceServers: [{ urls, username: sess.username, credential: sess.credential }],
                   iceTransportPolicy: "relay" };
  const a = new RTCPeerConnection(config);
  const b = new RTCPeerConnection(config);
  for (const [pc, other] of [[a, b], [b, a]]) {
    pc.addEventListener("icecandidate", (e) => {
      if (e.candidate && e.candidate.candidate) other.addIceCandidate(e.candidate).catch(() => {});
    });
  }
  try {
    const channel = a.createDataChannel("selftest", { ordered: true });
    b.addEventListener("datachannel", (e) => {
      e.channel.addEventListener("message", (m) => e.channel.send(m.data));
    });
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    await within(TIMEOUT_MS, "the data channel to open", new Promise((resolve) => {
      if (channel.readyState === "open") resolve();
      channel.addEventListener("open", resolve);
    }));
    for (let i = 0; i < PINGS; i++) {
      const sent = performance.now();
      const echoed = new Promise((resolve) => {
        const onMessage = (m) => {
          if (m.data === `ping ${i}`) {
            channel.removeEventListener("message", onMessage);
            resolve();
          }
        };
        channel.addEventListener("message", onMessage);
      });
      channel.send(`ping ${i}`);
      await within(TIMEOUT_MS, `the echo of ping ${i}`, echoed);
      result.rttMs.push(Math.round((performance.now() - sent) * 10) / 10);
    }
    result.selected = await within(TIMEOUT_MS, "getStats", selectedPair(a));
    result.status = "passed";
  } catch (err) {
    result.reason = String(err.message || err);
    result.iceState = { a: a.iceConnectionState, b: b.iceConnectionState };
  } finally {
    a.close();
    b.close();
  }
  return result;
}

function showProbe(row, r) {
  row.replaceChildren(
    text("td", r.transport),
    text("td", r.url ?? "—"),
    text("td", r.status.replace("_", " "), r.status),
    text("td", r.candidate ? `${r.candidate}${r.relayProtocol ? ` (reached over ${r.relayProtocol})` : ""}`
      : r.reason ?? ""),
    text("td", r.ms == null ? "" : `${r.ms} ms`),
  );
}

async function run(token) {
  document.body.dataset.state = "running";
  delete document.body.dataset.result;
  $("summary").textContent = "";
  $("roundtrip").textContent = "Waiting for the transports.";
  const status = $("status");
  const summary = { started: new Date().toISOString(), timeoutMs: TIMEOUT_MS };
  try {
    status.textContent = "Asking the server for a credential…";
    const sess = await session(token);
    summary.username = sess.username;
    summary.expires = sess.expires;
    status.textContent = "Gathering candidates…";
    const tbody = $("transports").tBodies[0];
    tbody.replaceChildren();
    const rows = sess.transports.map((entry) => {
      const row = tbody.insertRow();
      showProbe(row, { transport: entry.transport, url: entry.url, status: "running", reason: "…" });
      return row;
    });
    summary.transports = await Promise.all(sess.transports.map(async (entry, i) => {
      const r = await probe(entry, sess);
      showProbe(rows[i], r);
      return r;
    }));
    status.textContent = "Data channel round trip…";
    const turnUrls = summary.transports
      .filter((t) => t.transport !== "stun" && t.status === "passed")
      .map((t) => t.url);
    summary.roundTrip = await roundTrip(turnUrls, sess);
    const rt = summary.roundTrip;
    $("roundtrip").replaceChildren(rt.status === "passed"
      ? text("span", `passed: round trips of ${rt.rttMs.join(", ")} ms over ${rt.selected?.local?.relayProtocol ?? "?"} (${rt.selected?.local?.url ?? "?"})`, "passed")
      : text("span", `failed: ${rt.reason}`, "failed"));
    const offered = summary.transports.filter((t) => t.status !== "not_offered");
    summary.result = offered.length > 0 && offered.every((t) => t.status === "passed")
      && rt.status === "passed" ? "passed" : "failed";
    status.textContent = `Done: ${summary.result}.`;
    document.body.dataset.result = summary.result;
    document.body.dataset.state = "done";
  } catch (err) {
    summary.error = String(err.message || err);
    summary.result = "failed";
    status.textContent = `Error: ${summary.error}`;
    document.body.dataset.result = "failed";
    document.body.dataset.state = "error";
  }
  $("summary").textContent = JSON.stringify(summary, null, 2);
  return summary;
}

document.addEventListener("DOMContentLoaded", () => {
  $("start").addEventListener("submit", (e) => {
    e.preventDefault();
    run($("token").value.trim());
  });
  // A token in the fragment (never sent to a server), or in the query,
  // runs the test at once; it is removed from the address bar and the
  // history first.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token") || params.get("token");
  if (token) {
    params.delete("token");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : ""));
    run(token);
  }
});
