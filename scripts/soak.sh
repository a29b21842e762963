#!/usr/bin/env bash
# Soak test: a release turnd under steady relay traffic and constant churn
# of allocations, permissions, channels and EVEN-PORT reservations
# (examples/soak_churn.rs), with its RSS and open file descriptors sampled
# every few seconds. Pass: after the warm-up, memory and fds are flat (no
# growth trend) and no relayed packet was lost.
#
#   scripts/soak.sh                     # 10 minutes (CI, or on demand)
#   scripts/soak.sh --duration 3600     # the documented 1-hour run
#
# Options (defaults in brackets):
#   --duration SECS        load time [600]
#   --warmup SECS          samples before this are not judged [60]; at least
#                          40, so the 30 s EVEN-PORT reservations reach
#                          their steady population first
#   --interval SECS        sampling period [5]
#   --rate PKTS            steady packets/s client->peer, each echoed [1000]
#   --streams N            long-lived allocations carrying them [8]
#   --churners N           threads churning allocations [2]
#   --churn-pause-ms MS    pause of each churner between allocations [25]
#   --out DIR              where the CSV, logs and report go
#                          [target/soak/<UTC timestamp>]
#   --max-rss-growth KIB   RSS at the end minus RSS at warm-up end [4096]
#   --max-rss-slope KIB    least-squares RSS slope after warm-up, KiB per
#                          minute [64]
#   --max-fd-growth N      open fds at the end minus at warm-up end [16]
#
# Everything runs on 127.0.0.1 (relay ports 61000-64999); turnd and the load
# generator are killed by PID on exit. Output: $OUT/samples.csv
# (t_s,rss_kib,fds,allocations,relay_ports,turnd_socket_drops,
# load_socket_drops), $OUT/load.json,
# $OUT/metrics.txt (the last scrape), $OUT/report.txt. Exit status 0 on
# pass, 1 on a failed check, 2 on a setup error.
set -euo pipefail

DURATION=600
WARMUP=60
INTERVAL=5
RATE=1000
STREAMS=8
CHURNERS=2
CHURN_PAUSE_MS=25
OUT=""
MAX_RSS_GROWTH=4096
MAX_RSS_SLOPE=64
MAX_FD_GROWTH=16

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --warmup) WARMUP="$2"; shift 2 ;;
        --interval) INTERVAL="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --streams) STREAMS="$2"; shift 2 ;;
        --churners) CHURNERS="$2"; shift 2 ;;
        --churn-pause-ms) CHURN_PAUSE_MS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --max-rss-growth) MAX_RSS_GROWTH="$2"; shift 2 ;;
        --max-rss-slope) MAX_RSS_SLOPE="$2"; shift 2 ;;
        --max-fd-growth) MAX_FD_GROWTH="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "soak.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in DURATION WARMUP INTERVAL RATE STREAMS CHURNERS CHURN_PAUSE_MS MAX_RSS_GROWTH MAX_RSS_SLOPE MAX_FD_GROWTH; do
    case "${!v}" in
        ''|*[!0-9]*) echo "soak.sh: ${v,,} must be a whole number, not '${!v}'" >&2; exit 2 ;;
    esac
done
if [ "$WARMUP" -lt 40 ] || [ $((WARMUP + 6 * INTERVAL)) -gt "$DURATION" ]; then
    echo "soak.sh: need 40 <= warmup and warmup + 6 samples <= duration" >&2
    exit 2
fi

cd "$(dirname "$0")/.."
OUT="${OUT:-target/soak/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"

echo "--- building release turnd and examples/soak_churn"
cargo build --release --quiet --bin turnd --example soak_churn
TURND=target/release/turnd
LOAD=target/release/examples/soak_churn

cat >"$OUT/turnd.toml" <<'EOF'
realm = "soak.turnd.test"

[listen]
udp = ["127.0.0.1:0"]
tcp = []

[relay]
bind = "127.0.0.1"
ports = "61000-64999"

[[users]]
name = "alice"
password = "secret"

[peers]
# The echo peers are on loopback.
allow = ["127.0.0.0/8"]

[quota]
# Steady streams and churners share one user.
allocations_per_user = 1000

[drain]
timeout_s = 1

[http]
listen = "127.0.0.1:0"

[log]
level = "warn"
EOF

TURND_PID=""
LOAD_PID=""
cleanup() {
    for pid in $LOAD_PID $TURND_PID; do
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
}
trap cleanup EXIT

