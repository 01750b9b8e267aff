#!/usr/bin/env bash
# Installs what the factory needs on a Debian 12 machine, idempotently and quickly when done:
# system packages (setup/apt-packages.txt) through apt-get, Python tools (test-tools/requirements.txt)
# into the project's .venv through pip. Rust comes from the machine's rustup toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@";
    elif command -v sudo >/dev/null; then sudo "$@";
    else die "need root (or sudo) to run: $*"; fi
}

# --- system packages ---
# A line `pkg@suite` takes pkg from that suite (bookworm-backports for QEMU 10: bookworm's 7.2
# does not work beside the preinstalled qemu-utils 10).
missing=()
backports=()
while read -r line; do
    [ -n "$line" ] || continue
    pkg=${line%@*}
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" && continue
    if [ "$line" != "$pkg" ]; then backports+=("$pkg"); else missing+=("$pkg"); fi
done < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' setup/apt-packages.txt)
if [ ${#missing[@]} -gt 0 ] || [ ${#backports[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    if [ ${#backports[@]} -gt 0 ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        say "adding the bookworm-backports apt source"
        echo "deb http://deb.debian.org/debian bookworm-backports main" |
            as_root tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    as_root apt-get update -q
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    if [ ${#backports[@]} -gt 0 ]; then
        say "installing ${backports[*]} from bookworm-backports"
        as_root apt-get install -y -q --no-install-recommends -t bookworm-backports "${backports[@]}"
    fi
fi

# --- Rust ---
command -v cargo >/dev/null || die "cargo is missing: install Rust 1.85 or newer with rustup (edition 2024), then rerun"

# --- Python tools in .venv ---
python=${PYTHON:-python3}
req=test-tools/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "preparing .venv from $req"
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi
