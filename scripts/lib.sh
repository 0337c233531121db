# shellcheck shell=bash
# Shared helpers for the scripts/bench-*.sh benchmarks. Source it; do not run it.
#
# Everything stays on 127.0.0.1, every load is a fixed number of requests, and every background
# process a script starts is registered with `bg_track` and killed by the EXIT trap `bench_init` sets.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPTS="$ROOT/scripts"
# BIN=/path/to/savvy-replay measures another build (an older commit, say) with the same script.
BIN="${BIN:-$ROOT/target/release/savvy-replay}"
export PATH="$HOME/.cargo/bin:$PATH"

BENCH_PIDS=()
BENCH_TMP=""
# Requests in flight for savvy-replay and oha alike; every benchmark's env can override it.
CONCURRENCY="${CONCURRENCY:-32}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=()
    if [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" && -z "${KEEP_TMP:-}" ]]; then
        rm -rf "$BENCH_TMP"
    fi
}

# Creates $BENCH_TMP and sets the cleanup trap.
bench_init() {
    BENCH_TMP="$(mktemp -d "${TMPDIR:-/tmp}/savvy-bench.XXXXXX")"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bg_track() { BENCH_PIDS+=("$1"); }

# Stops one tracked background process (by pid) and waits for it.
bg_stop() {
    local pid="$1" p rest=()
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${BENCH_PIDS[@]}"; do
        [[ "$p" == "$pid" ]] || rest+=("$p")
    done
    BENCH_PIDS=("${rest[@]}")
}

have() { command -v "$1" >/dev/null 2>&1; }

APT_UPDATED=""
apt_install() {
    have apt-get || die "apt-get not found: install $* by hand"
    if [[ -z "$APT_UPDATED" ]]; then
        log "apt-get update"
        apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

need_python() { have python3 || apt_install python3; }
need_time() { [[ -x /usr/bin/time ]] || apt_install time; }
need_curl() { have curl || apt_install curl; }
need_pgrep() { have pgrep || apt_install procps; }
need_oha() {
    if ! have oha; then
        log "cargo install oha --locked (one-off, a few minutes)"
        cargo install oha --locked >&2
    fi
}
# nginx is optional: returns 1 when it cannot be installed.
need_nginx() {
    if have nginx || [[ -x /usr/sbin/nginx ]]; then return 0; fi
    have apt-get || return 1
    (apt_install nginx) # a subshell: a failed install only means "no nginx"
}

build_release() {
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
}

# Runs examples/NAME.rs (release) with the script's arguments, keeps its table in $BENCH_TMP, and
# says what machine it ran on: for the benchmarks that run the pipeline in-process.
run_example() {
    local name="$1"
    shift
    log "cargo run --release --example $name (all traffic on 127.0.0.1)"
    (cd "$ROOT" && cargo run --release --quiet --example "$name" -- "$@") | tee "$BENCH_TMP/$name.md"
    echo
    echo "machine: $(nproc) vCPU, $(uname -sr)"
}

# The start of a benchmark that runs the release binary: `bench_init`, the tools it names
# (`bench_start python curl time` runs need_python, need_curl, need_time), then the build.
bench_start() {
    bench_init
    local tool
    for tool in "$@"; do
        "need_$tool"
    done
    build_release
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until something answers POST on the URL (any HTTP status).
wait_http() {
    local url="$1"
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null -X POST -d '{}' "$url"; then return 0; fi
        sleep 0.05
    done
    die "nothing answers at $url"
}

# gen_events N SIZE FILE  — N events (full|small) as NDJSON; ids as $IDS says (sequential|random,
# default sequential).
gen_events() {
    python3 "$SCRIPTS/gen-events.py" "$1" --size "$2" --ids "${IDS:-sequential}" --out "$3"
}

# gen_envelope SIZE FILE  — one webhook body of the size savvy-replay sends, for oha.
gen_envelope() {
    python3 "$SCRIPTS/gen-events.py" --envelope --size "$1" --out "$2"
}

# start_sink PORT LOG  — the product's own receiver (hyper); sets SINK_PID.
start_sink() {
    "$BIN" sink -q --listen "127.0.0.1:$1" 2>"$2" &
    SINK_PID=$!
    bg_track "$SINK_PID"
    wait_http "http://127.0.0.1:$1/webhook"
}

# start_nginx PORT DIR  — nginx answering 200 to every POST after reading the body; sets NGINX_PID.
# Returns 1 when nginx is not available.
start_nginx() {
    local port="$1" dir="$2" nginx
    nginx="$(command -v nginx || echo /usr/sbin/nginx)"
    [[ -x "$nginx" ]] || return 1
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
error_log $dir/logs/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_buffer_size 64k;
    server {
        listen 127.0.0.1:$port;
        location / {
            # Reads and discards the body before answering (the echo of a real webhook receiver).
            client_max_body_size 16m;
            default_type application/json;
            return 200 '{"ok":true}';
        }
    }
}
EOF
    "$nginx" -c "$dir/nginx.conf" -p "$dir" 2>>"$dir/logs/stderr.log" &
    NGINX_PID=$!
    bg_track "$NGINX_PID"
    wait_http "http://127.0.0.1:$port/webhook"
}

# oha_run N C URL BODY OUT_JSON  — fixed-count POST load; prints requests/s.
oha_run() {
    local n="$1" c="$2" url="$3" body="$4" out="$5"
    # SavvyCal's User-Agent, as savvy-replay sends it: the sink answers any other with 404.
    oha -n "$n" -c "$c" -m POST -H 'content-type: application/json' \
        -H 'user-agent: SavvyCal Webhooks (https://savvycal.com)' -D "$body" \
        --no-tui --output-format json "$url" >"$out"
    python3 - "$out" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]
codes = d.get("statusCodeDistribution", {})
ok = sum(v for k, v in codes.items() if k.startswith("2"))
if ok == 0:
    sys.exit("oha: no 2xx answers: %r" % codes)
print("%.1f" % s["requestsPerSec"])
EOF
}

# json_field FILE KEY  — a top-level number from savvy-replay's --json summary (the last line).
json_field() {
    tail -n 1 "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# rss_kib FILE  — peak RSS in KiB from /usr/bin/time -v output.
rss_kib() {
    awk -F': ' '/Maximum resident set size/ {print $2}' "$1"
}

# replay INPUT URL LEDGER OUT TIME_LOG [extra run flags…]  — savvy-replay run at rate 0, c=32 under
# /usr/bin/time -v; stdout (the --json summary) goes to OUT.
replay() {
    local input="$1" url="$2" ledger="$3" out="$4" tlog="$5"
    shift 5
    /usr/bin/time -v "$BIN" run --input "$input" --webhook-url "$url" --rate 0 --concurrency "${CONCURRENCY:-32}" \
        --ledger "$ledger" -q --json "$@" >"$out" 2>"$tlog" ||
        {
            cat "$tlog" >&2
            die "savvy-replay run failed"
        }
}

# The pid of the (single) child of PID, waiting for it to appear.
child_pid() {
    local c
    for _ in $(seq 1 100); do
        c="$(pgrep -P "$1" | head -n 1 || true)"
        [[ -n "$c" ]] && { echo "$c"; return 0; }
        sleep 0.02
    done
    return 1
}
