#!/usr/bin/env bash
# Airlock on the shared webhook workload (/work/shared/bench/README.md), end to end:
# wrk -> `airlock serve` (sync webhook, durable in the embedded SQLite store) -> node sink.
#
#   bench/webhook/run.sh [--repeats N] [--duration S] [--warmup S] [--concurrency 1,32]
#                        [--dir PATH] [--no-build] [--binary PATH] [--keep] [--relay]
#
# --relay measures the bare relay (`airlock-bench relay`: the same workload, nothing stored)
# instead of Airlock: this machine's ceiling, to read Airlock's figures against.
#
# Every repeat starts from a fresh project, a fresh store, a fresh sink and a fresh server.
# See bench/webhook/README.md for what is measured and how to read it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SHARED="${SHARED_BENCH:-/work/shared/bench}"
REPEATS=3
DURATION=20
WARMUP=5
CONCURRENCY="1,32"
BASE_DIR="${TMPDIR:-/var/tmp}"
BUILD=1
BINARY=""
KEEP=0
RELAY=0
SINK_PORT=18999
LISTEN=127.0.0.1:8080

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --repeats) REPEATS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --dir) BASE_DIR="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --binary) BINARY="$2"; BUILD=0; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --relay) RELAY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || { echo "--repeats N, N >= 1" >&2; exit 2; }
URL="http://$LISTEN/hooks/staging/orders"
SINK="http://127.0.0.1:$SINK_PORT"
HZ="$(getconf CLK_TCK)"
NCPU="$(nproc)"

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
SERVER_PID=""
SINK_PID=""
WRK_PID=""
WORK=""
stop_pid() { # PID: TERM, wait up to 5 s, then KILL; only processes this script started
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_all() {
  stop_pid "$WRK_PID"; WRK_PID=""
  stop_pid "$SERVER_PID"; SERVER_PID=""
  stop_pid "$SINK_PID"; SINK_PID=""
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
      say "kept: $WORK (projects, server and sink logs, wrk outputs)"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
command -v curl >/dev/null || die "curl is needed"
if ! command -v wrk >/dev/null; then
  say "installing wrk"
  if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >&2; else sudo apt-get install -y wrk >&2; fi
fi
command -v wrk >/dev/null || die "wrk is missing and could not be installed"
command -v node >/dev/null || die "node is needed for the sink ($SHARED/sink.js)"
[ -f "$SHARED/sink.js" ] && [ -f "$SHARED/order.lua" ] || die "no $SHARED/sink.js or order.lua"

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
listening "$SINK_PORT" && die "port $SINK_PORT is taken (a sink left over?)"
listening "${LISTEN##*:}" && die "port ${LISTEN##*:} is taken"

mkdir -p "$BASE_DIR"
FSTYPE="$(stat -f -c %T "$BASE_DIR")"
case "$FSTYPE" in tmpfs|ramfs) die "$BASE_DIR is $FSTYPE: fsync would cost nothing; use --dir on a real disk" ;; esac
WORK="$(mktemp -d "$BASE_DIR/airlock-webhook-bench.XXXXXX")"

PACKAGE=airlock-cli; SUBJECT=Airlock
[ "$RELAY" = 1 ] && { PACKAGE=airlock-bench; SUBJECT="The bare relay (airlock-bench relay; nothing stored)"; }
if [ "$BUILD" = 1 ]; then
  say "building: cargo build --release -p $PACKAGE"
  (cd "$ROOT" && cargo build --release -p "$PACKAGE") >&2 || die "the release build failed"
fi
if [ "$RELAY" = 1 ]; then BINARY="${BINARY:-$ROOT/target/release/airlock-bench}"; fi
BINARY="${BINARY:-$ROOT/target/release/airlock}"
[ -x "$BINARY" ] || die "no $BINARY"
# A private copy: the shared target/ may be rebuilt while we measure; every repeat runs this one.
cp "$BINARY" "$WORK/airlock"
BIN="$WORK/airlock"
BIN_SHA="$(sha256sum "$BIN" | cut -c1-12)"
REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || REV="$REV+dirty"

# ---------------------------------------------------------------- the project
write_project() { # DIR
  mkdir -p "$1/workflows"
  cat >"$1/airlock.yaml" <<EOF
project: webhook-bench
connectors:
  sink: { kind: http, description: "The counting sink (node sink.js)" }
environments:
  staging:
    egress: [127.0.0.1]
    bindings:
      sink:
        base_url: "$SINK"
        timeout: 10s
EOF
  cat >"$1/workflows/orders.yaml" <<'EOF'
name: orders
trigger:
  webhook: { path: orders, respond: sync, wait: 10s }
steps:
  - id: normalize
    map:
      orderId: "{{ trigger.body.id }}"
      total: "{{ trigger.body.amount | float }}"
      customer: "{{ trigger.body.customer }}"
  - id: tier
    if: "steps.normalize.output.total > 100"
    then:
      - id: post_high
        call: sink.request
        with:
          method: POST
          path: /high
          json:
            orderId: "{{ steps.normalize.output.orderId }}"
            total: "{{ steps.normalize.output.total }}"
            customer: "{{ steps.normalize.output.customer }}"
            tier: high
    else:
      - id: post_low
        call: sink.request
        with:
          method: POST
          path: /low
          json:
            orderId: "{{ steps.normalize.output.orderId }}"
            total: "{{ steps.normalize.output.total }}"
            customer: "{{ steps.normalize.output.customer }}"
            tier: low
# The shared workload's synchronous answer.
output:
  orderId: "{{ steps.normalize.output.orderId }}"
  total: "{{ steps.normalize.output.total }}"
  customer: "{{ steps.normalize.output.customer }}"
  tier: "{{ 'high' if steps.normalize.output.total > 100 else 'low' }}"
  sink: true
EOF
}

# ---------------------------------------------------------------- measuring helpers
rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }   # PID VmRSS|VmHWM
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; } # utime+stime
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
children_ticks() { # FILE (the output of `times`, run in this shell): its children's CPU (wrk), in ticks
  tail -1 "$1" | awk -v hz="$HZ" '{
    n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += (a[1] * 60 + a[2]) * hz } print int(n + 0.5) }'
}
to_ms() { # wrk latency (850.00us, 1.23ms, 2.01s, 1.00m) -> ms
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}
sink_total() { curl -sf "$SINK/count" | sed -n 's/.*"total":\([0-9]*\).*/\1/p'; }
sink_counts() { curl -sf "$SINK/count"; }
metric_runs() { # STATUS: airlock_runs_total for the orders workflow (the relay has no runs)
  [ "$RELAY" = 1 ] && { echo 0; return; }
  curl -sf "http://$LISTEN/metrics" |
    awk -v s="status=\"$1\"" 'index($0, "airlock_runs_total{") == 1 && index($0, "workflow=\"orders\"") && index($0, s) { n += $NF } END { print n + 0 }'
}

