#!/usr/bin/env bash
# Records what real clients we did not write send to turnd, for the fuzz
# corpus: coturn's turnutils_uclient (UDP and TCP; channels, Send
# indications, RTP/RTCP pairs with EVEN-PORT and RESERVATION-TOKEN,
# DONT-FRAGMENT) and turnutils_stunclient, through record.py, a recording
# proxy. Loopback only; every step is bounded in time.
#
#   fuzz/capture/capture.sh            # writes fuzz/capture/uclient/
#   (cd fuzz && cargo run --example seeds)   # turns captures into corpora
#
# Needs coturn's client tools (apt-get install coturn) and a built turnd
# (TURND=path, default target/release/turnd).
set -euo pipefail
cd "$(dirname "$0")/../.."

turnd=${TURND:-target/release/turnd}
out=fuzz/capture/uclient
turnd_port=34780
proxy_port=34790
peer_port=34800

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/turnd.toml" <<EOF
realm = "example.org"

[listen]
udp = ["127.0.0.1:$turnd_port"]
tcp = ["127.0.0.1:$turnd_port"]

[relay]
bind = "127.0.0.1"
ports = "35000-35199"

[[users]]
name = "alice"
password = "wonderland"

[peers]
allow = ["127.0.0.0/8"]

[http]
enabled = false
EOF

"$turnd" --config "$work/turnd.toml" --log-level warn >"$work/turnd.log" 2>&1 &
pids+=($!)
turnutils_peer -L 127.0.0.1 -p "$peer_port" >/dev/null 2>&1 &
pids+=($!)
rm -rf "$out"
python3 fuzz/capture/record.py "$proxy_port" "$turnd_port" "$out" 120 &
pids+=($!)
sleep 1

uclient() {
    echo "--- turnutils_uclient $*"
    timeout 30 turnutils_uclient -u alice -w wonderland -p "$proxy_port" \
        -e 127.0.0.1 -r "$peer_port" -n 5 -l 100 "$@" 127.0.0.1 >>"$work/uclient.log" 2>&1 || true
}
uclient -m 2           # RTP/RTCP pairs: EVEN-PORT, RESERVATION-TOKEN, channels
uclient -m 1 -c        # channels
uclient -m 1 -c -s     # Send/Data indications
uclient -m 1 -c -g     # DONT-FRAGMENT
uclient -m 1 -c -t     # TCP, channels
uclient -m 1 -c -t -s  # TCP, Send/Data indications
echo "--- turnutils_stunclient"
timeout 10 turnutils_stunclient -p "$proxy_port" 127.0.0.1 >>"$work/uclient.log" 2>&1 || true
sleep 1
echo "recorded $(ls "$out" | wc -l) files in $out"
