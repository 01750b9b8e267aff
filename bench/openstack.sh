#!/usr/bin/env bash
# Measures the sandbox cloud and the factory's OpenStack client, beside python-openstackclient
# on the same sandbox (`make bench`). Everything runs on this machine, on 127.0.0.1:
#   1. requests per second of GET /compute/v2.1/servers/detail and GET /image/v2/images (wrk);
#   2. upload throughput and peak memory (max RSS, /usr/bin/time -v) of a large image file with
#      the factory's client (examples/upload_image.rs) and with `openstack image create --file`;
#   3. wall time (hyperfine) of `factory list --json`, `openstack image list`, and the factory
#      client's own image list (examples/list_images.rs).
# Results go to stdout and to $BENCH_OUT (default target/bench-openstack.md).
#
# Settings (environment): BENCH_IMAGE_MIB (2048), BENCH_DURATION (wrk seconds, 10),
# BENCH_CONNECTIONS (wrk, 16), BENCH_RUNS (hyperfine, 10).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

image_mib=${BENCH_IMAGE_MIB:-2048}
duration=${BENCH_DURATION:-10}
connections=${BENCH_CONNECTIONS:-16}
runs=${BENCH_RUNS:-10}
out=${BENCH_OUT:-target/bench-openstack.md}
target=${CARGO_TARGET_DIR:-target}

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# --- tools ---
missing=()
for tool in wrk hyperfine curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: apt-get install ${missing[*]}"
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
setup/install.sh
osc=$root/.venv/bin/openstack
say "building (release)"
cargo build --release --locked -q --bin factory --example sandbox --example upload_image --example list_images
bin=$target/release

# --- a sandbox of our own, on a free port, in a scratch directory ---
work=$(mktemp -d "${TMPDIR:-/tmp}/factory-bench.XXXXXX")
sandbox_pid=
cleanup() {
    if [ -n "$sandbox_pid" ]; then kill "$sandbox_pid" 2>/dev/null || true; wait "$sandbox_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
"$bin/examples/sandbox" "$work/cloud" --fast --clouds-yaml "$work/clouds.yaml" >"$work/url" 2>"$work/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.1; done
[ -s "$work/url" ] || die "the sandbox did not start: $(cat "$work/sandbox.log")"
url=$(head -n1 "$work/url")
export OS_CLIENT_CONFIG_FILE=$work/clouds.yaml OS_CLOUD=sandbox
say "sandbox at $url (pid $sandbox_pid)"

token=$("$osc" token issue -f value -c id)
api() { curl -sf -H "X-Auth-Token: $token" -H 'Content-Type: application/json' "$@"; }

# --- something to list: 20 images, 10 servers (the sandbox's instance quota) ---
say "seeding 20 images and 10 servers"
printf 'seed' >"$work/seed.img"
first_image=
for n in $(seq -w 1 20); do
    id=$(api -X POST "$url/image/v2/images" \
        -d "{\"name\": \"seed-$n\", \"disk_format\": \"raw\", \"container_format\": \"bare\"}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    api -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$work/seed.img" \
        "$url/image/v2/images/$id/file" >/dev/null
    first_image=${first_image:-$id}
done
for n in $(seq -w 1 10); do
    api -X POST -H 'OpenStack-API-Version: compute 2.79' "$url/compute/v2.1/servers" \
        -d "{\"server\": {\"name\": \"seed-$n\", \"imageRef\": \"$first_image\", \"flavorRef\": \"42\", \"networks\": \"auto\"}}" >/dev/null
done
sleep 1

# --- 1. requests per second ---
rps() { # path, extra headers...
    local path=$1; shift
    local headers=(-H "X-Auth-Token: $token")
    for h in "$@"; do headers+=(-H "$h"); done
    wrk -t2 -c"$connections" -d"${duration}s" "${headers[@]}" "$url$path" |
        tee -a "$work/wrk.txt" | awk '/Requests\/sec/ {print $2}'
}
say "wrk: GET /compute/v2.1/servers/detail"
rps_servers=$(rps /compute/v2.1/servers/detail 'OpenStack-API-Version: compute 2.79')
say "wrk: GET /image/v2/images"
rps_images=$(rps /image/v2/images)

# --- 2. a large upload, each client under /usr/bin/time -v ---
say "writing a ${image_mib} MiB image file"
head -c "$((image_mib * 1024 * 1024))" /dev/urandom >"$work/disk.raw"
measure() { # name, command...: max RSS (KiB) and wall time into $work/NAME.rss, NAME.wall
    local name=$1; shift
    /usr/bin/time -v -o "$work/$name.time" "$@" >"$work/$name.out" 2>&1 ||
        die "$name failed: $(cat "$work/$name.out")"
    awk -F': ' '/Maximum resident set size/ {print $2}' "$work/$name.time" >"$work/$name.rss"
    awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/$name.time" >"$work/$name.wall"
}
wall_seconds() { # h:mm:ss or m:ss.ss
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }' "$work/$1.wall"
}
say "upload with the factory's client"
measure ours "$bin/examples/upload_image" "$work/disk.raw" bench-ours
say "upload with openstack image create --file"
measure osc "$osc" image create --file "$work/disk.raw" \
    --disk-format raw --container-format bare bench-osc -f value -c id
rss_ours=$(cat "$work/ours.rss")
rss_osc=$(cat "$work/osc.rss")
secs_ours=$(wall_seconds ours)
secs_osc=$(wall_seconds osc)
mibps() { awk -v m="$image_mib" -v s="$1" 'BEGIN { printf "%.0f", m / s }'; }
sandbox_rss=$(awk '/VmHWM/ {print $2}' "/proc/$sandbox_pid/status")

# --- 3. start-up and one list call ---
say "hyperfine"
hyperfine -N --warmup 2 --runs "$runs" --export-markdown "$work/hyperfine.md" \
    "$bin/factory list --json" \
    "$osc image list" \
    "$bin/examples/list_images" >"$work/hyperfine.txt"

mkdir -p "$(dirname "$out")"
{
    echo "# OpenStack client and sandbox measurements"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo);" \
        "sandbox and clients on the same machine, over 127.0.0.1; release builds."
    echo
    echo "| what | figure |"
    echo "| --- | --- |"
    echo "| GET /compute/v2.1/servers/detail (10 servers, 2.79), wrk -t2 -c$connections ${duration}s | $rps_servers req/s |"
    echo "| GET /image/v2/images (20 images), wrk -t2 -c$connections ${duration}s | $rps_images req/s |"
    echo "| upload ${image_mib} MiB, factory client (examples/upload_image) | $secs_ours s, $(mibps "$secs_ours") MiB/s, max RSS $((rss_ours / 1024)) MiB |"
    echo "| upload ${image_mib} MiB, openstack image create --file | $secs_osc s, $(mibps "$secs_osc") MiB/s, max RSS $((rss_osc / 1024)) MiB |"
    echo "| sandbox peak RSS over the whole run | $((sandbox_rss / 1024)) MiB |"
    echo
    echo "Wall time (hyperfine -N, $runs runs, 2 warm-up):"
    echo
    cat "$work/hyperfine.md"
} | tee "$out"
say "written to $out"
