#!/usr/bin/env bash
# Bandwidth caps under the load generator (examples/loadgen.rs), two figures:
#
#  1. held: turnd with [quota] max_bps_per_allocation = CAP, offered twice
#     the cap per allocation (1000-byte payloads, ChannelData, echoed by the
#     peer): the payload rate each allocation achieved (loadgen's delivered
#     echoes × size / allocations, over the measured window, after a warm-up
#     that empties the burst) against CAP; the target is within ±10%.
#  2. cost: the same light load (32 allocations, 20k packets/s, 100-byte
#     payloads, under any cap) against turnd with no cap ("off") and with
#     caps so high nothing is dropped ("on": per allocation, per user and
#     server capacity, so every packet goes through all three buckets);
#     server CPU µs per relayed packet of each and on/off, per round.
#
# Rounds alternate off, on, held with a fresh turnd each run; medians are
# reported. Everything is on loopback (bench/turnd.toml's ports; clients on
# 127.10.0.0/16); every wait is bounded and every process started here is
# stopped by PID. Holds /tmp/turnd-bench.lock (as bench/compare.sh does).
#
#   bench/caps.sh --quick        # 2 rounds of 3 s measurements, about 1 minute
#   bench/caps.sh                # 3 rounds of 10 s, about 2.5 minutes
#   options: --rounds N --duration S --cap BYTES_PER_S --no-build --out FILE.md
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3 DURATION=10 CAP=125000 BUILD=1 OUT="" QUICK=0
while (($#)); do
    case $1 in
    --quick) QUICK=1 ROUNDS=2 DURATION=3 ;;
    --rounds) ROUNDS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --cap) CAP=$2; shift ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "caps.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
    shift
done
for v in ROUNDS DURATION CAP; do
    [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0)) || { echo "caps.sh: --${v,,} must be a positive integer" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "caps.sh: jq not found (apt install jq)" >&2; exit 1; }

if ((BUILD)); then
    echo "building (cargo build --release) ..." >&2
    (cd "$ROOT" && cargo build --release --quiet --bin turnd --example loadgen)
fi
TURND=$ROOT/target/release/turnd LG=$ROOT/target/release/examples/loadgen
for b in "$TURND" "$LG"; do [[ -x $b ]] || { echo "caps.sh: $b missing (build first)" >&2; exit 1; }; done
REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"

exec 9>/tmp/turnd-bench.lock
flock -w 1200 9 || { echo "caps.sh: another benchmark held the lock for 20 minutes" >&2; exit 1; }

WORK=$(mktemp -d /tmp/turnd-caps.XXXXXX)
RESULTS=$WORK/runs.jsonl
: >"$RESULTS"
PID=""
stop() {
    [[ -n $PID ]] || return 0
    kill -TERM "$PID" 2>/dev/null || true
    for _ in {1..40}; do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    kill -TERM "$PID" 2>/dev/null || true # a second SIGTERM: exit without draining
    for _ in {1..40}; do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=""
}
trap stop EXIT
trap 'exit 130' INT TERM

# bench/turnd.toml with `keys` added to its [quota] table.
config() { # name, quota keys (one per line)
    awk -v extra="$2" '{ print } /^\[quota\]$/ { print extra }' "$ROOT/bench/turnd.toml" >"$WORK/$1.toml"
}
config off ""
config on "max_bps_per_allocation = 1000000000
max_bps_per_user = 1000000000
bps_capacity = 10000000000"
config held "max_bps_per_allocation = $CAP"

ALLOCS_HELD=4 SIZE_HELD=1000
# Twice the cap per allocation, in packets/s over all allocations.
RATE_HELD=$((2 * CAP * ALLOCS_HELD / SIZE_HELD))

