#!/usr/bin/env bash
# Set up a fresh machine for mlbuild's example and test suite:
#  - nginx with the WebDAV module (the remote cache server the tests start on 127.0.0.1);
#  - mlbuild itself, editable, with the test and example extras;
#  - a wheelhouse of the example toolchains' pinned requirements, so the tests build those
#    virtual environments offline (PIP_NO_INDEX + PIP_FIND_LINKS) instead of touching a registry.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1; then
  echo "setup: installing nginx-light (WebDAV cache server for the remote-cache tests)"
  if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
  $apt_get update -qq
  DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq nginx-light libnginx-mod-http-echo >/dev/null
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (headless, for the test that renders the HTML benchmark report)"
  if [ "$(id -u)" = 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
  $apt_get update -qq
  DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq chromium >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

wheelhouse=.wheelhouse
mkdir -p "$wheelhouse"
for requirements in toolchains/requirements/*.txt; do
  python3 -m pip download --quiet --disable-pip-version-check -d "$wheelhouse" -r "$requirements"
done
python3 -m pip download --quiet --disable-pip-version-check -d "$wheelhouse" pip setuptools wheel
