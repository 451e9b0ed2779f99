#!/usr/bin/env bash
# The Debian packages the whole test suite drives besides Python: installed
# when missing and we can (root with apt-get), otherwise one line naming the
# exact command, and a non-zero exit before any test runs. `make test` and
# .ci/run both call this; nothing here is ever skipped by the tests.
#
#   tool / check                    package         used by
#   socat                           socat           unplugged-serial test, bench baselines
#   systemd-analyze                 systemd         unit verify / security tests
#   dpkg-deb, dpkg-shlibdeps        dpkg-dev        package build tests
#   readelf                         binutils        package build (MemoryDenyWriteExecute check)
#   lintian                         lintian         package lint test
#   pkg-config, libsystemd, gcc     pkg-config libsystemd-dev gcc   systemd-python (journal tests)
#   python3 -m venv                 python3-venv    make's .venv
#   unshare, setpriv                util-linux      name-resolution and capability tests
#   ip                              iproute2        network-namespace tests
#   tinyproxy                       tinyproxy       route rules through a real HTTP CONNECT proxy
set -euo pipefail

python=${PYTHON:-python3}
missing=()
need() {  # need PACKAGE CHECK...
    local package=$1; shift
    "$@" >/dev/null 2>&1 || missing+=("$package")
}
has() { command -v "$1"; }

need socat has socat
need systemd has systemd-analyze
need dpkg-dev has dpkg-shlibdeps
need binutils has readelf
need lintian has lintian
need pkg-config has pkg-config
need libsystemd-dev pkg-config --exists libsystemd
need gcc has gcc
need python3-venv "$python" -c 'import ensurepip, venv'
need util-linux has setpriv
need iproute2 has ip
need tinyproxy has tinyproxy

[ ${#missing[@]} -eq 0 ] && exit 0
# Unique, in order (pkg-config may be listed for its own check and libsystemd's).
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
command="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "system-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi
echo "system-deps: the test suite needs ${missing[*]}: run \`$command\` as root, then make test again" >&2
exit 1
