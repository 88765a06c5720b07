#!/usr/bin/env bash
# The scale run of issue 10, one command:
#
#   benches/scale/run.sh [NUMBERS] [HELD] [WORK_DIR]
#
# (defaults: 50,000,000 numbers, a client holding 1,000,000, a temporary directory). It builds
# the shipped release binary, generates a registry with benches/scale/gen_registry.py, builds
# the first epoch, serves it on 127.0.0.1, links the client (evaluations and a base download),
# builds the next day's epoch (1% added) as a delta, links again (a delta sync), and prints
# one Markdown table: times, peak resident memory of each process (GNU time), the server's
# anonymous memory while serving (RssAnon) and the bytes on the wire. Needs python3, GNU time
# (/usr/bin/time) and about 400 bytes of disk per number.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-50000000}
H=${2:-1000000}
W=${3:-$(mktemp -d)}
mkdir -p "$W"
BIN=target/release/nayose
cargo build --release --locked -q
T=/usr/bin/time

secs() { python3 -c "import sys; print(f'{float(sys.argv[1]):.1f}')" "$1"; }
peak_mb() { awk '/Maximum resident set size/ {printf "%.0f", $6/1024}' "$1"; }
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$1"; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$1" "$2"; }
rss_anon_mb() { awk '/RssAnon/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

echo "scale run: $N numbers, a client holding $H, in $W" >&2
t0=$(date +%s.%N)
python3 benches/scale/gen_registry.py "$N" "$H" "$W"
gen=$(python3 -c "import time,sys; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$t0")

$T -v "$BIN" -q server build --data-dir "$W/data" --registry "$W/registry.csv" 2>"$W/build1.err" >/dev/null || { cat "$W/build1.err"; exit 1; }
"$BIN" pki init --dir "$W/pki" --server-name localhost >/dev/null 2>&1
"$BIN" pki issue-client --dir "$W/pki" --id scale-client >/dev/null 2>&1
printf '[[client]]\nid = "scale-client"\nevaluations_per_day = 1000000000\nevaluations_per_key_period = 1000000000\n' >"$W/clients.toml"
PORT=$(python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
CA="$W/pki/ca.pem"; [ -f "$CA" ] || CA="$W/pki/server-ca.pem"
CLIENT_CA="$W/pki/ca.pem"; [ -f "$CLIENT_CA" ] || CLIENT_CA="$W/pki/client-ca.pem"
CERT="$W/pki/clients/scale-client.pem"; [ -f "$CERT" ] || CERT="$W/pki/scale-client.pem"
KEY="${CERT%.pem}.key"
"$BIN" server serve --data-dir "$W/data" --listen "127.0.0.1:$PORT" \
    --cert "$W/pki/server.pem" --key "$W/pki/server.key" --client-ca "$CLIENT_CA" \
    --clients "$W/clients.toml" 2>"$W/serve.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    if grep -q "listening on" "$W/serve.err"; then sleep 2; break; fi
    kill -0 $SERVER 2>/dev/null || { cat "$W/serve.err"; exit 1; }
    sleep 1
done
serve_idle=$(rss_anon_mb $SERVER)

link() {
    $T -v "$BIN" -q client link --server "127.0.0.1:$PORT" --server-name localhost --ca "$CA" \
        --cert "$CERT" --key "$KEY" \
        --input "$W/held.csv" --output "$W/out-$1.csv" --cache-dir "$W/cache" --json \
        >"$W/link-$1.json" 2>"$W/link-$1.err" || { cat "$W/link-$1.err"; exit 1; }
}
link first
serve_after=$(rss_anon_mb $SERVER)
$T -v "$BIN" -q server build --data-dir "$W/data" --registry "$W/registry2.csv" 2>"$W/build2.err" >/dev/null || { cat "$W/build2.err"; exit 1; }
sleep 3 # the server picks the new epoch up within epoch_poll_ms (1 s)
link second
serve_after2=$(rss_anon_mb $SERVER)

persons=$(awk -F, 'NR>1 {print $1}' "$W/registry.csv" | sort -u | wc -l)
cat <<MD
## Scale run: $N numbers ($persons persons), a client holding $H

Registry generated in ${gen} s. Wall times from GNU time; peak = maximum resident set size.

| step | wall time | peak resident | notes |
|---|---|---|---|
| full build (epoch 1) | $(wall "$W/build1.err") | $(peak_mb "$W/build1.err") MB | $(awk "BEGIN {printf \"%.0f\", $(peak_mb "$W/build1.err")*1048576/$N}") bytes per number |
| server, idle after loading epoch 1 | | RssAnon $serve_idle MB | table mapped, not in the heap |
| first link | $(wall "$W/link-first.err") | $(peak_mb "$W/link-first.err") MB | evaluated $(json "$W/link-first.json" "d['evaluated_numbers']"), received $(json "$W/link-first.json" "d['bytes_received']") B, sent $(json "$W/link-first.json" "d['bytes_sent']") B, sync $(json "$W/link-first.json" "d['sync']['kind']"), phases ms $(json "$W/link-first.json" "d['phase_ms']") |
| server after the first link | | RssAnon $serve_after MB | |
| delta build (epoch 2: +1%) | $(wall "$W/build2.err") | $(peak_mb "$W/build2.err") MB | $(grep -E "^  (added|removed|relabelled) " "$W/build2.err" | tr -s ' ' | tr '\n' ';') |
| second link (delta sync) | $(wall "$W/link-second.err") | $(peak_mb "$W/link-second.err") MB | evaluated $(json "$W/link-second.json" "d['evaluated_numbers']"), received $(json "$W/link-second.json" "d['bytes_received']") B, sync $(json "$W/link-second.json" "d['sync']['kind']") |
| server after the second link | | RssAnon $serve_after2 MB | |

Build phases: full — $(grep -E "^  time " "$W/build1.err" | sed 's/^  time *//'); delta — $(grep -E "^  time " "$W/build2.err" | sed 's/^  time *//').
MD
