# Shared helpers for bench/ scripts: timing, a private sshd on 127.0.0.1, btrfs on a loop
# device, cleanup. Sourced, not run. Needs root (loop devices) and the packages of
# .ci/install-packages.

set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
WORK=${BENCH_WORK:-$(mktemp -d /var/tmp/deltaic-bench.XXXXXX)}
CLEANUP=()

cleanup() {
  local i
  for (( i=${#CLEANUP[@]}-1; i>=0; i-- )); do eval "${CLEANUP[$i]}" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# now: seconds since the epoch with nanoseconds.
now() { date +%s.%N; }

# timed VAR CMD...: runs CMD, stores its wall time in seconds in VAR.
timed() {
  local var=$1; shift
  local t0; t0=$(now)
  "$@"
  printf -v "$var" '%.2f' "$(echo "$(now) - $t0" | bc -l)"
}

# ratio A B: A/B with 2 decimals.
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

# build_deltaic: builds the release binary once; sets DELTAIC.
build_deltaic() {
  (cd "$REPO" && cargo build --release --locked --quiet)
  DELTAIC=$REPO/target/release/deltaic
  export DELTAIC_ALLOW_ROOT=1
}

# start_sshd: private sshd on a free port; writes an ssh config in which host
# `bench.example.test` reaches it. Sets SSH_HOME, SSH_CONFIG, DELTAIC_SSH.
start_sshd() {
  mkdir -p /run/sshd "$WORK/sshd" "$WORK/home/.ssh"
  ssh-keygen -q -t ed25519 -N '' -f "$WORK/sshd/hostkey"
  ssh-keygen -q -t ed25519 -N '' -f "$WORK/sshd/clientkey"
  cp "$WORK/sshd/clientkey.pub" "$WORK/sshd/authorized_keys"
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$WORK/sshd/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $WORK/sshd/hostkey
PidFile $WORK/sshd/sshd.pid
AuthorizedKeysFile $WORK/sshd/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
CONF
  /usr/sbin/sshd -D -f "$WORK/sshd/sshd_config" -E "$WORK/sshd/log" &
  local pid=$!
  CLEANUP+=("kill $pid")
  SSH_HOME=$WORK/home
  SSH_CONFIG=$SSH_HOME/.ssh/config
  cat > "$SSH_CONFIG" <<CONF
Host bench.example.test
  HostName 127.0.0.1
  Port $port
  User root
  IdentityFile $WORK/sshd/clientkey
  IdentitiesOnly yes
  UserKnownHostsFile $WORK/home/.ssh/known_hosts
  StrictHostKeyChecking accept-new
CONF
  # OpenSSH reads ~/.ssh/config from the password database, not $HOME: deltaic runs ssh
  # through this wrapper instead (DELTAIC_SSH), with every option it builds passed unchanged.
  SSH_WRAPPER=$WORK/ssh-wrapper
  printf '#!/bin/sh\nexec ssh -F %s "$@"\n' "$SSH_CONFIG" > "$SSH_WRAPPER"
  chmod +x "$SSH_WRAPPER"
  export DELTAIC_SSH=$SSH_WRAPPER
  local i
  for i in $(seq 50); do
    ssh -F "$SSH_CONFIG" -o BatchMode=yes bench.example.test true 2>/dev/null && return 0
    sleep 0.1
  done
  echo "error: the private sshd did not come up (see $WORK/sshd/log)" >&2
  exit 1
}

# mount_btrfs SIZE DIR: a fresh btrfs on a loop device mounted at DIR.
mount_btrfs() {
  local size=$1 dir=$2
  truncate -s "$size" "$dir.img"
  mkfs.btrfs -q "$dir.img" >/dev/null 2>&1
  mkdir -p "$dir"
  mount -o loop "$dir.img" "$dir"
  CLEANUP+=("umount -l '$dir'; rm -f '$dir.img'")
}

# used_bytes DIR: bytes in use on the filesystem holding DIR, after flushing.
used_bytes() {
  sync
  if stat -f -c %T "$1" | grep -q btrfs; then
    btrfs filesystem sync "$1" >/dev/null
  fi
  df -B1 --output=used "$1" | tail -n 1 | tr -d ' '
}

# mib BYTES
mib() { printf '%.1f' "$(echo "$1 / 1048576" | bc -l)"; }