wait_ready() {
  for _ in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    curl -sf -o /dev/null "http://$LISTEN/readyz" && return 0
    sleep 0.1
  done
  return 1
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"

one_repeat() { # R
  local r="$1" dir="$WORK/r$1"
  mkdir -p "$dir"
  [ "$RELAY" = 1 ] || write_project "$dir/project"
  [ "$RELAY" = 1 ] || "$BIN" -C "$dir/project" validate >"$dir/validate.out" 2>&1 || { cat "$dir/validate.out" >&2; die "validate failed"; }
  [ "$RELAY" = 1 ] || "$BIN" -C "$dir/project" deploy --env staging >"$dir/deploy.out" 2>&1 || { cat "$dir/deploy.out" >&2; die "deploy failed"; }

  node "$SHARED/sink.js" "$SINK_PORT" >"$dir/sink.log" 2>&1 &
  SINK_PID=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "$SINK/count" && break; sleep 0.05; done
  curl -sf -o /dev/null "$SINK/count" || die "the sink did not start (see $dir/sink.log)"

  if [ "$RELAY" = 1 ]; then
    "$BIN" relay --listen "$LISTEN" --sink "$SINK" >"$dir/serve.out" 2>"$dir/serve.log" &
  else
    RUST_LOG=warn NO_COLOR=1 "$BIN" -C "$dir/project" serve --listen "$LISTEN" \
      >"$dir/serve.out" 2>"$dir/serve.log" &
  fi
  SERVER_PID=$!
  wait_ready || { tail -20 "$dir/serve.log" >&2; die "airlock serve never became ready"; }
  sleep 1
  local idle_rss
  idle_rss="$(rss_kib "$SERVER_PID" VmRSS)"

  # One answer by hand: a failing build or workflow answers 500; do not measure that.
  local code
  code="$(curl -s -o "$dir/sample.json" -w '%{http_code}' -H 'content-type: application/json' \
    --data '{"id":1,"amount":150,"customer":"cust-1"}' "$URL")" || code=000
  if [ "$code" != 200 ]; then
    say "the sync webhook answered HTTP $code:"; cat "$dir/sample.json" >&2; say ""
    tail -20 "$dir/serve.log" >&2
    die "not measuring a failing server"
  fi
  [ "$r" = 1 ] && { say "sample answer (HTTP $code): $(cat "$dir/sample.json")"; }

  local c threads out
  for c in ${CONCURRENCY//,/ }; do
    threads=2; [ "$c" -lt 2 ] && threads=1
    out="$dir/wrk-c$c"
    # warm-up
    wrk -t"$threads" -c"$c" -d"${WARMUP}s" -s "$SHARED/order.lua" "$URL" >"$out.warmup" 2>&1 ||
      die "wrk warm-up failed: $(cat "$out.warmup")"
    sleep 1 # let the warm-up's cut-off requests finish before the sink is reset
    curl -sf -o /dev/null -X POST "$SINK/reset" || die "cannot reset the sink"
    echo 5 >"/proc/$SERVER_PID/clear_refs" # resets VmHWM to the current RSS
    local load t0 b0 a0 s0 w0 t1 b1 a1 s1 w1 ok0 fail0
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    ok0="$(metric_runs succeeded)"; fail0="$(metric_runs failed)"
    t0="$(date +%s.%N)"; b0="$(machine_busy)"; a0="$(proc_ticks "$SERVER_PID")"
    s0="$(proc_ticks "$SINK_PID")"; times >"$out.times0"; w0="$(children_ticks "$out.times0")"
    wrk -t"$threads" -c"$c" -d"${DURATION}s" --latency -s "$SHARED/order.lua" "$URL" >"$out" 2>&1 ||
      die "wrk failed: $(cat "$out")"
    t1="$(date +%s.%N)"; b1="$(machine_busy)"; a1="$(proc_ticks "$SERVER_PID")"
    s1="$(proc_ticks "$SINK_PID")"; times >"$out.times1"; w1="$(children_ticks "$out.times1")"
    local hwm
    hwm="$(rss_kib "$SERVER_PID" VmHWM)"
    sleep 0.5 # requests cut off by wrk's stop still finish their run and reach the sink
    local counts sink ok1 fail1
    counts="$(sink_counts)"; sink="$(sink_total)"
    ok1="$(metric_runs succeeded)"; fail1="$(metric_runs failed)"
    local reqs rps p50 p99 non2xx sockerr
    reqs="$(awk '/requests in/ { print $1; exit }' "$out")"
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
    p50="$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$out")")"
    p99="$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$out")")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")"; non2xx="${non2xx:-0}"
    sockerr="$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10 }' "$out")"; sockerr="${sockerr:-0}"
    local after_rss
    after_rss="$(rss_kib "$SERVER_PID" VmRSS)"
    # CPU over the measured window: airlock, the sink, wrk, and everything else on the machine.
    local cpu
    cpu="$(awk -v t0="$t0" -v t1="$t1" -v b="$((b1 - b0))" -v a="$((a1 - a0))" -v s="$((s1 - s0))" \
      -v w="$((w1 - w0))" -v hz="$HZ" -v n="$NCPU" -v sink="$sink" 'BEGIN {
        cap = (t1 - t0) * hz * n; o = b - a - s - w; if (o < 0) o = 0
        printf "%.0f\t%.0f\t%.0f\t%.1f\t%.0f", 100 * a / cap, 100 * s / cap, 100 * w / cap, 100 * o / cap,
          (sink > 0 ? 1e6 * a / hz / sink : 0) }')"
    local eps
    eps="$(awk -v n="$sink" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$r" "$c" "$eps" "$rps" "$p50" "$p99" "$non2xx" "$sockerr" "$sink" "$reqs" \
      "$((idle_rss))" "$((hwm))" "$((after_rss))" "$cpu" "$((ok1 - ok0))" "$((fail1 - fail0))" "$load" >>"$RESULTS"
    say "$(printf 'repeat %s c=%-3s exec/s %6s | wrk req/s %9s | p50 %7s ms p99 %7s ms | non-2xx %s sock-err %s | sink %s (%s) vs wrk %s | runs ok %s failed %s | RSS idle %.1f peak %.1f MiB | cpu airlock/sink/wrk/others %s %% | load %s' \
      "$r" "$c" "$eps" "$rps" "$p50" "$p99" "$non2xx" "$sockerr" "$sink" "$counts" "$reqs" \
      "$((ok1 - ok0))" "$((fail1 - fail0))" "$(echo "$idle_rss / 1024" | bc -l)" "$(echo "$hwm / 1024" | bc -l)" \
      "$(echo "$cpu" | cut -f1-4 | tr '\t' '/')" "$load")"
    sleep 1
  done

  # The answer after the load, and what the server logged at warn and above.
  curl -s -o "$dir/sample-after.json" -w '' -H 'content-type: application/json' \
    --data '{"id":2,"amount":50,"customer":"cust-2"}' "$URL" || true
  local warns
  warns="$(grep -c -E ' (WARN|ERROR) ' "$dir/serve.log" || true)"
  [ "${warns:-0}" -gt 0 ] && say "repeat $r: the server logged $warns warn/error lines, e.g.: $(grep -m1 -E ' (WARN|ERROR) ' "$dir/serve.log")"
  say "repeat $r: RSS after the runs $(echo "$(rss_kib "$SERVER_PID" VmRSS) / 1024" | bc -l | xargs printf '%.1f') MiB; store $(du -sh "$dir/project/.airlock" 2>/dev/null | cut -f1)"
  stop_all
}

