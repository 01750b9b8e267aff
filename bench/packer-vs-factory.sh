#!/usr/bin/env bash
# The same bundle (images/bundle-hello) built by HashiCorp Packer 1.6.6 (bench/packer/bundle-hello.json:
# openstack builder, ansible provisioner) and by `factory build`, one after the other, against one
# sandbox cloud with real QEMU machines (`make bench-packer`). Both start from the same base image
# `debian-12`, the same flavor (m1.small), user (debian) and playbook, and end with an image of the
# same name and properties.
#
#   1. builds the factory (release), starts `factory sandbox` on a scratch data directory;
#   2. uploads the base image `debian-12`: the qcow2 file BENCH_BASE_IMAGE, else the debootstrap
#      image cached by the tests (target/tmp/osimage-boot/cache/images/debian-12/), else first
#      builds os/debian-12 from packages (`factory build debian-12`) to make that cache;
#   3. BENCH_ROUNDS rounds (default 1), the order alternating (factory first in odd rounds):
#      wall time of each build, and the time of each step (the factory's own `<==` step lines;
#      Packer's from the time its `==>` lines appear);
#   4. stops the sandbox and its QEMU machines, deletes the scratch directory.
# Results go to stdout and to $BENCH_OUT (default target/bench-packer/report.md), the logs of the
# builds beside it. Timings are wall times on a shared machine: other QEMU guests add noise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

rounds=${BENCH_ROUNDS:-1}
out=${BENCH_OUT:-target/bench-packer/report.md}
target=${CARGO_TARGET_DIR:-target}
template=$root/bench/packer/bundle-hello.json

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive number, not '$rounds'"

# --- tools ---
if ! command -v packer >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "packer is missing: apt-get install packer"
    say "installing packer"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q packer >/dev/null
fi
for tool in qemu-system-x86_64 qemu-img ssh python3; do
    command -v "$tool" >/dev/null || die "$tool is missing: make setup"
done
[ -x .venv/bin/ansible-playbook ] || setup/install.sh
say "building the factory (release)"
cargo build --release --locked -q --bin factory
factory=$root/$target/release/factory
[ -x "$factory" ] || factory=$target/release/factory
osc=$root/.venv/bin/openstack

