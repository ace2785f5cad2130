#!/usr/bin/env bash
# Scale-out throughput: runs/s of the order workflow executed by 1, 2 and 4 `airlock worker`
# processes on one PostgreSQL store, against one `airlock worker` on the embedded SQLite store,
# on this machine. N runs are queued first through an accept-only server (`serve --no-execute`),
# then the workers start; timed from their start to the last run's finish.
#
#   bench/scale-out/run.sh [--runs N] [--repeats R] [--workers 1,2,4] [--concurrency C]
#                          [--no-sqlite] [--max-load L] [--wait-quiet S] [--postgres URL]
#                          [--dir PATH] [--no-build | --bin PATH] [--keep]
#
# See bench/scale-out/README.md for what is measured and how to read it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SHARED="${SHARED_BENCH:-/work/shared/bench}"
RUNS=5000
REPEATS=3
WORKERS="1,2,4"
CONCURRENCY=32
SQLITE=1
MAX_LOAD=1.0
WAIT_QUIET=300
ADMIN_URL="${AIRLOCK_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
BASE_DIR="${TMPDIR:-/var/tmp}"
BUILD=1
KEEP=0
BIN_FROM=""

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --no-sqlite) SQLITE=0; shift ;;
    --max-load) MAX_LOAD="$2"; shift 2 ;;
    --wait-quiet) WAIT_QUIET="$2"; shift 2 ;;
    --postgres) ADMIN_URL="$2"; shift 2 ;;
    --dir) BASE_DIR="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin) BIN_FROM="$2"; BUILD=0; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "--runs N, N >= 1" >&2; exit 2; }
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || { echo "--repeats R, R >= 1" >&2; exit 2; }
HZ="$(getconf CLK_TCK)"
NCPU="$(nproc)"
PG_BASE="${ADMIN_URL%/*}" # postgres://user@host:port

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
# Only processes and databases this script started or created are ever stopped or dropped.
PIDS=()
DATABASES=()
WORK=""
stop_pid() { # PID: TERM, wait up to 10 s, then KILL
  local pid="$1"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
drop_db() { psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true; }
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local pid db
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  for db in "${DATABASES[@]}"; do drop_db "$db"; done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then say "kept: $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- prerequisites
for tool in psql python3 node curl; do command -v "$tool" >/dev/null || die "$tool is needed"; done
[ "$SQLITE" = 0 ] || command -v sqlite3 >/dev/null || die "sqlite3 is needed (or --no-sqlite)"
[ -f "$SHARED/sink.js" ] || die "no $SHARED/sink.js"
psql "$ADMIN_URL" -qtAc 'SELECT 1' >/dev/null || die "PostgreSQL is not reachable at $ADMIN_URL"
mkdir -p "$BASE_DIR"
FSTYPE="$(stat -f -c %T "$BASE_DIR")"
case "$FSTYPE" in tmpfs|ramfs) die "$BASE_DIR is $FSTYPE: fsync would cost nothing; use --dir on a real disk" ;; esac
WORK="$(mktemp -d "$BASE_DIR/airlock-scale-out-bench.XXXXXX")"

if [ "$BUILD" = 1 ]; then
  say "building: cargo build --release -p airlock-cli"
  (cd "$ROOT" && cargo build --release -p airlock-cli) >&2 || die "the release build failed"
fi
BIN_FROM="${BIN_FROM:-$ROOT/target/release/airlock}"
[ -x "$BIN_FROM" ] || die "no $BIN_FROM"
# A private copy: the shared target/ may be rebuilt while we measure.
cp "$BIN_FROM" "$WORK/airlock"
BIN="$WORK/airlock"
"$BIN" worker --help >/dev/null 2>&1 || die "$BIN_FROM has no \`worker\` (a stale build? drop --no-build)"
case "$BIN_FROM" in */release/*) ;; *) say "WARNING: $BIN_FROM is not a release build: figures are for developing the script only" ;; esac
BIN_SHA="$(sha256sum "$BIN" | cut -c1-12)"
REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || REV="$REV+dirty"
PG_VERSION="$(psql "$ADMIN_URL" -qtAc 'SHOW server_version' | cut -d' ' -f1)"
PG_SYNC="$(psql "$ADMIN_URL" -qtAc 'SHOW synchronous_commit')"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- the sink (one for the whole script)
SINK_PORT="$(free_port)"
SINK="http://127.0.0.1:$SINK_PORT"
node "$SHARED/sink.js" "$SINK_PORT" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
PIDS+=("$SINK_PID")
for _ in $(seq 100); do curl -sf -o /dev/null "$SINK/count" && break; sleep 0.05; done
curl -sf -o /dev/null "$SINK/count" || die "the sink did not start (see $WORK/sink.log)"
sink_total() { curl -sf "$SINK/count" | sed -n 's/.*"total":\([0-9]*\).*/\1/p'; }

