#!/usr/bin/env bash
# Benchmarks streaming: transcode speed against the ffmpeg command line, then segment
# serving under `tonearm up` against nginx serving the same files from disk, at the same
# concurrency, from the same list of segments (every rendition of a few uploaded tracks).
# The media guard and API rate limits are lifted so that the server, not a budget, is what
# gets measured. Usage: ./bench/streaming.sh [seconds] [concurrency] [all|transcode|serve] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
concurrency="${2:-64}"
what="${3:-all}"
rounds="${4:-3}"
tracks=4
track_seconds=60
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tonearm/target}"
cargo build --release -p tonearm -p tonearm-bench
bin="$CARGO_TARGET_DIR/release"
data="$(mktemp -d)"
work="$(mktemp -d)"
port=18481
nginx_port=18482
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
    sleep 0.2
    rm -rf "$data" "$work"
}
trap cleanup EXIT

# CPU time (clock ticks) used so far by the given processes, threads included.
cpu_ticks() {
    local total=0 pid fields
    for pid in "$@"; do
        read -r -a fields <"/proc/$pid/stat"
        total=$((total + fields[13] + fields[14]))
    done
    echo "$total"
}
# CPU time (clock ticks) the whole machine has been busy, to catch other work in a run.
machine_ticks() {
    local _ user nice system idle iowait irq softirq steal
    read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
    echo $((user + nice + system + irq + softirq + steal))
}
hz="$(getconf CLK_TCK)"
# Runs a load generator (the rest of the arguments) against the server whose processes are
# $2, and says how much CPU the server and the load generator each used (on two shared
# cores, what one takes the other cannot have), and whether anything else ran meanwhile.
load() {
    local name=$1 pids=$2
    shift 2
    echo "### $name"
    local before machine started
    before="$(cpu_ticks $pids)"
    machine="$(machine_ticks)"
    started="$(date +%s.%N)"
    /usr/bin/time -f "%U %S" -o "$work/client.time" "$@" >"$work/load.out"
    local used ended
    used=$(($(cpu_ticks $pids) - before))
    machine=$(($(machine_ticks) - machine))
    ended="$(date +%s.%N)"
    if [ "$1" = wrk ]; then
        grep -E 'Latency |50%|99%|Requests/sec|Transfer/sec|requests in|Non-2xx|Socket errors' \
            "$work/load.out"
    else
        cat "$work/load.out"
    fi
    read -r user sys <"$work/client.time"
    local rate
    rate="$(grep -oE '[0-9.]+ req/s' "$work/load.out" | cut -d' ' -f1 || true)"
    [ -n "$rate" ] || rate="$(awk '/Requests\/sec/ {print $2}' "$work/load.out")"
    awk -v name="$name" -v results="$work/results.tsv" -v ticks="$used" -v hz="$hz" -v from="$started" -v to="$ended" -v rate="$rate" \
        -v client="$(echo "$user + $sys" | bc)" -v machine="$machine" 'BEGIN {
        wall = to - from; cores = ticks / hz / wall; client /= wall
        if (rate > 0) printf "server CPU %.2f cores (%.0f µs a request), ", cores, cores * 1e6 / rate
        if (rate > 0) printf "%s\t%s\t%.1f\n", name, rate, cores * 1e6 / rate >> results
        printf "load generator %.2f cores, anything else %.2f cores, over %.1f s\n",
            client, machine / hz / wall - cores - client, wall }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Medians over the rounds of the passes named "$1: tonearm (round N)" and "$1: nginx …":