"$TURND" --config "$OUT/turnd.toml" --ready-file "$OUT/ready.json" 2>"$OUT/turnd.log" &
TURND_PID=$!
for _ in $(seq 200); do
    [ -s "$OUT/ready.json" ] && break
    kill -0 "$TURND_PID" 2>/dev/null || { echo "soak.sh: turnd exited; see $OUT/turnd.log" >&2; exit 2; }
    sleep 0.1
done
[ -s "$OUT/ready.json" ] || { echo "soak.sh: turnd not ready within 20 s" >&2; exit 2; }
READY=$(cat "$OUT/ready.json")
UDP=$(printf '%s' "$READY" | sed -E 's/.*"udp":\["([^"]+)".*/\1/')
HTTP=$(printf '%s' "$READY" | sed -E 's/.*"http":"([^"]+)".*/\1/')
echo "--- turnd pid $TURND_PID on udp $UDP, metrics on http://$HTTP/metrics; output in $OUT"

# GET /metrics over bash's /dev/tcp (no curl needed).
scrape() {
    local host=${HTTP%:*} port=${HTTP##*:}
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$HTTP" >&3
    timeout 5 cat <&3
    exec 3<&- 3>&-
}
# Datagrams the kernel dropped on a process's UDP sockets (full receive
# buffer): the drops column of /proc/net/udp{,6} for the socket inodes it
# holds open now.
sock_drops() {
    local inodes
    inodes=$(find "/proc/$1/fd" -mindepth 1 -lname 'socket:*' -printf '%l\n' 2>/dev/null \
        | sed -nE 's/^socket:\[([0-9]+)\]$/\1/p' | tr '\n' ' ' || true)
    awk -v list="$inodes" 'BEGIN { n = split(list, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
        FNR > 1 && ($10 in want) { d += $NF } END { print d + 0 }' /proc/net/udp /proc/net/udp6
}
rcvbuf_errors() { awk '/^Udp: [0-9]/ { print $6 }' /proc/net/snmp; }
metric() { # name{labels} -> value (0 when absent)
    awk -v k="$1" '$1 == k { print $2; found = 1 } END { if (!found) print 0 }' "$OUT/scrape.txt"
}

"$LOAD" --server "$UDP" --duration "$DURATION" --rate "$RATE" --streams "$STREAMS" \
    --churners "$CHURNERS" --churn-pause-ms "$CHURN_PAUSE_MS" >"$OUT/load.json" 2>"$OUT/load.log" &
LOAD_PID=$!

echo "t_s,rss_kib,fds,allocations,relay_ports,turnd_socket_drops,load_socket_drops" >"$OUT/samples.csv"
RCVBUF_ERRORS0=$(rcvbuf_errors)
START=$(date +%s)
echo "--- sampling every ${INTERVAL}s for ${DURATION}s (warm-up ${WARMUP}s)"
# Bounded: one sample per interval until the load generator ends, and
# never more than the duration allows.
for _ in $(seq $((DURATION / INTERVAL + 30))); do
    kill -0 "$LOAD_PID" 2>/dev/null || break
    kill -0 "$TURND_PID" 2>/dev/null || { echo "soak.sh: turnd died; see $OUT/turnd.log" >&2; exit 1; }
    T=$(( $(date +%s) - START ))
    RSS=$(awk '/^VmRSS:/ { print $2 }' "/proc/$TURND_PID/status")
    FDS=$(find "/proc/$TURND_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    scrape >"$OUT/scrape.txt" 2>/dev/null || true
    ALLOCS=$(metric 'turnd_allocations_active{transport="udp"}')
    PORTS=$(metric 'turnd_relay_ports_in_use')
    TDROPS=$(sock_drops "$TURND_PID")
    LDROPS=$(sock_drops "$LOAD_PID")
    echo "$T,$RSS,$FDS,$ALLOCS,$PORTS,$TDROPS,$LDROPS" >>"$OUT/samples.csv"
    if [ $(( T % 60 )) -lt "$INTERVAL" ]; then
        echo "  t=${T}s rss=${RSS} KiB fds=${FDS} allocations=${ALLOCS} relay ports=${PORTS}"
    fi
    sleep "$INTERVAL"
done
LOAD_STATUS=0
wait "$LOAD_PID" || LOAD_STATUS=$?
RCVBUF_ERRORS=$(( $(rcvbuf_errors) - RCVBUF_ERRORS0 ))
LOAD_PID=""
scrape >"$OUT/metrics.txt" 2>/dev/null || true
cp "$OUT/metrics.txt" "$OUT/scrape.txt"
DROPS=$( (grep "^turnd_dropped_packets_total" "$OUT/metrics.txt" || true) | awk '$2 > 0' | tr "\n" " ")

kill -TERM "$TURND_PID"
for _ in $(seq 100); do kill -0 "$TURND_PID" 2>/dev/null || break; sleep 0.1; done
TURND_STATUS=0
if kill -0 "$TURND_PID" 2>/dev/null; then
    TURND_STATUS=timeout
else
    wait "$TURND_PID" || TURND_STATUS=$?
fi
TURND_PID=""

json() { # key -> number from load.json
    sed -nE "s/.*\"$1\":([0-9.eE+-]+).*/\1/p" "$OUT/load.json" | head -1
}
SENT=$(json steady_sent); RECEIVED=$(json steady_received); LOST=$(json steady_lost)
LOSS_PCT=$(json steady_loss_pct); ERRORS=$(json errors)
CHURNED=$(json churn_allocations); RESERVED=$(json churn_reservations)

# Warm-up end vs end, and the least-squares slopes after warm-up.
read -r W_T W_RSS W_FDS E_T E_RSS E_FDS N SLOPE FD_SLOPE < <(awk -F, -v w="$WARMUP" '
    NR == 1 { next }
    $1 >= w {
        if (!n) { wt = $1; wr = $2; wf = $3 }
        n++; et = $1; er = $2; ef = $3
        x = $1 / 60; sx += x; sy += $2; sxx += x * x; sxy += x * $2; sf += $3; sxf += x * $3
    }
    END {
        d = n * sxx - sx * sx
        slope = d ? (n * sxy - sx * sy) / d : 0
        fslope = d ? (n * sxf - sx * sf) / d : 0
        printf "%d %d %d %d %d %d %d %.1f %.2f\n", wt, wr, wf, et, er, ef, n, slope, fslope
    }' "$OUT/samples.csv")
RSS_GROWTH=$((E_RSS - W_RSS))
FD_GROWTH=$((E_FDS - W_FDS))

FAIL=()
[ "$LOAD_STATUS" -eq 0 ] || FAIL+=("load generator exited $LOAD_STATUS")
[ "${LOST:-1}" = 0 ] || FAIL+=("lost $LOST of $SENT steady packets")
[ "${ERRORS:-1}" = 0 ] || FAIL+=("$ERRORS load errors (see $OUT/load.json)")
[ "$N" -ge 6 ] || FAIL+=("only $N samples after warm-up")
[ "$RSS_GROWTH" -le "$MAX_RSS_GROWTH" ] || FAIL+=("RSS grew $RSS_GROWTH KiB after warm-up (max $MAX_RSS_GROWTH)")
awk -v s="$SLOPE" -v m="$MAX_RSS_SLOPE" 'BEGIN { exit !(s <= m) }' \
    || FAIL+=("RSS slope $SLOPE KiB/min after warm-up (max $MAX_RSS_SLOPE)")
[ "$FD_GROWTH" -le "$MAX_FD_GROWTH" ] || FAIL+=("open fds grew by $FD_GROWTH after warm-up (max $MAX_FD_GROWTH)")
[ "$TURND_STATUS" = 0 ] || FAIL+=("turnd exit status $TURND_STATUS after SIGTERM")

{
    echo "soak: ${DURATION}s, warm-up ${WARMUP}s, sample every ${INTERVAL}s ($N samples judged)"
    echo "load: $STREAMS streams, $RATE pkt/s each way; $CHURNERS churners: $CHURNED allocations ($RESERVED left a reservation)"
    echo "RSS:  ${W_RSS} KiB at warm-up end (t=${W_T}s), ${E_RSS} KiB at the end (t=${E_T}s): ${RSS_GROWTH} KiB; slope ${SLOPE} KiB/min"
    echo "fds:  ${W_FDS} at warm-up end, ${E_FDS} at the end: ${FD_GROWTH}; slope ${FD_SLOPE}/min"
    echo "loss: ${LOST}/${SENT} steady packets (${LOSS_PCT}%), ${RECEIVED} echoed; load errors: ${ERRORS}"
    echo "drops counted by turnd (nonzero): ${DROPS:-none}"
    echo "kernel receive-buffer drops: ${TDROPS} on turnd's sockets, ${LDROPS} on the load generator's (last sample, open sockets); ${RCVBUF_ERRORS} host-wide during the run"
    if [ ${#FAIL[@]} -eq 0 ]; then
        echo "PASS"
    else
        printf 'FAIL: %s\n' "${FAIL[@]}"
    fi
} | tee "$OUT/report.txt"
[ ${#FAIL[@]} -eq 0 ]
