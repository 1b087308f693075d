#!/usr/bin/env bash
# Set up a fresh machine for mlbuild's example and test suite:
#  - nginx with the WebDAV module (the remote cache server the tests start on 127.0.0.1);
#  - docker (Debian's docker.io) with a running daemon, and busybox-static: container toolchain
#    tests build their images from local files (docker import / docker load), never pulling;
#  - chromium, headless: a test renders the HTML benchmark report;
#  - mlbuild itself, editable, with the test and example extras and Ray (the distributed tests'
#    simulated cluster), at the versions of scripts/test-constraints.txt;
#  - a wheelhouse of the example toolchains' pinned requirements, so the tests build those
#    virtual environments offline (PIP_NO_INDEX + PIP_FIND_LINKS) instead of touching a registry.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the test suite will run on, for reading a CI log: cores, memory, free disk.
echo "setup: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f", $2 / 2^20}' /proc/meminfo) GiB memory," \
  "$(df -h --output=avail /tmp | tail -1 | tr -d ' ') free in /tmp, $(df -h --output=avail . | tail -1 | tr -d ' ') here"

if [ "$(id -u)" = 0 ]; then as_root=""; else as_root="sudo"; fi
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light libnginx-mod-http-echo)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # headless, renders the HTML report in a test
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A docker daemon: start dockerd when none answers (overlay2, else the vfs storage driver).
# A daemon killed earlier leaves its pid file, which makes a new one refuse to start.
if ! docker version >/dev/null 2>&1; then
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    $as_root rm -f /var/run/docker.pid
  fi
  for driver in overlay2 vfs; do
    echo "setup: starting dockerd (storage driver $driver, log /tmp/mlbuild-dockerd.log)"
    $as_root nohup dockerd --storage-driver "$driver" >/tmp/mlbuild-dockerd.log 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 60); do
      docker version >/dev/null 2>&1 && break 2
      kill -0 "$dockerd_pid" 2>/dev/null || break
      sleep 0.5
    done
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  done
  docker version >/dev/null 2>&1 || { echo "setup: dockerd did not start, see /tmp/mlbuild-dockerd.log" >&2; exit 1; }
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test,ray]' -c scripts/test-constraints.txt

wheelhouse=.wheelhouse
mkdir -p "$wheelhouse"
for requirements in toolchains/requirements/*.txt; do
  python3 -m pip download --quiet --disable-pip-version-check -d "$wheelhouse" -r "$requirements"
done
python3 -m pip download --quiet --disable-pip-version-check -d "$wheelhouse" pip setuptools wheel