# column 2 is requests/s, column 3 the server's CPU a request.
summary() {
    local tonearm_rate nginx_rate tonearm_cpu nginx_cpu
    tonearm_rate="$(grep -F "$1: tonearm (round" "$work/results.tsv" | cut -f2 | median)"
    nginx_rate="$(grep -F "$1: nginx (round" "$work/results.tsv" | cut -f2 | median)"
    tonearm_cpu="$(grep -F "$1: tonearm (round" "$work/results.tsv" | cut -f3 | median)"
    nginx_cpu="$(grep -F "$1: nginx (round" "$work/results.tsv" | cut -f3 | median)"
    echo "### $1, medians of $rounds rounds"
    awk -v t="$tonearm_rate" -v n="$nginx_rate" -v tc="$tonearm_cpu" -v nc="$nginx_cpu" 'BEGIN {
        printf "tonearm %.0f req/s (%.0f µs a request), nginx %.0f req/s (%.0f µs a request): %.2f× nginx\n",
            t, tc, n, nc, t / n }'
}

if [ "$what" != serve ]; then
    echo "## Transcode speed"
    load "the ladder: Tonearm against the ffmpeg CLI" "" \
        "$bin/tonearm-bench" transcode --repeat 3 --lengths 30,180
fi
[ "$what" = transcode ] && exit 0

echo "## Segment serving"
TONEARM_GATEWAY__RATE_LIMITS__FREE_PER_MINUTE=100000000 \
TONEARM_GATEWAY__RATE_LIMITS__ANONYMOUS_PER_MINUTE=100000000 \
TONEARM_GATEWAY__MEDIA_PER_IP_PER_SECOND=100000000 \
TONEARM_GATEWAY__MEDIA_BURST_PER_IP=100000000 \
RUST_LOG=warn "$bin/tonearm" up --port "$port" --data-dir "$data" >"$work/tonearm.log" 2>&1 &
server=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done

token="$(curl -fsS "$base/v1/auth/register" -H 'content-type: application/json' \
    -d "{\"email\":\"bench-$$@example.com\",\"password\":\"benchmark password\",\"display_name\":\"Bench\"}" \
    | jq -r .access_token)"
ids=()
for seed in $(seq 1 "$tracks"); do
    # Distinct audio per track: the catalog recognises the same bytes uploaded twice.
    ffmpeg -hide_banner -loglevel error -y \
        -f lavfi -i "sine=frequency=$((220 + seed * 7)):duration=$track_seconds:sample_rate=44100" \
        -f lavfi -i "anoisesrc=d=$track_seconds:c=pink:a=0.08:seed=$seed:r=44100" \
        -filter_complex '[0][1]amix=inputs=2,aformat=channel_layouts=stereo' \
        -c:a libmp3lame -b:a 192k "$work/take-$seed.mp3"
    ids+=("$(curl -fsS "$base/v1/tracks" -H "authorization: Bearer $token" \
        -F "file=@$work/take-$seed.mp3" | jq -r .id)")
done
for id in "${ids[@]}"; do
    for _ in $(seq 1 600); do
        status="$(curl -fsS "$base/v1/tracks/$id" -H "authorization: Bearer $token" | jq -r .status)"
        [ "$status" != processing ] && break
        sleep 0.2
    done
    [ "$status" = ready ] || { echo "track $id is $status" >&2; exit 1; }
done

# Every init and media segment of every rendition, through the signed master and media
# playlists as a player finds them; URIs inside a playlist are relative to it.
: >"$work/tonearm.urls"
for id in "${ids[@]}"; do
    master="$(curl -fsS "$base/v1/tracks/$id/stream" -H "authorization: Bearer $token" | jq -r .url)"
    for variant in $(curl -fsS "$master" | grep -v '^#'); do
        media="${master%%\?*}"
        media="${media%/*}/$variant"
        dir="${media%%\?*}"
        dir="${dir%/*}"
        curl -fsS "$media" \
            | sed -n -e 's/^#EXT-X-MAP:URI="\(.*\)"$/\1/p' -e '/^[^#]/p' \
            | sed "s|^|$dir/|" >>"$work/tonearm.urls"
    done
done
# The same files as nginx finds them: /media/<id>/<dir>/<file>?<signature> is stored at
# <data>/media/streams/<id>/<dir>/<file>.
sed -e "s|^$base/media/|http://127.0.0.1:$nginx_port/streams/|" -e 's|?.*$||' \
    "$work/tonearm.urls" >"$work/nginx.urls"
echo "$(wc -l <"$work/tonearm.urls") segment URLs, $(du -sh "$data/media/streams" | cut -f1) on disk"

cat >"$work/nginx.conf" <<EOF
worker_processes auto;
# Workers must read the data dir (mktemp makes it private); ignored unless run as root.
user $(id -un) $(id -gn);
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types { audio/mp4 m4s mp4; }
    client_body_temp_path $work/nginx-tmp;
    proxy_temp_path $work/nginx-tmp;
    fastcgi_temp_path $work/nginx-tmp;
    uwsgi_temp_path $work/nginx-tmp;
    scgi_temp_path $work/nginx-tmp;
    server {
        listen 127.0.0.1:$nginx_port;
        root $data/media;
        location /streams/ {
            add_header Cache-Control "public, max-age=31536000, immutable";
        }
    }
}
EOF
mkdir -p "$work/nginx-tmp"
/usr/sbin/nginx -c "$work/nginx.conf" -p "$work" -e "$work/nginx-error.log"
for _ in $(seq 1 50); do curl -fs -o /dev/null "$(head -n 1 "$work/nginx.urls")" && break; sleep 0.1; done
# Both must serve the same bytes, or the comparison means nothing.
cmp <(curl -fsS "$(head -n 1 "$work/tonearm.urls")") <(curl -fsS "$(head -n 1 "$work/nginx.urls")")

nginx_pids() { echo "$(cat "$work/nginx.pid") $(pgrep -P "$(cat "$work/nginx.pid")" | tr '\n' ' ')"; }
urls=("$bin/tonearm-bench" urls --concurrency "$concurrency" --seconds "$seconds" --urls)
load "tonearm (first pass: fills the segment cache)" "$server" "${urls[@]}" "$work/tonearm.urls"
load "nginx" "$(nginx_pids)" "${urls[@]}" "$work/nginx.urls"
load "tonearm" "$server" "${urls[@]}" "$work/tonearm.urls"

# A cross-check with a load generator lighter than reqwest: wrk, two threads, each
# walking the list from its own half.
cat >"$work/urls.lua" <<'EOF'
local threads = 0
setup = function(thread)
    thread:set("id", threads)
    threads = threads + 1
end
local paths = {}
init = function(args)
    for line in io.lines(args[1]) do
        paths[#paths + 1] = (line:gsub("^https?://[^/]+", ""))
    end
    counter = math.floor(id * #paths / 2)
end
request = function()
    counter = counter % #paths + 1
    return wrk.format("GET", paths[counter])
end
EOF
if command -v wrk >/dev/null; then
    wrk=(wrk -t2 -c"$concurrency" -d"${seconds}s" --latency -s "$work/urls.lua")
    # This machine's speed drifts from minute to minute: alternate the two servers for
    # several rounds and compare like with like (the summary takes medians).
    for round in $(seq 1 "$rounds"); do
        load "wrk: tonearm (round $round)" "$server" "${wrk[@]}" "$base" -- "$work/tonearm.urls"
        load "wrk: nginx (round $round)" "$(nginx_pids)" "${wrk[@]}" "http://127.0.0.1:$nginx_port" -- "$work/nginx.urls"
    done
    summary "wrk"
    # TONEARM_BENCH_PERF=FILE: also profile the server under a second wrk pass (perf).
    if [ -n "${TONEARM_BENCH_PERF:-}" ]; then
        perf record ${TONEARM_BENCH_PERF_OPTIONS:--F 999 -g} -o "$TONEARM_BENCH_PERF" -p "$server" -- sleep "$seconds" &
        profiler=$!
        load "wrk: tonearm, profiled" "$server" "${wrk[@]}" "$base" -- "$work/tonearm.urls"
        wait "$profiler"
    fi
fi