# ---------------------------------------------------------------- the project
# The shape of crates/airlock-cli/tests/scale_out.rs, with the branch of bench/webhook:
# an asynchronous webhook; map, if, one keyed http POST to the loopback sink.
write_project() { # DIR
  mkdir -p "$1/workflows"
  cat >"$1/airlock.yaml" <<EOF
project: scale-out-bench
connectors:
  sink: { kind: http, description: "The counting sink (node sink.js)" }
environments:
  staging:
    egress: [127.0.0.1]
    bindings:
      sink: { base_url: "$SINK", timeout: 10s }
EOF
  cat >"$1/workflows/orders.yaml" <<'EOF'
name: orders
trigger:
  webhook: { path: orders }
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
          json: { orderId: "{{ steps.normalize.output.orderId }}", total: "{{ steps.normalize.output.total }}", customer: "{{ steps.normalize.output.customer }}", tier: high }
        retry: { attempts: 5, backoff: 10ms, on: [timeout, connection, status_5xx] }
    else:
      - id: post_low
        call: sink.request
        with:
          method: POST
          path: /low
          json: { orderId: "{{ steps.normalize.output.orderId }}", total: "{{ steps.normalize.output.total }}", customer: "{{ steps.normalize.output.customer }}", tier: low }
        retry: { attempts: 5, backoff: 10ms, on: [timeout, connection, status_5xx] }
EOF
}

# N deliveries over 4 keep-alive connections; every answer must be 202.
cat >"$WORK/enqueue.py" <<'EOF'
import http.client, json, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
errors = []
def send(first):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for i in range(first, n, 4):
        body = json.dumps({"id": i, "amount": (i * 37) % 200 + 1, "customer": f"cust-{i % 97}"})
        conn.request("POST", "/hooks/staging/orders", body, {"content-type": "application/json"})
        r = conn.getresponse(); r.read()
        if r.status != 202:
            errors.append(r.status)
threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
if errors:
    sys.exit(f"{len(errors)} deliveries not accepted: {sorted(set(errors))}")
EOF

# ---------------------------------------------------------------- helpers
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; } # utime+stime
hwm_kib() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"; }
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
load1() { cut -d' ' -f1 /proc/loadavg; }
now_ms() { date +%s%3N; }

# Waits until the 1-minute load is below MAX_LOAD, at most WAIT_QUIET seconds; prints the load.
wait_quiet() {
  local waited=0 load
  load="$(load1)"
  while awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l >= m) }'; do
    if [ "$waited" -ge "$WAIT_QUIET" ]; then
      say "  load $load still >= $MAX_LOAD after ${WAIT_QUIET}s: measuring anyway (PROVISIONAL)"
      break
    fi
    [ "$waited" = 0 ] && say "  load $load >= $MAX_LOAD: waiting for a quiet machine (up to ${WAIT_QUIET}s)"
    sleep 5; waited=$((waited + 5)); load="$(load1)"
  done
  echo "$load"
}

# Accept-only server in DIR on STORE ("" for the embedded one); queues RUNS deliveries.
queue_runs() { # DIR STORE
  local dir="$1" store="$2" pid address
  local -a global=(-C "$dir/project")
  [ -n "$store" ] && global+=(--store "$store")
  RUST_LOG=warn NO_COLOR=1 "$BIN" "${global[@]}" serve --listen 127.0.0.1:0 --no-execute --no-schedules \
    >"$dir/accept.out" 2>"$dir/accept.log" &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 300); do
    address="$(sed -n 's/^listening on http:\/\///p' "$dir/accept.out" | head -1)"
    [ -n "$address" ] && curl -sf -o /dev/null "http://$address/readyz" && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/accept.log" >&2; die "the accept-only server exited"; }
    sleep 0.1
  done
  [ -n "$address" ] || die "the accept-only server never listened"
  python3 "$WORK/enqueue.py" "${address%:*}" "${address##*:}" "$RUNS" || die "queueing failed"
  stop_pid "$pid"
}