# --- a sandbox of our own, in a scratch directory ---
mkdir -p "$(dirname "$out")"
logs=$(cd "$(dirname "$out")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/factory-bench-packer.XXXXXX")
sandbox_pid=
cleanup() {
    local status=$?
    if [ -n "$sandbox_pid" ] && kill -0 "$sandbox_pid" 2>/dev/null; then
        say "stopping the sandbox"
        kill -INT "$sandbox_pid" 2>/dev/null || true
        for _ in $(seq 120); do kill -0 "$sandbox_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$sandbox_pid" 2>/dev/null || true
    fi
    # QEMU machines of this sandbox only: their command lines name its scratch directory.
    local left
    left=$(pgrep -f -- "$work/" || true)
    if [ -n "$left" ]; then
        say "stopping what is left of the sandbox's machines: $(echo $left)"
        kill $left 2>/dev/null || true
        sleep 2
        kill -KILL $left 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting the sandbox (QEMU machines)"
setsid "$factory" --data-dir "$work/data" sandbox >"$work/sandbox.out" 2>"$work/sandbox.log" &
sandbox_pid=$!
clouds=$work/data/sandbox/clouds.yaml
for _ in $(seq 300); do
    grep -q '^Servers:' "$work/sandbox.out" 2>/dev/null && [ -s "$clouds" ] && break
    kill -0 "$sandbox_pid" 2>/dev/null || die "the sandbox stopped: $(cat "$work/sandbox.log")"
    sleep 0.2
done
[ -s "$clouds" ] || die "the sandbox did not start: $(cat "$work/sandbox.log")"
grep -q 'QEMU machines' "$work/sandbox.out" || die "the sandbox has no QEMU machines: $(cat "$work/sandbox.out")"
export OS_CLIENT_CONFIG_FILE=$clouds OS_CLOUD=factory-sandbox
export FACTORY_SSH_CIDR=127.0.0.0/8 FACTORY_REPO=$root CHECKPOINT_DISABLE=1
export PACKER_CACHE_DIR=$work/packer_cache
say "$(head -n1 "$work/sandbox.out")"
say "$(sed -n 2p "$work/sandbox.out")"

# --- the base image, the same for both ---
base_name=debian-12
cache=$target/tmp/osimage-boot
cached() { ls -t "$cache"/cache/images/debian-12/debootstrap-*.qcow2 2>/dev/null | head -n1 || true; }
base_file=${BENCH_BASE_IMAGE:-$(cached)}
if [ -z "$base_file" ]; then
    # No cached image: os/debian-12 built from packages (debootstrap) by a factory on its own
    # embedded sandbox, which caches the file under target/tmp/osimage-boot as the tests do.
    say "no cached debootstrap image: building os/debian-12 from packages first (long)"
    (unset OS_CLOUD OS_CLIENT_CONFIG_FILE; "$factory" --data-dir "$cache" build debian-12) \
        >"$logs/debian-12.log" 2>&1 || die "factory build debian-12 failed: see $logs/debian-12.log"
    base_file=$(cached)
    [ -n "$base_file" ] || die "no debootstrap image under $cache after the build"
fi
[ -f "$base_file" ] || die "no base image file $base_file"
say "uploading $base_file as $base_name"
"$osc" image create --disk-format qcow2 --container-format bare --file "$base_file" \
    "$base_name" -f value -c id >/dev/null

# --- the builds ---
stamp() { while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done; }
run_factory() { # round
    local log=$logs/factory-$1.log t0 t1 rc=0
    t0=$EPOCHREALTIME
    "$factory" --data-dir "$work/factory" build bundle-hello --cloud factory-sandbox 2>&1 |
        stamp >"$log" || rc=$?
    t1=$EPOCHREALTIME
    echo "factory $1 $t0 $t1 $rc $log" >>"$work/runs"
    [ "$rc" -eq 0 ] || die "factory build failed (exit $rc): see $log"
    local image
    image=$(sed -n 's/.*SUCCEEDED in .*: image [^ ]* (\(.*\))$/\1/p' "$log" | tail -n1)
    [ -z "$image" ] || "$osc" image delete "$image"
}
run_packer() { # round
    local log=$logs/packer-$1.log t0 t1 rc=0
    t0=$EPOCHREALTIME
    packer build -color=false -var "base_image=$base_name" "$template" 2>&1 | stamp >"$log" ||
        rc=$?
    t1=$EPOCHREALTIME
    echo "packer $1 $t0 $t1 $rc $log" >>"$work/runs"
    [ "$rc" -eq 0 ] || die "packer build failed (exit $rc): see $log"
    local image
    image=$(sed -n 's/.*openstack: An image was created: \(.*\)$/\1/p' "$log" | tail -n1)
    [ -z "$image" ] || "$osc" image delete "$image"
}
: >"$work/runs"
for round in $(seq "$rounds"); do
    if [ $((round % 2)) -eq 1 ]; then order="factory packer"; else order="packer factory"; fi
    for tool in $order; do
        say "round $round/$rounds: $tool build bundle-hello ($(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/') load, $(pgrep -c qemu-system || true) QEMU guests on the machine)"
        "run_$tool" "$round"
    done
done

# --- the report ---
python3 - "$work/runs" "$rounds" >"$out" <<'EOF'
import re
import sys

runs_file, rounds = sys.argv[1], int(sys.argv[2])
ROWS = ["set-up (flavor, image, keypair, group)", "boot (until ACTIVE)", "wait for SSH",
        "provision (Ansible)", "hygiene", "stop", "snapshot (until active)",
        "properties, render", "clean up", "other (start-up, exit)"]
FACTORY = {
    "resolve the base image": 0, "create a temporary keypair": 0,
    "create a temporary security group": 0, "boot the builder server": 1, "wait for SSH": 2,
    "provision with Ansible": 3, "clean the image (hygiene)": 4, "stop the builder": 5,
    "snapshot into an image": 6, "set image properties": 7, "render outputs": 7, "clean up": 8,
}
# Packer's `==>` lines, in order: each starts the row given, until the next one.
PACKER = [
    (r"Loading flavor", 0), (r"Launching server", 1), (r"Waiting for SSH to become available", 2),
    (r"Provisioning with Ansible", 3), (r"Provisioning with shell script", 4),
    (r"Stopping server", 5), (r"Creating the image", 6), (r"Updating image", 7),
    (r"Terminating the source server", 8),
]

def factory_steps(log, t0, t1):
    rows = [0.0] * len(ROWS)
    for line in open(log, errors="replace"):
        m = re.search(r" <== (.*) \(([0-9.]+)s\)$", line)
        if m and m.group(1) in FACTORY:
            rows[FACTORY[m.group(1)]] += float(m.group(2))
    rows[-1] = max(0.0, (t1 - t0) - sum(rows))
    return rows

def packer_steps(log, t0, t1):
    rows = [0.0] * len(ROWS)
    marks, finished = [], t1
    for line in open(log, errors="replace"):
        stamp, _, text = line.partition(" ")
        if "Build 'openstack' finished" in text:
            finished = float(stamp)
        if "==> openstack:" not in text:
            continue
        for pattern, row in PACKER:
            if re.search(pattern, text):
                if not marks or marks[-1][1] != row:
                    marks.append((float(stamp), row))
                break
    ends = [m[0] for m in marks[1:]] + [finished]
    for (start, row), end in zip(marks, ends):
        rows[row] += end - start
    rows[-1] = max(0.0, (t1 - t0) - sum(rows))
    return rows

runs = []
for line in open(runs_file):
    tool, rnd, t0, t1, rc, log = line.split()
    t0, t1 = float(t0), float(t1)
    steps = (factory_steps if tool == "factory" else packer_steps)(log, t0, t1)
    runs.append((tool, int(rnd), t1 - t0, steps))

cols = [f"{tool} #{rnd}" for tool, rnd, _, _ in runs]
print("# bundle-hello: `factory build` beside `packer build` (seconds, wall time)\n")
print("| step | " + " | ".join(cols) + " |")
print("|---|" + "---:|" * len(cols))
for i, name in enumerate(ROWS):
    print(f"| {name} | " + " | ".join(f"{r[3][i]:.1f}" for r in runs) + " |")
print("| **total** | " + " | ".join(f"**{r[2]:.1f}**" for r in runs) + " |")
for tool in ("factory", "packer"):
    walls = sorted(r[2] for r in runs if r[0] == tool)
    if walls:
        mid = walls[len(walls) // 2] if len(walls) % 2 else sum(walls[len(walls)//2-1:len(walls)//2+1]) / 2
        print(f"\n{tool}: {len(walls)} build(s), median {mid:.1f} s, min {walls[0]:.1f} s, max {walls[-1]:.1f} s", end="")
print("\n\nFactory steps from its own `<==` lines; Packer's from when each `==>` line appeared "
      "(\"boot\" ends when Packer starts waiting for SSH). QEMU guests under TCG on a shared "
      "machine: expect noise between rounds.")
EOF
cat "$out"
say "report in $out, build logs in $logs"
