#!/usr/bin/env bash
# Measures what a createImage snapshot costs with each compression choice of src/vm/disk.rs:
# a 2 GiB qcow2 image holding 512 MiB of OS-like data (a tar of /usr), an overlay on it into which
# 1 GiB more is written (as a guest installing packages would), then `qemu-img convert -O qcow2`
# of the overlay with its backing chain: plain, -c (zlib), -c -o compression_type=zstd.
# Usage: test-tools/measure-snapshot-compression.sh [work dir]   (needs ~5 GiB free; qemu-utils)
set -euo pipefail
work=${1:-$(mktemp -d)}
mkdir -p "$work" && cd "$work"
say() { printf '%s\n' "$*"; }

if [ ! -f data.raw ]; then
    say "collecting 1.5 GiB of OS-like data from /usr"
    tar cf - /usr/lib /usr/share /usr/bin 2>/dev/null | head -c $((1536 << 20)) > data.raw || true
fi
rm -f base.qcow2 overlay.qcow2 snap-*.qcow2
dd if=data.raw of=base.raw bs=1M count=512 status=none
qemu-img convert -q -O qcow2 base.raw base.qcow2 && rm base.raw
qemu-img resize -q base.qcow2 2G
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2 2G
# The guest's writes: the next 1 GiB of data, from offset 256 MiB (half over the base's data).
tail -c +$(((512 << 20) + 1)) data.raw > writes.raw
qemu-io -f qcow2 -c "write -s writes.raw $((256 << 20)) 1G" overlay.qcow2 > /dev/null
rm writes.raw
say "overlay: $(du -h --apparent-size overlay.qcow2 | cut -f1) over base $(du -h --apparent-size base.qcow2 | cut -f1)"

for opt in plain zlib zstd; do
    case $opt in
        plain) args=() ;;
        zlib) args=(-c) ;;
        zstd) args=(-c -o compression_type=zstd) ;;
    esac
    sync
    start=$(date +%s.%N)
    qemu-img convert -O qcow2 "${args[@]}" overlay.qcow2 "snap-$opt.qcow2"
    end=$(date +%s.%N)
    size=$(stat -c %s "snap-$opt.qcow2")
    printf '%-6s %6.1f s  %5d MiB\n' "$opt" "$(echo "$end - $start" | bc)" $((size >> 20))
    qemu-img info "snap-$opt.qcow2" | grep -q 'backing file' && { say "snap-$opt has a backing file"; exit 1; }
done
