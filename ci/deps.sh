#!/usr/bin/env bash
# Installs the Debian packages fluke builds and tests with. As root it installs what is missing;
# otherwise it prints the one apt-get line to run and fails, so `make` stops with a clear message.
# With arguments it installs those packages instead (`make fuzz` asks for clang's this way).
set -eu
pkgs="gcc make pkg-config libxxhash-dev xxhash libcjson-dev libcurl4-openssl-dev libarchive-dev
      libturbojpeg0-dev libopenblas-dev libcmocka-dev python3 curl zip unzip ca-certificates bc procps"
pkgs="$pkgs nginx" # tests/integration/remote_nginx.sh: the remote cache against nginx WebDAV
[ $# -gt 0 ] && pkgs="$*"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "ci/deps.sh: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    exit 0
fi
if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    exit 0
fi
echo "ci/deps.sh: missing packages; run:" >&2
echo "  sudo apt-get install -y$missing" >&2
exit 1
