#!/usr/bin/env bash
# Quickstart: build deltaic and run a real backup of a local directory on the `dir` snapshot
# backend (no LVM, no root needed), then show the snapshot it made.
#
#   ./quickstart.sh [SOURCE_DIR] [WORK_DIR]
#
# SOURCE_DIR defaults to this repository's src/ folder; WORK_DIR to /tmp/deltaic-quickstart.
# Run it twice: the second run transfers nothing and makes a second snapshot.
# With DELTAIC_BIN=/path/to/deltaic set, that binary is used and nothing is built (the tests
# run the quickstart this way with their debug build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "${1:-$here/src}" && pwd)
work=${2:-/tmp/deltaic-quickstart}

need_apt=()
command -v rsync >/dev/null || need_apt+=(rsync)
[ -n "${DELTAIC_BIN:-}" ] || command -v cc >/dev/null || need_apt+=(gcc libc6-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "Installing ${need_apt[*]} (Debian packages)..."
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if [ -n "${DELTAIC_BIN:-}" ]; then
  if [ ! -x "$DELTAIC_BIN" ]; then
    echo "error: DELTAIC_BIN=$DELTAIC_BIN is not an executable file" >&2
    exit 1
  fi
  deltaic=$DELTAIC_BIN
else
  if ! command -v cargo >/dev/null; then
    echo "error: cargo (Rust 1.95 or newer) is needed: see https://rustup.rs, then run this again" >&2
    exit 1
  fi
  echo "Building deltaic (release)..."
  (cd "$here" && cargo build --release --locked --quiet)
  deltaic=$here/target/release/deltaic
fi

mkdir -p "$work/backup"
config=$work/deltaic.conf
cat > "$config" <<CONF
# Written by quickstart.sh: back up one local directory, snapshots as reflinked copies.
settings:
  root: $work/backup
  snapshot-backend: dir
  snapshot-dir: $work/snapshots
rsync:
  quickstart.local:
    local: true
    mounts: [$source_dir]
CONF

# deltaic refuses to run as root unless told; a quickstart as root is fine.
[ "$(id -u)" -ne 0 ] || export DELTAIC_ALLOW_ROOT=1

echo "Backing up $source_dir into $work/backup ..."
"$deltaic" -c "$config" run
echo
echo "Snapshots (deltaic -c $config ls):"
"$deltaic" -c "$config" ls
latest=$("$deltaic" -c "$config" ls --json | sed -n 's/.*"name": *"\([^"]*\)".*/\1/p' | tail -n 1)
echo
echo "The latest snapshot holds the files under $work/snapshots/$latest/rsync/quickstart$source_dir:"
ls "$work/snapshots/$latest/rsync/quickstart$source_dir" | head -n 10
