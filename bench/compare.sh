#!/usr/bin/env bash
# turnd vs coturn vs a bare UDP forwarder, side by side on loopback.
#
#   bench/compare.sh --quick     2 A/B rounds of 2 s: about 2-3 minutes
#   bench/compare.sh             full: 3 alternating rounds of 10 s: about 12-15 minutes
#
# Builds turnd and the examples (loadgen, forwarder) in release mode, then
# runs every scenario against a fresh server process per run, alternating
# targets (turnd, coturn, forwarder, turnd, coturn, ...). The server's CPU
# time comes from /proc/<pid>/stat (utime+stime) over the measured window,
# the whole machine's from every task's run time (/proc/*/task/*/schedstat,
# kernel threads included) over the same window, next to a run with no
# relay at all (norelay: the load generator straight to its echo peers);
# memory from /proc/<pid>/status (VmRSS). coturn's own turnutils_uclient and
# turnutils_peer give a second, independent load generator. Writes a
# markdown report to bench/results/<date>[-quick].md (and the raw runs as
# .jsonl next to it) and prints it.
#
# Options:
#   --quick            short rounds (see above)
#   --rounds N         A/B rounds per scenario (default 3, quick 2)
#   --turnd-bin PATH   benchmark this turnd binary instead of building one
#   --turnd-label TXT  how to name that binary in the report
#   --no-build         use target/release as it is
#   --workers N        turnd workers and coturn relay-threads (default nproc)
#   --forwarder-io M   batch (recvmmsg via quinn-udp, as turnd; default) or plain
#   --rates LOW,HIGH   the two fixed offered loads, packets/s (default
#                      20000,50000); Send/Data indications run at LOW
#   --only LIST        scenarios to run, comma-separated: low, high, nochan,
#                      saturate, halfsat, allocate, binding, idle, uclient
#                      (halfsat needs saturate)
#   --out FILE         report path (default bench/results/<date>[-quick].md)
#   --wait-quiet S     first wait up to S seconds for the machine to be quiet
#                      (under 25% CPU busy over 2 s) before starting
#   --no-offload       leave out turnd with its kernel fast path (the
#                      turnd-offload target: [relay] offload = "xdp:lo",
#                      needs root; without root it is left out anyway)
#   --nice N           scheduling priority for the benchmark and everything it
#                      starts (default -10 when allowed, so that unrelated jobs
#                      on the machine disturb it less; 0 to leave it alone)
#
# Needs: cargo, jq, coturn (turnserver, turnutils_uclient, turnutils_peer),
# curl (optional, for turnd's drop counters). Uses only 127.0.0.0/8, UDP
# ports 28478-28482 and relay ports 4000-27999; every wait is bounded and
# every process it starts is stopped by PID on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CMDLINE="bench/compare.sh"
(($#)) && CMDLINE+=$(printf ' %q' "$@")

QUICK=0
ROUNDS=""
TURND_BIN=""
TURND_LABEL=""
BUILD=1
WORKERS=$(nproc)
ONLY=""
OUT=""
NICE=-10
WAIT_QUIET=0
FWD_IO=batch
RATES=20000,50000
OFFLOAD=1
while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    --turnd-bin) TURND_BIN=$2; shift ;;
    --turnd-label) TURND_LABEL=$2; shift ;;
    --no-build) BUILD=0 ;;
    --workers) WORKERS=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --out) OUT=$2; shift ;;
    --nice) NICE=$2; shift ;;
    --wait-quiet) WAIT_QUIET=$2; shift ;;
    --forwarder-io) FWD_IO=$2; shift ;;
    --rates) RATES=$2; shift ;;
    --no-offload) OFFLOAD=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if ((QUICK)); then
    ROUNDS=${ROUNDS:-2} DUR=2 WARM=0.5 CTL_DUR=2 HOLD=1 UC_ARGS=(-m 20 -n 300 -z 1)
else
    ROUNDS=${ROUNDS:-3} DUR=10 WARM=2 CTL_DUR=5 HOLD=3 UC_ARGS=(-m 50 -n 500 -z 1)
fi
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "compare.sh: --rounds must be 1-99" >&2; exit 2; }
[[ $WORKERS =~ ^[1-9][0-9]?$ ]] || { echo "compare.sh: --workers must be 1-99" >&2; exit 2; }
[[ $RATES =~ ^[1-9][0-9]{2,6},[1-9][0-9]{2,6}$ ]] || { echo "compare.sh: --rates takes LOW,HIGH packets/s" >&2; exit 2; }
LOW=${RATES%,*} HIGH=${RATES#*,}
[[ $FWD_IO == batch || $FWD_IO == plain ]] || { echo "compare.sh: --forwarder-io is batch or plain" >&2; exit 2; }
ALLOCS=32      # relay allocations (each its own client socket / 5-tuple)
SIZE=100       # payload bytes
WINDOW=4       # packets in flight per allocation at saturation
IDLE_N=10000   # idle allocations for RSS per allocation
UC_SIZE=100

TURND_PORT=28478 COTURN_PORT=28479 FWD_PORT=28480 TURND_HTTP=28481 PEER_PORT=28482
# (relay ports: turnd 4000-15999, coturn 16000-27999, set in the config files)

for tool in jq turnserver turnutils_uclient turnutils_peer getconf; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool not found (apt install jq coturn)" >&2; exit 1; }
done
CLK_TCK=$(getconf CLK_TCK)
[[ $NICE =~ ^-?[0-9]+$ ]] || { echo "compare.sh: --nice must be an integer" >&2; exit 2; }
if ((NICE != 0)) && renice -n "$NICE" -p $$ >/dev/null 2>&1; then
    PRIORITY="nice $NICE (benchmark and every process it starts)"
else
    PRIORITY="nice $(nice) (not changed)"
fi

if ((BUILD)); then
    echo "building (cargo build --release) ..." >&2
    targets=(--example loadgen --example forwarder)
    [[ -z $TURND_BIN ]] && targets+=(--bin turnd)
    (cd "$ROOT" && cargo build --release --quiet "${targets[@]}")
fi
LG=$ROOT/target/release/examples/loadgen
FWD=$ROOT/target/release/examples/forwarder
TURND=${TURND_BIN:-$ROOT/target/release/turnd}
for b in "$LG" "$FWD" "$TURND"; do
    [[ -x $b ]] || { echo "compare.sh: $b missing (build first)" >&2; exit 1; }
done
if [[ -z $TURND_LABEL ]]; then
    if [[ -n $TURND_BIN ]]; then
        TURND_LABEL="$TURND_BIN"
    else
        TURND_LABEL="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo '+uncommitted src changes')"
    fi
fi

# One benchmark at a time: they would share ports and CPUs.
exec 9>/tmp/turnd-bench.lock
if ! flock -n 9; then
    echo "another bench/compare.sh is running; waiting for it (at most 20 minutes) ..." >&2
    flock -w 1200 9 || { echo "compare.sh: still busy after 20 minutes; giving up" >&2; exit 1; }
fi

WORK=$(mktemp -d /tmp/turnd-bench.XXXXXX)
mkdir -p "$WORK/logs"
RESULTS=$WORK/runs.jsonl
: >"$RESULTS"

# --- processes -------------------------------------------------------------
PIDS=()
kill_pid() { # TERM, then a second TERM (turnd: exit without draining), then KILL
    local pid=$1 i p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for i in {1..40}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in {1..20}; do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill_pid "$pid"; done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_s() { # utime+stime of a process, in seconds
    sed 's/.*) //' "/proc/$1/stat" | awk -v t="$CLK_TCK" '{printf "%.2f", ($12 + $13) / t}'
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

wait_for_file() { # path, seconds, pid that must stay alive
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        [[ -s $1 ]] && return 0
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# --- servers ---------------------------------------------------------------
# Configs: bench/turnd.toml and bench/turnserver.conf (equivalent); the
# workers / relay-threads count is added here.
grep -q "127.0.0.1:$TURND_PORT" "$ROOT/bench/turnd.toml" && grep -q "listening-port=$COTURN_PORT" "$ROOT/bench/turnserver.conf" ||
    { echo "compare.sh: bench/turnd.toml or bench/turnserver.conf does not use the ports set in compare.sh" >&2; exit 1; }
{ echo "workers = $WORKERS"; cat "$ROOT/bench/turnd.toml"; } >"$WORK/turnd.toml"
if "$TURND" --check-config --config "$WORK/turnd.toml" >/dev/null 2>&1; then
    TURND_THREADS="workers = $WORKERS"
else
    cp "$ROOT/bench/turnd.toml" "$WORK/turnd.toml"
    "$TURND" --check-config --config "$WORK/turnd.toml" >/dev/null ||
        { echo "compare.sh: turnd rejects bench/turnd.toml" >&2; exit 1; }
    TURND_THREADS="no \`workers\` key in this turnd (tokio runtime default: $(nproc) threads)"
fi
# turnd with the kernel fast path: the same config with offload on lo.
sed 's/^\[relay\]$/[relay]\noffload = "xdp:lo"/' "$WORK/turnd.toml" >"$WORK/turnd-offload.toml"
OFFLOAD_NOTE=""
if ((OFFLOAD)) && [[ $(id -u) != 0 ]]; then
    OFFLOAD=0 OFFLOAD_NOTE="turnd-offload left out: attaching XDP needs root"
elif ((OFFLOAD == 0)); then
    OFFLOAD_NOTE="turnd-offload left out (--no-offload)"
fi
# tests/daemon/offload.rs attaches to lo too (on this machine, from any worktree):
# hold its lock while the benchmark may attach.
if ((OFFLOAD)); then
    exec 8>/tmp/turnd-offload-lo.lock
    if ! flock -w 120 8; then
        OFFLOAD=0 OFFLOAD_NOTE="turnd-offload left out: lo stayed locked by the offload tests for 120 s"
    fi
fi
COTURN_ARGS=(-c "$ROOT/bench/turnserver.conf" --relay-threads "$WORKERS"
    --userdb "$WORK/coturn.db" --pidfile "$WORK/coturn.pid")

SERVER_PID="" SERVER_ADDR=""
start_server() { # turnd | coturn | forwarder; label for the logs
    local target=$1 i
    echo "=== $2" >>"$WORK/logs/$target.log"
    case $target in
    turnd | turnd-offload)
        rm -f "$WORK/turnd.ready"
        "$TURND" --config "$WORK/$target.toml" --ready-file "$WORK/turnd.ready" >>"$WORK/logs/turnd.log" 2>&1 &
        SERVER_PID=$! SERVER_ADDR=127.0.0.1:$TURND_PORT
        PIDS+=("$SERVER_PID")
        wait_for_file "$WORK/turnd.ready" 10 "$SERVER_PID" || { echo "turnd did not start; see $WORK/logs/turnd.log" >&2; exit 1; }
        ;;
    norelay)
        # No server: the load generator sends straight to its echo peers.
        SERVER_PID="" SERVER_ADDR=127.0.0.1:$TURND_PORT
        ;;
    coturn)
        turnserver "${COTURN_ARGS[@]}" >>"$WORK/logs/coturn.log" 2>&1 &
        SERVER_PID=$! SERVER_ADDR=127.0.0.1:$COTURN_PORT
        PIDS+=("$SERVER_PID")
        # Ready when it answers a Binding request (bounded: 50 probes).
        for ((i = 0; i < 50; i++)); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            if "$LG" --server "$SERVER_ADDR" --timeout-ms 100 binding --parallel 1 --window 1 --duration 0.1 2>/dev/null |
                jq -e '.responses > 0' >/dev/null; then
                return 0
            fi
            sleep 0.1
        done
        echo "coturn did not start; see $WORK/logs/coturn.log" >&2
        exit 1
        ;;
    forwarder)
        rm -f "$WORK/fwd.ready"
        "$FWD" --listen "127.0.0.1:$FWD_PORT" --workers "$WORKERS" --io "$FWD_IO" --exit-after 900 --ready-file "$WORK/fwd.ready" \
            >>"$WORK/logs/forwarder.log" 2>&1 &
        SERVER_PID=$! SERVER_ADDR=127.0.0.1:$FWD_PORT
        PIDS+=("$SERVER_PID")
        wait_for_file "$WORK/fwd.ready" 10 "$SERVER_PID" || { echo "forwarder did not start" >&2; exit 1; }
        ;;
    esac
}
stop_server() {
    [[ -n $SERVER_PID ]] && kill_pid "$SERVER_PID"
    SERVER_PID=""
}
offload_active() { # turnd's gauge: is its XDP program attached?
    command -v curl >/dev/null || return 1
    curl -s --max-time 2 "http://127.0.0.1:$TURND_HTTP/metrics" 2>/dev/null | grep -q '^turnd_offload_active 1$'
}

scrape_turnd_drops() { # turnd's drop counters after a run, into the metrics log
    command -v curl >/dev/null || return 0
    curl -s --max-time 2 "http://127.0.0.1:$TURND_HTTP/metrics" 2>/dev/null |
        awk -v run="$1" '/^turnd_dropped_packets_total/ && $2 > 0 {print run, $1, $2}' >>"$WORK/logs/turnd-drops.log" || true
}

# --- runs --------------------------------------------------------------------
record() { # scenario target round json-file [extra-json]
    local extra=${5:-}
    [[ -n $extra ]] || extra='{}'
    jq -c --arg s "$1" --arg t "$2" --argjson r "$3" --argjson x "$extra" \
        '. + $x + {scenario: $s, target: $t, round: $r}' "$4" >>"$RESULTS"
}
record_failure() {
    jq -nc --arg s "$1" --arg t "$2" --argjson r "$3" --arg e "$4" \
        '{scenario: $s, target: $t, round: $r, failed: $e}' >>"$RESULTS"
    echo "  $1/$2 round $3 FAILED: $4" >&2
}

loadgen_run() { # scenario target round loadgen-args...
    local scen=$1 target=$2 round=$3
    shift 3
    start_server "$target" "$scen round $round"
    local out=$WORK/out.json pid_args=()
    echo "  $scen: $target (round $round)" >&2
    if [[ $target == turnd-offload ]] && ! offload_active; then
        record_failure "$scen" "$target" "$round" "turnd could not attach its XDP program (see its log)"
        stop_server
        return 0
    fi
    [[ -n $SERVER_PID ]] && pid_args=(--server-pid "$SERVER_PID")
    if "$LG" --server "$SERVER_ADDR" "${pid_args[@]}" "$@" >"$out" 2>>"$WORK/logs/loadgen.log"; then
        record "$scen" "$target" "$round" "$out"
    else
        record_failure "$scen" "$target" "$round" "loadgen exited $?"
    fi
    [[ $target == turnd* ]] && scrape_turnd_drops "$scen/$round"
    stop_server
    return 0
}

median() { # scenario target jq-path -> median over rounds (or empty)
    jq -rs --arg s "$1" --arg t "$2" "
        [.[] | select(.scenario == \$s and .target == \$t and (.failed | not)) | $3 | numbers] | sort |
        if length == 0 then empty elif length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end" "$RESULTS"
}
spread() { # "min-max" over rounds, when there are several
    jq -rs --arg s "$1" --arg t "$2" "
        [.[] | select(.scenario == \$s and .target == \$t and (.failed | not)) | $3 | numbers] |
        map(. * 100 | round / 100) | if length > 1 and min != max then \"\(min)-\(max)\" else empty end" "$RESULTS"
}