# finished succeeded failed_or_dead last_finished_ms, for the store of a measurement
count_pg() { psql "$1" -qtAF' ' -c "SELECT count(*) FILTER (WHERE status IN ('succeeded','failed','dead')),
  count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status IN ('failed','dead')),
  coalesce(max(finished_at), 0), count(*) FROM runs"; }
count_sqlite() { sqlite3 -cmd '.timeout 5000' -separator ' ' "$1" "SELECT
  count(*) FILTER (WHERE status IN ('succeeded','failed','dead')), count(*) FILTER (WHERE status = 'succeeded'),
  count(*) FILTER (WHERE status IN ('failed','dead')), coalesce(max(finished_at), 0), count(*) FROM runs"; }

RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# One measurement: BACKEND (postgres|sqlite), K workers, repeat R.
measure() { # BACKEND K R
  local backend="$1" k="$2" r="$3" dir="$WORK/$1-$2-r$3" store="" db="" counter
  mkdir -p "$dir"
  write_project "$dir/project"
  if [ "$backend" = postgres ]; then
    db="airlock_bench_$$_${k}_${r}_$RANDOM"
    psql "$ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null
    DATABASES+=("$db")
    store="$PG_BASE/$db"
    "$BIN" -C "$dir/project" --store "$store" migrate >"$dir/migrate.out" 2>&1 || { cat "$dir/migrate.out" >&2; die "migrate failed"; }
    "$BIN" -C "$dir/project" --store "$store" deploy --env staging >"$dir/deploy.out" 2>&1 || { cat "$dir/deploy.out" >&2; die "deploy failed"; }
    counter() { count_pg "$store"; }
  else
    "$BIN" -C "$dir/project" deploy --env staging >"$dir/deploy.out" 2>&1 || { cat "$dir/deploy.out" >&2; die "deploy failed"; }
    counter() { count_sqlite "$dir/project/.airlock/airlock.db"; }
  fi
  queue_runs "$dir" "$store"
  local queued
  queued="$(counter | awk '{ print $5 }')"
  [ "$queued" = "$RUNS" ] || die "$queued runs queued, not $RUNS"
  curl -sf -o /dev/null -X POST "$SINK/reset"

  local load0
  load0="$(wait_quiet)"
  local -a global=(-C "$dir/project") wpids=()
  [ -n "$store" ] && global+=(--store "$store")
  local t0 b0 i
  b0="$(machine_busy)"
  t0="$(now_ms)"
  for i in $(seq "$k"); do
    RUST_LOG=warn NO_COLOR=1 "$BIN" "${global[@]}" worker --concurrency "$CONCURRENCY" \
      >"$dir/worker$i.out" 2>"$dir/worker$i.log" &
    wpids+=($!)
    PIDS+=($!)
  done
  local line finished=0 deadline=$(( $(date +%s) + 600 ))
  while :; do
    sleep 0.25
    line="$(counter)"
    finished="$(echo "$line" | awk '{ print $1 }')"
    [ "$finished" = "$RUNS" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || die "$finished of $RUNS runs finished after 600 s ($dir)"
    for i in "${wpids[@]}"; do kill -0 "$i" 2>/dev/null || die "a worker exited (see $dir/worker*.log)"; done
  done
  local b1 t1 load1_end
  b1="$(machine_busy)"
  t1="$(now_ms)"
  load1_end="$(load1)"
  local succeeded failed last
  read -r _ succeeded failed last _ <<<"$line"
  local ms=$(( last - t0 ))
  local peaks="" ticks=0 p
  for p in "${wpids[@]}"; do
    peaks="$peaks${peaks:+,}$(awk -v k="$(hwm_kib "$p")" 'BEGIN { printf "%.1f", k / 1024 }')"
    ticks=$(( ticks + $(proc_ticks "$p") ))
  done
  for p in "${wpids[@]}"; do stop_pid "$p"; done
  local sink
  sink="$(sink_total)"
  local rps cpu_ms_per_run machine
  rps="$(awk -v n="$RUNS" -v ms="$ms" 'BEGIN { printf "%.0f", n * 1000 / ms }')"
  cpu_ms_per_run="$(awk -v t="$ticks" -v hz="$HZ" -v n="$RUNS" 'BEGIN { printf "%.2f", 1000 * t / hz / n }')"
  machine="$(awk -v b="$((b1 - b0))" -v hz="$HZ" -v ms="$((t1 - t0))" -v c="$NCPU" 'BEGIN { printf "%.0f", 100 * b / hz / (ms / 1000) / c }')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$backend" "$k" "$r" "$ms" "$rps" "$succeeded" \
    "$failed" "$sink" "$peaks" "$cpu_ms_per_run" "$machine" "$load0/$load1_end" >>"$RESULTS"
  say "$(printf '%-8s workers=%s repeat %s: %5s runs in %6.2f s = %5s runs/s | succeeded %s failed %s sink %s | peak RSS MiB %s | worker CPU %s ms/run | machine busy %s%% | load %s -> %s' \
    "$backend" "$k" "$r" "$RUNS" "$(echo "$ms / 1000" | bc -l)" "$rps" "$succeeded" "$failed" "$sink" "$peaks" \
    "$cpu_ms_per_run" "$machine" "$load0" "$load1_end")"
  [ "$succeeded" = "$RUNS" ] || say "  WARNING: $failed runs failed (see $dir/worker*.log)"
  [ "$sink" -ge "$RUNS" ] || say "  WARNING: the sink saw $sink POSTs for $RUNS runs"
  if [ -n "$db" ]; then drop_db "$db"; fi
  [ "$KEEP" = 1 ] || rm -rf "$dir/project/.airlock"
}

# ---------------------------------------------------------------- run
say "airlock $REV (binary sha256 $BIN_SHA), $NCPU cores, PostgreSQL $PG_VERSION (synchronous_commit=$PG_SYNC), work dir $WORK ($FSTYPE)"
say "$RUNS runs per measurement, worker --concurrency $CONCURRENCY, $REPEATS repeats; measuring when the 1-min load < $MAX_LOAD"
say "load now: $(cut -d' ' -f1-3 /proc/loadavg); top CPU users:"
top -bn1 -o %CPU 2>/dev/null | sed -n '7,12p' >&2 || true
CONFIGS=()
[ "$SQLITE" = 1 ] && CONFIGS+=("sqlite 1")
for k in ${WORKERS//,/ }; do CONFIGS+=("postgres $k"); done
# Repeats interleaved (every configuration once, then again), so a noisy minute is spread.
for r in $(seq "$REPEATS"); do
  for config in "${CONFIGS[@]}"; do
    # shellcheck disable=SC2086
    measure $config "$r"
  done
done

# ---------------------------------------------------------------- medians
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }'; }
col() { awk -F'\t' -v b="$1" -v k="$2" -v c="$3" '$1 == b && $2 == k { print $c }' "$RESULTS"; }

echo
echo "Airlock $REV, order workflow (map, if, http POST to a loopback sink), $RUNS runs queued then executed, $NCPU cores, median of $REPEATS (min–max)"
echo
echo "| store | workers | runs/s | time s | vs 1 worker | peak RSS per worker MiB | worker CPU ms/run | machine busy % | failed | load at start/end |"
echo "|---|---|---|---|---|---|---|---|---|---|"
base="$(col postgres 1 5 | median)"
for config in "${CONFIGS[@]}"; do
  set -- $config
  b="$1"; k="$2"
  rps="$(col "$b" "$k" 5 | median)"
  secs="$(col "$b" "$k" 4 | median | awk '{ printf "%.2f", $1 / 1000 }')"
  rel="–"
  [ "$b" = postgres ] && [ -n "$base" ] && rel="$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.2f×", a / b }')"
  peaks="$(col "$b" "$k" 9 | tr ',' '\n' | sort -g | tail -1)"
  printf '| %s | %s | **%s** (%s) | %s | %s | %s | %s | %s | %s | %s |\n' "$b" "$k" "$rps" "$(col "$b" "$k" 5 | range)" \
    "$secs" "$rel" "$peaks" "$(col "$b" "$k" 10 | median)" "$(col "$b" "$k" 11 | median)" \
    "$(col "$b" "$k" 7 | paste -sd+ | bc)" "$(col "$b" "$k" 12 | paste -sd' ')"
done
echo
echo "Per measurement (TSV: store workers repeat ms runs/s succeeded failed sink peakRSS-MiB-per-worker worker-cpu-ms/run machine-busy% load-start/end):"
cat "$RESULTS"