run() { # name, round, loadgen relay args...
    local name=$1 round=$2
    shift 2
    rm -f "$WORK/ready"
    "$TURND" --config "$WORK/$name.toml" --ready-file "$WORK/ready" >>"$WORK/turnd.log" 2>&1 &
    PID=$!
    for _ in {1..200}; do [[ -s $WORK/ready ]] && break; kill -0 "$PID" || break; sleep 0.05; done
    [[ -s $WORK/ready ]] || { echo "caps.sh: turnd did not start; see $WORK/turnd.log" >&2; exit 1; }
    if timeout $((DURATION + 60)) "$LG" --server 127.0.0.1:28478 --server-pid "$PID" relay \
        --duration "$DURATION" --warmup 2 "$@" >"$WORK/out.json" 2>>"$WORK/loadgen.log"; then
        jq -c --arg n "$name" --argjson r "$round" '{name: $n, round: $r} + .' "$WORK/out.json" >>"$RESULTS"
    else
        echo "caps.sh: loadgen failed ($name, round $round); see $WORK/loadgen.log" >&2
    fi
    stop
}

for ((r = 1; r <= ROUNDS; r++)); do
    echo "round $r/$ROUNDS ..." >&2
    run off "$r" --allocations 32 --rate 20000 --size 100
    run on "$r" --allocations 32 --rate 20000 --size 100
    run held "$r" --allocations "$ALLOCS_HELD" --rate "$RATE_HELD" --size "$SIZE_HELD"
done

median() { # jq filter over one run -> median over rounds of the named runs
    jq -s --arg n "$1" "[.[] | select(.name == \$n) | $2] | sort | if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end" "$RESULTS"
}
ACHIEVED=$(median held "(.delivered_pps * $SIZE_HELD / $ALLOCS_HELD)")
HELD_LOSS=$(median held ".loss_pct")
OFF=$(median off ".server_cpu_us_per_relayed_packet")
ON=$(median on ".server_cpu_us_per_relayed_packet")
OFF_LOSS=$(median off ".loss_pct") ON_LOSS=$(median on ".loss_pct")
RATIOS=$(jq -rs '[group_by(.round)[] | (map(select(.name == "on"))[0].server_cpu_us_per_relayed_packet) as $on
    | (map(select(.name == "off"))[0].server_cpu_us_per_relayed_packet) as $off
    | if $on and $off then ($on / $off * 100 | round / 100 | tostring) else "n/a" end] | join(", ")' "$RESULTS")
pct() { jq -n --argjson a "$1" --argjson c "$CAP" '($a / $c - 1) * 100 | . * 10 | round / 10'; }
DEV=$([[ $ACHIEVED == null ]] && echo null || pct "$ACHIEVED")
VERDICT=$(jq -n --argjson d "$DEV" 'if $d == null then "not measured" elif ($d | fabs) <= 10 then "met" else "missed" end' -r)

STAMP=$(date -u +%Y-%m-%dT%H%MZ)
SUFFIX="" FLAG=""
if ((QUICK)); then SUFFIX=-quick FLAG=" --quick"; fi
OUT=${OUT:-$ROOT/bench/results/$STAMP-caps$SUFFIX.md}
{
    echo "# Bandwidth caps: held rate and CPU cost ($STAMP, turnd $REV)"
    echo
    echo "\`bench/caps.sh$FLAG\`: $ROUNDS rounds of ${DURATION} s (after 2 s warm-up), medians;"
    echo "$(nproc) cores, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| Figure | Value |"
    echo "|---|---|"
    echo "| Cap (\`max_bps_per_allocation\`) | $CAP bytes/s |"
    echo "| Offered per allocation | $((2 * CAP)) bytes/s ($ALLOCS_HELD allocations, $SIZE_HELD-byte payloads, $RATE_HELD packets/s) |"
    echo "| Achieved per allocation (echoes × size / allocations) | $ACHIEVED bytes/s ($DEV% from the cap: ±10% $VERDICT; echo loss $HELD_LOSS%) |"
    echo "| Server CPU µs per relayed packet, caps off (32 allocations, 20k pps, 100 B) | $OFF (loss $OFF_LOSS%) |"
    echo "| Server CPU µs per relayed packet, caps on, nothing dropped | $ON (loss $ON_LOSS%) |"
    echo "| on / off per round | $RATIOS |"
    echo
    echo "Raw runs: \`$(basename "${OUT%.md}").jsonl\`."
} >"$OUT"
cp "$RESULTS" "${OUT%.md}.jsonl"
cat "$OUT"
rm -rf "$WORK"