want() { [[ -z $ONLY || ,$ONLY, == *,$1,* ]]; }
relay_args=(relay --allocations "$ALLOCS" --size "$SIZE" --duration "$DUR" --warmup "$WARM")
fwd_args=(--raw-forwarder "127.0.0.1:$FWD_PORT")

relay_scenario() { # name targets loadgen-args...
    local name=$1 targets=$2 r t extra
    shift 2
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in $targets; do
            extra=()
            [[ $t == forwarder ]] && extra=("${fwd_args[@]}")
            [[ $t == norelay ]] && extra=(--direct)
            loadgen_run "$name" "$t" "$r" "${relay_args[@]}" "$@" "${extra[@]}"
        done
    done
}

busy_pct() { # share of all CPUs not idle over the next 2 s (everyone's work)
    local a b
    read -ra a </proc/stat
    sleep 2
    read -ra b </proc/stat
    awk -v a="${a[*]:1:8}" -v b="${b[*]:1:8}" 'BEGIN {
        split(a, x); split(b, y); t = 0; for (i = 1; i <= 8; i++) t += y[i] - x[i]
        idle = (y[4] + y[5]) - (x[4] + x[5]); printf "%d", (t > 0) ? 100 * (t - idle) / t : 0 }'
}
[[ $WAIT_QUIET =~ ^[0-9]+$ ]] || { echo "compare.sh: --wait-quiet takes seconds" >&2; exit 2; }
BUSY=$(busy_pct)
if ((WAIT_QUIET > 0)); then
    deadline=$(($(date +%s) + WAIT_QUIET))
    while ((BUSY >= 25 && $(date +%s) < deadline)); do
        echo "machine ${BUSY}% busy; waiting for it to quiet down (until $(date -d @$deadline +%T))" >&2
        sleep 8
        BUSY=$(busy_pct)
    done
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)
echo "runs in $WORK (logs in $WORK/logs)" >&2

RELAY_TARGETS="turnd coturn forwarder norelay"
((OFFLOAD)) && RELAY_TARGETS+=" turnd-offload"
want low && relay_scenario low "$RELAY_TARGETS" --rate "$LOW"
want high && relay_scenario high "$RELAY_TARGETS" --rate "$HIGH"
want nochan && relay_scenario nochan "turnd coturn" --rate "$LOW" --no-channels
want saturate && relay_scenario saturate "$RELAY_TARGETS" --saturate --window "$WINDOW"
HALF_RATE=""
if want halfsat; then
    sat=$(median saturate turnd .delivered_pps)
    if [[ -n $sat ]]; then
        HALF_RATE=$(awk -v s="$sat" 'BEGIN {printf "%d", s / 2}')
        relay_scenario halfsat "turnd coturn forwarder" --rate "$HALF_RATE"
    else
        echo "  halfsat skipped: no saturation figure for turnd" >&2
    fi
fi
if want allocate; then
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in turnd coturn; do
            loadgen_run allocate "$t" "$r" allocate --parallel 16 --duration "$CTL_DUR"
        done
    done
fi
if want binding; then
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in turnd coturn; do
            loadgen_run binding "$t" "$r" binding --parallel 4 --window 16 --duration "$CTL_DUR"
        done
    done
fi
if want idle; then
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in turnd coturn; do
            start_server "$t" "idle round $r"
            echo "  idle: $t (round $r)" >&2
            sleep 0.3
            rss0=$(rss_kib "$SERVER_PID")
            rm -f "$WORK/idle.ready"
            "$LG" --server "$SERVER_ADDR" --server-pid "$SERVER_PID" idle --allocations "$IDLE_N" --parallel 32 \
                --hold "$HOLD" --ready-file "$WORK/idle.ready" >"$WORK/out.json" 2>>"$WORK/logs/loadgen.log" &
            lg=$!
            PIDS+=("$lg")
            if wait_for_file "$WORK/idle.ready" 120 "$lg"; then
                rss1=$(rss_kib "$SERVER_PID")
                n=$(jq .allocations "$WORK/idle.ready")
                if wait "$lg"; then
                    record idle "$t" "$r" "$WORK/out.json" "$(jq -nc --argjson a "$rss0" --argjson b "$rss1" --argjson n "$n" \
                        '{script_rss_before_kib: $a, script_rss_after_kib: $b, script_rss_bytes_per_allocation: (($b - $a) * 1024 / $n | round)}')"
                else
                    record_failure idle "$t" "$r" "loadgen failed"
                fi
            else
                kill_pid "$lg"
                record_failure idle "$t" "$r" "allocations not open within 120 s"
            fi
            [[ $t == turnd ]] && scrape_turnd_drops "idle/$r"
            stop_server
        done
    done
