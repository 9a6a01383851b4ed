#!/usr/bin/env bash
# Installs the Debian packages fluke builds and tests with. As root it installs what is missing;
# otherwise it prints the one apt-get line to run and fails, so `make` stops with a clear message.
# With arguments it installs those packages instead (`make fuzz` asks for clang's this way).
set -eu
pkgs="gcc make pkg-config libxxhash-dev xxhash libcjson-dev libcurl4-openssl-dev libarchive-dev
      libturbojpeg0-dev libopenblas-dev libcmocka-dev python3 curl zip unzip ca-certificates bc procps"
pkgs="$pkgs nginx" # tests/integration/remote_nginx.sh: the remote cache against nginx WebDAV
pkgs="$pkgs slurm-wlm" # tests/integration/slurm_real.sh: slurmctld, slurmd and the client on loopback
# Test-only and optional (FLUKE_TEST_DEPS=1, which `make test` sets): headless Chromium renders the
# run report in tests/integration/report_tiny.sh (a font, as recommends are not installed) and
# xmllint checks it. Where they cannot be installed that test says "skipped:", so trying them
# never fails this script.
test_pkgs="chromium fonts-dejavu-core libxml2-utils"
[ $# -gt 0 ] && pkgs="$*" && test_pkgs=""
[ "${FLUKE_TEST_DEPS:-0}" = 1 ] || test_pkgs=""
missing_of() {
    local p out=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out="$out $p"
    done
    echo "$out"
}
optional=$(missing_of $test_pkgs)
if [ -n "$optional" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "ci/deps.sh: installing (test-only):$optional" >&2
        { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends $optional; } > /dev/null 2>&1 ||
            echo "ci/deps.sh: could not install$optional; the tests needing them are skipped" >&2
    elif command -v sudo > /dev/null 2>&1 && sudo -n true 2> /dev/null; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            $optional > /dev/null 2>&1 ||
            echo "ci/deps.sh: could not install$optional; the tests needing them are skipped" >&2
    else
        echo "ci/deps.sh: optional test tools missing (their tests are skipped):$optional" >&2
    fi
fi
missing=$(missing_of $pkgs)
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