# ---------------------------------------------------------------- run
say "$SUBJECT $REV (binary sha256 $BIN_SHA), $NCPU cores, work dir $WORK ($FSTYPE)"
say "load before: $(cut -d' ' -f1-3 /proc/loadavg); top CPU users now:"
top -bn1 -o %CPU 2>/dev/null | sed -n '7,12p' >&2 || true
for r in $(seq "$REPEATS"); do
  say "== repeat $r/$REPEATS"
  one_repeat "$r"
done

# ---------------------------------------------------------------- medians
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }
col() { awk -F'\t' -v c="$1" -v k="$2" '$2 == c { print $k }' "$RESULTS"; }

echo
DURABLE="durable (embedded SQLite)"; [ "$RELAY" = 1 ] && DURABLE="nothing stored"
echo "$SUBJECT $REV, shared webhook workload, $DURABLE, ${DURATION} s measured after ${WARMUP} s warm-up, median of $REPEATS (min–max)"
echo
echo "| c | exec/s at sink | wrk req/s | p50 ms | p99 ms | non-2xx | socket errors | failed runs | sink − wrk | idle RSS MiB | peak RSS MiB | CPU µs/exec | airlock/sink/wrk/others CPU % | load avg |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for c in ${CONCURRENCY//,/ }; do
  m() { col "$c" "$1" | median; }
  g() { col "$c" "$1" | range; }
  mib() { col "$c" "$1" | awk '{ printf "%.1f\n", $1 / 1024 }'; }
  diffs="$(awk -F'\t' -v c="$c" '$2 == c { printf "%+d ", $9 - $10 }' "$RESULTS")"
  cpus="$(printf '%s/%s/%s/%s' "$(m 14)" "$(m 15)" "$(m 16)" "$(m 17)")"
  loads="$(awk -F'\t' -v c="$c" '$2 == c { split($21, l, " "); printf "%s ", l[1] }' "$RESULTS")"
  printf '| %s | **%s** (%s) | %s (%s) | %s (%s) | **%s** (%s) | %s | %s | %s | %s| %s | %s (%s) | %s | %s | %s|\n' \
    "$c" "$(m 3)" "$(g 3)" "$(m 4)" "$(g 4)" "$(m 5)" "$(g 5)" "$(m 6)" "$(g 6)" \
    "$(col "$c" 7 | paste -sd+ | bc)" "$(col "$c" 8 | paste -sd+ | bc)" "$(col "$c" 20 | paste -sd+ | bc)" "$diffs" \
    "$(mib 11 | median)" "$(mib 12 | median)" "$(mib 12 | range)" "$(m 18)" "$cpus" "$loads"
done
echo
echo "Per repeat (TSV: repeat c exec/s req/s p50 p99 non2xx sockerr sink wrk idleKiB peakKiB afterKiB cpu% sink% wrk% others% cpuµs ok failed load):"
cat "$RESULTS"