fi
if want uclient; then
    turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >>"$WORK/logs/turnutils_peer.log" 2>&1 &
    peer=$!
    PIDS+=("$peer")
    sleep 0.3
    for ((r = 1; r <= ROUNDS; r++)); do
        for t in turnd coturn; do
            start_server "$t" "uclient round $r"
            echo "  uclient: $t (round $r)" >&2
            port=${SERVER_ADDR##*:}
            c0=$(cpu_s "$SERVER_PID") t0=$(date +%s.%N)
            if timeout 180 turnutils_uclient -u alice -w secret -p "$port" -e 127.0.0.1 -r "$PEER_PORT" \
                "${UC_ARGS[@]}" -l "$UC_SIZE" -c 127.0.0.1 >"$WORK/uclient.out" 2>&1; then
                c1=$(cpu_s "$SERVER_PID") t1=$(date +%s.%N)
                cat "$WORK/uclient.out" >>"$WORK/logs/uclient.log"
                sent=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\1/p' "$WORK/uclient.out" | tail -1)
                recv=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\2/p' "$WORK/uclient.out" | tail -1)
                lost=$(sed -n 's/.*Total lost packets \([0-9]*\) (\([0-9.]*\)%).*/\2/p' "$WORK/uclient.out" | tail -1)
                rtt=$(sed -n 's/.*Average round trip delay \([0-9.]*\) ms.*/\1/p' "$WORK/uclient.out" | tail -1)
                tx=$(sed -n 's/.*Total transmit time is \([0-9]*\).*/\1/p' "$WORK/uclient.out" | tail -1)
                jq -n --argjson s "${sent:-0}" --argjson r "${recv:-0}" --argjson l "${lost:-null}" \
                    --argjson rtt "${rtt:-null}" --argjson tx "${tx:-null}" --argjson c0 "$c0" --argjson c1 "$c1" \
                    --argjson t0 "$t0" --argjson t1 "$t1" --arg args "${UC_ARGS[*]} -l $UC_SIZE -c" \
                    '{mode: "uclient", uclient_args: $args, sent: $s, received: $r, loss_pct: $l, avg_rtt_ms: $rtt,
                      transmit_s: $tx, wall_s: (($t1 - $t0) * 100 | round / 100), server_cpu_s: ($c1 - $c0),
                      server_cpu_us_per_relayed_packet: (if $s + $r > 0 then (($c1 - $c0) * 1e6 / ($s + $r) * 100 | round / 100) else null end)}' \
                    >"$WORK/out.json"
                record uclient "$t" "$r" "$WORK/out.json"
            else
                cat "$WORK/uclient.out" >>"$WORK/logs/uclient.log"
                record_failure uclient "$t" "$r" "turnutils_uclient failed or timed out"
            fi
            [[ $t == turnd ]] && scrape_turnd_drops "uclient/$r"
            stop_server
        done
    done
    kill_pid "$peer"
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - STARTED))

# --- report ------------------------------------------------------------------
fmt() { # a number for the table
    [[ -z $1 ]] && { echo "-"; return; }
    awk -v v="$1" 'BEGIN {a = v < 0 ? -v : v; if (a >= 100) printf "%.0f", v; else if (a >= 10) printf "%.1f", v; else printf "%.2f", v}'
}
ratio() { [[ -z $1 || -z $2 ]] && { echo "-"; return; }; awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "-"; else printf "%.2f", a / b}'; }
verdict() { # ratio op bound -> met/MISSED
    [[ $1 == - || -z $3 ]] && { echo ""; return; }
    awk -v r="$1" -v op="$2" -v b="$3" 'BEGIN {ok = (op == "<=") ? r <= b : r >= b; printf "%s (target %s %s)", ok ? "met" : "**MISSED**", op, b}'
}
cell() { # scenario target path
    local m s
    m=$(median "$1" "$2" "$3")
    s=$(spread "$1" "$2" "$3")
    if [[ -n $s ]]; then echo "$(fmt "$m") ($s)"; else fmt "$m"; fi
}
# row: label scenario path targets vs-coturn-op bound vs-fwd-op bound
NO_RATIO=0
row_abs() { NO_RATIO=1; row "$@"; NO_RATIO=0; } # a row whose ratios mean nothing (loss)
row() {
    local label=$1 scen=$2 path=$3 targets=$4 cop=${5:-} cb=${6:-} fop=${7:-} fb=${8:-}
    local t c f rc rf
    t=$(median "$scen" turnd "$path")
    c=$(median "$scen" coturn "$path")
    f=""
    [[ $targets == *forwarder* ]] && f=$(median "$scen" forwarder "$path")
    rc=$(ratio "$t" "$c")
    rf=$(ratio "$t" "$f")
    if ((NO_RATIO)); then rc="" rf=""; fi
    local fcell="n/a"
    [[ $targets == *forwarder* ]] && fcell=$(cell "$scen" forwarder "$path")
    local notes
    notes=$(echo "$(verdict "$rc" "$cop" "$cb") $(verdict "$rf" "$fop" "$fb")" | sed 's/^ *//; s/ *$//')
    echo "| $label | $(cell "$scen" turnd "$path") | $(cell "$scen" coturn "$path") | $fcell | $rc | $rf | $notes |"
}

STEM=$(date -u +%Y-%m-%dT%H%MZ)
if ((QUICK)); then STEM+=-quick; fi
OUT=${OUT:-$ROOT/bench/results/$STEM.md}
mkdir -p "$(dirname "$OUT")"
cp "$RESULTS" "${OUT%.md}.jsonl"
FAILED=$(jq -s '[.[] | select(.failed)] | length' "$RESULTS")

{
    echo "# turnd vs coturn vs bare forwarder: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$CMDLINE\` ($( ((QUICK)) && echo quick || echo full) mode, $ROUNDS A/B round(s) per scenario, ${ELAPSED} s)"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| Machine | $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM |"
    echo "| Kernel | $(uname -sr) |"
    echo "| turnd | $TURND_LABEL; $TURND_THREADS |"
    echo "| coturn | $(turnserver --version 2>/dev/null | tail -1) ; relay-threads $WORKERS |"
    echo "| forwarder | examples/forwarder.rs, $WORKERS workers (SO_REUSEPORT, one tokio current-thread runtime each), \`--io $FWD_IO\` ($([[ $FWD_IO == batch ]] && echo "recvmmsg through quinn-udp" || echo "one recv_from per datagram"), one sendto per datagram) |"
    echo "| Other load | CPUs ${BUSY}% busy just before starting; load average $LOAD_START at start, $LOAD_END at end (1, 5, 15 min) |"
    echo "| Priority | $PRIORITY |"
    echo
    if ((BUSY >= 25)); then
        echo "**Warning: the machine was busy with other work when this started (CPUs ${BUSY}% busy,"
        echo "1-minute load average ${LOAD_START%% *} on $(nproc) cores): treat throughput and latency"
        echo "as noisy; CPU time per packet is the least affected figure.**"
        echo
    fi
    echo "Medians over the rounds (min-max in brackets when there are several). Ratios are"
    echo "turnd/coturn and turnd/forwarder of the medians; targets are those of issue 4."
    echo
    echo "| Figure | turnd | coturn | forwarder | turnd/coturn | turnd/fwd | target |"
    echo "|---|---|---|---|---|---|---|"
    row "Server CPU µs per relayed packet, ChannelData @$LOW pps" low .server_cpu_us_per_relayed_packet "turnd coturn forwarder" "<=" 0.5
    row_abs "Loss % @$LOW pps" low .loss_pct "turnd coturn forwarder"
    row "RTT p50 µs @$LOW pps" low .rtt_us.p50 "turnd coturn forwarder"
    row "RTT p99 µs @$LOW pps" low .rtt_us.p99 "turnd coturn forwarder"
    row "RTT p99.9 µs @$LOW pps" low .rtt_us.p999 "turnd coturn forwarder"
    row "Server CPU µs per relayed packet, ChannelData @$HIGH pps" high .server_cpu_us_per_relayed_packet "turnd coturn forwarder" "<=" 0.5
    row "Delivered pps @$HIGH offered" high .delivered_pps "turnd coturn forwarder"
    row_abs "Loss % @$HIGH pps" high .loss_pct "turnd coturn forwarder"
    row "Server CPU µs per relayed packet, Send/Data indications @$LOW pps" nochan .server_cpu_us_per_relayed_packet "turnd coturn" "<=" 0.5
    row_abs "Loss % Send/Data @$LOW pps" nochan .loss_pct "turnd coturn"
    row "Saturation: delivered pps (closed loop, $WINDOW×$ALLOCS in flight)" saturate .delivered_pps "turnd coturn forwarder" ">=" 1.5 ">=" 0.7
    row "Server CPU µs per relayed packet at saturation" saturate .server_cpu_us_per_relayed_packet "turnd coturn forwarder"
    row "RTT p99 µs @${HALF_RATE:-?} pps (half turnd's saturation)" halfsat .rtt_us.p99 "turnd coturn forwarder"
    row "RTT p50 µs @${HALF_RATE:-?} pps" halfsat .rtt_us.p50 "turnd coturn forwarder"
    row_abs "Loss % @${HALF_RATE:-?} pps" halfsat .loss_pct "turnd coturn forwarder"
    row "Allocations/s (401 + signed Allocate + Refresh 0, 16 in parallel)" allocate .allocations_per_s "turnd coturn" ">=" 10
    row "Server CPU µs per allocation" allocate .server_cpu_us_per_allocation "turnd coturn"
    row "Binding responses/s (4 sockets × 16 in flight)" binding .responses_per_s "turnd coturn" ">=" 2
    row "Server CPU µs per Binding response" binding .server_cpu_us_per_response "turnd coturn"
    row "RSS bytes per idle allocation ($IDLE_N allocations)" idle .script_rss_bytes_per_allocation "turnd coturn" "<=" 1
    row "turnutils_uclient: server CPU µs per relayed packet" uclient .server_cpu_us_per_relayed_packet "turnd coturn" "<=" 0.5
    row_abs "turnutils_uclient: loss %" uclient .loss_pct "turnd coturn"
    row "turnutils_uclient: avg RTT ms (its own, 1 ms resolution)" uclient .avg_rtt_ms "turnd coturn"
    echo
    a=$(median halfsat turnd .rtt_us.p99)
    b=$(median halfsat forwarder .rtt_us.p99)
    la=$(median halfsat turnd .loss_pct)
    lb=$(median halfsat forwarder .loss_pct)
    if [[ -n $a && -n $b ]] && awk -v a="$la" -v b="$lb" 'BEGIN {exit !(a <= 0.1 && b <= 0.1)}'; then
        added=$(awk -v a="$a" -v b="$b" 'BEGIN {print a - b}')
        if awk -v d="$added" 'BEGIN {exit !(d < 0)}'; then
            echo "p99 round trip added by turnd over the bare forwarder at ${HALF_RATE} pps: none measurable (turnd's p99 was $(fmt "${added#-}") µs below the forwarder's; target < 100 µs)."
        else
            echo "p99 round trip added by turnd over the bare forwarder at ${HALF_RATE} pps: $(fmt "$added") µs (target < 100 µs)."
        fi
        echo
    elif [[ -n $a && -n $b ]]; then
        echo "p99 round trip added by turnd over the bare forwarder: not computed, one of them lost packets at ${HALF_RATE} pps."
        echo
    fi
    echo "## Whole-machine CPU per relayed packet"
    echo
    echo "With the kernel fast path, relaying happens in softirq context, charged to whichever"
    echo "task was running (often the load generator), so a server's own CPU time no longer"
    echo "measures its cost. Here: the run time of every task on the machine (kernel threads"
    echo "included, /proc/*/task/*/schedstat) over the measured window, per relayed packet; the"
    echo "relay's cost is that minus the same figure with no relay at all (norelay: the load"
    echo "generator straight to its echo peers). Process CPU is the server's utime+stime."
    if [[ -n $OFFLOAD_NOTE ]]; then echo; echo "($OFFLOAD_NOTE.)"; fi
    echo
    echo "| Load | Figure | no relay | forwarder | coturn | turnd | turnd offload |"
    echo "|---|---|---|---|---|---|---|"
    for scen in low high saturate; do
        want "$scen" || continue
        case $scen in low) load="$LOW pps" ;; high) load="$HIGH pps" ;; saturate) load="saturation" ;; esac
        base=$(median "$scen" norelay .machine_cpu_us_per_relayed_packet)
        cost_cells="" mach_cells="" proc_cells="" pps_cells="" loss_cells=""
        for t in norelay forwarder coturn turnd turnd-offload; do
            m=$(median "$scen" "$t" .machine_cpu_us_per_relayed_packet)
            mach_cells+=" $(fmt "$m") |"
            if [[ -n $m && -n $base && $t != norelay ]]; then
                cost_cells+=" $(fmt "$(awk -v a="$m" -v b="$base" 'BEGIN {print a - b}')") |"
            else
                cost_cells+=" - |"
            fi
            proc_cells+=" $(fmt "$(median "$scen" "$t" .server_cpu_us_per_relayed_packet)") |"
            pps_cells+=" $(fmt "$(median "$scen" "$t" .delivered_pps)") |"
            loss_cells+=" $(fmt "$(median "$scen" "$t" .loss_pct)") |"
        done
        echo "| $load | machine CPU µs per relayed packet |$mach_cells"
        echo "| $load | **relay cost µs** (machine minus no relay) |$cost_cells"
        echo "| $load | process CPU µs per relayed packet |$proc_cells"
        echo "| $load | delivered pps |$pps_cells"
        echo "| $load | loss % |$loss_cells"
    done
    echo
    cost() { # scenario target -> relay cost (median machine figure minus norelay's)
        local m b
        m=$(median "$1" "$2" .machine_cpu_us_per_relayed_packet)
        b=$(median "$1" norelay .machine_cpu_us_per_relayed_packet)
        [[ -n $m && -n $b ]] && awk -v a="$m" -v b="$b" 'BEGIN {print a - b}'
    }
    for scen in low high; do
        want "$scen" || continue
        a=$(cost "$scen" turnd-offload) b=$(cost "$scen" coturn)
        if [[ -n $a && -n $b ]] && awk -v a="$a" -v b="$b" 'BEGIN {exit !(a > 0 && b > 0)}'; then
            r=$(ratio "$a" "$b")
            echo "- Relay cost, turnd offload / coturn @$([[ $scen == low ]] && echo "$LOW" || echo "$HIGH") pps: $r $(verdict "$r" "<=" 0.25)"
        else
            echo "- Relay cost, turnd offload / coturn @$([[ $scen == low ]] && echo "$LOW" || echo "$HIGH") pps: not meaningful (a relay cost is not positive: other work on the machine moved the whole-machine figure more than the relay did)"
        fi
        r=$(ratio "$(median "$scen" turnd-offload .server_cpu_us_per_relayed_packet)" "$(median "$scen" coturn .server_cpu_us_per_relayed_packet)")
        echo "- Process CPU, turnd offload / coturn @$([[ $scen == low ]] && echo "$LOW" || echo "$HIGH") pps: $r $(verdict "$r" "<=" 0.1)"
    done
    if want saturate; then
        r=$(ratio "$(median saturate turnd-offload .delivered_pps)" "$(median saturate norelay .delivered_pps)")
        echo "- Saturation, delivered pps turnd offload / no relay: $r $(verdict "$r" ">=" 0.8)"
        r=$(ratio "$(median saturate turnd-offload .delivered_pps)" "$(median saturate coturn .delivered_pps)")
        echo "- Saturation, delivered pps turnd offload / coturn: $r $(verdict "$r" ">=" 1)"
    fi
    echo
    echo "## How it was measured"
    echo
    echo "- Everything runs on this one machine: load generator, echo peer and server share"
    echo "  its $(nproc) cores, so throughput at saturation depends on how the scheduler shares"
    echo "  them. Server CPU time per relayed packet at a fixed offered load is the robust"
    echo "  figure: utime+stime of the server process from /proc/<pid>/stat over the measured"
    echo "  window, divided by the packets it relayed (each echo is two: client to peer and back)."
    echo "- Each run uses a fresh server process. Relay runs: $ALLOCS allocations (own 5-tuples,"
    echo "  sources spread over 127.10.0.0/16), permission + ChannelBind (or Send/Data indications),"
    echo "  $SIZE-byte payloads to one UDP echo peer, ${WARM} s warm-up then ${DUR} s measured, paced"
    echo "  evenly (the sender wakes about every 60 µs; descheduled for more than 1 ms, it skips the"
    echo "  backlog rather than burst it, and says so below). Saturation is closed loop, $WINDOW packets in"
    echo "  flight per allocation. RTT is measured by the load generator (timestamp in the payload)"
    echo "  and includes its own and the echo peer's scheduling."
    echo "- Equivalent configs, bench/turnd.toml and bench/turnserver.conf: realm \`bench\`, user"
    echo "  alice:secret (long-term credentials), listening on 127.0.0.1 (UDP and TCP), 12000 relay"
    echo "  ports each, loopback peers allowed, quotas out of the way, $WORKERS workers / relay-threads."
    echo "  turnd's per-IP limit on unauthenticated responses is **off** (\`unauthenticated_per_s = 0\`)"
    echo "  so that Binding and allocation rates measure the server, not the limiter; coturn has no"
    echo "  such limit. coturn runs as \`turnserver -c bench/turnserver.conf --relay-threads $WORKERS\`"
    echo "  (plus a per-run userdb and pidfile) and logs every session at its default level, to a"
    echo "  file; turnd logs at \`warn\`."
    echo "- The forwarder is examples/forwarder.rs: the same relay data path without TURN (client"
    echo "  to listener, per-client relay socket to the peer and back) with the same I/O: the floor"
    echo "  of that I/O style on this machine."
    echo "- turnutils_uclient: \`turnutils_uclient -u alice -w secret -e 127.0.0.1 -r $PEER_PORT ${UC_ARGS[*]} -l $UC_SIZE -c\`"
    echo "  against turnutils_peer; its own counts; server CPU read from /proc around the whole run"
    echo "  (setup included)."
    echo
    echo "## Anomalies"
    echo
    if [[ $FAILED != 0 ]]; then
        echo "- $FAILED run(s) failed:"
        jq -r 'select(.failed) | "  - \(.scenario)/\(.target) round \(.round): \(.failed)"' "$RESULTS"
    fi
    jq -r 'select(.failed | not) | . as $run |
        [ (if (.setup_failures // {}) != {} then "setup failures \(.setup_failures)" else empty end),
          (if (.failures // {}) != {} then "failures \(.failures)" else empty end),
          (if (.free_failures // {}) != {} then "Refresh-0 failures \(.free_failures)" else empty end),
          (if (.unexpected_datagrams // 0) > 0 then "\(.unexpected_datagrams) unexpected datagrams" else empty end),
          (if (.misrouted // 0) > 0 then "\(.misrouted) misrouted" else empty end),
          (if (.sender_skipped // 0) > 0 then "paced sender fell behind, skipped \(.sender_skipped)" else empty end),
          (if (.written_off_in_flight // 0) > 0 then "\(.written_off_in_flight) written off in flight" else empty end),
          (if (.written_off // 0) > 0 then "\(.written_off) Binding requests unanswered" else empty end),
          (if (.lost // 0) > 0 then "lost \(.lost) of \(.sent)" else empty end),
          (if (.host_udp_rcvbuf_errors // 0) > 0 then "kernel dropped \(.host_udp_rcvbuf_errors) datagrams on full socket buffers (host-wide)" else empty end)
        ] | select(length > 0) | "- \($run.scenario)/\($run.target) round \($run.round): \(join(", "))"' "$RESULTS"
    if [[ -s $WORK/logs/turnd-drops.log ]]; then
        echo "- turnd drop counters (turnd_dropped_packets_total, non-zero, per run):"
        sed 's/^/  - /' "$WORK/logs/turnd-drops.log"
    fi
    tw=$(grep -cE ' (WARN|ERROR) ' "$WORK/logs/turnd.log" || true)
    echo "- turnd log: $tw WARN/ERROR line(s)$( ((tw > 0)) && echo ', most frequent:')"
    if ((tw > 0)); then
        grep -E ' (WARN|ERROR) ' "$WORK/logs/turnd.log" | sed -E 's/^[^ ]+ +//; s/[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+:[0-9]+/ADDR/g' |
            sort | uniq -c | sort -rn | head -5 | sed 's/^ */  - /'
    fi
    ce=$(grep -ciE 'error' "$WORK/logs/coturn.log" || true)
    echo "- coturn log: $ce line(s) mentioning errors"
    echo
    echo "Raw runs: \`$(basename "${OUT%.md}.jsonl")\`; logs were in \`$WORK/logs\`."
} >"$OUT"

cat "$OUT"
echo >&2
echo "report: $OUT" >&2
