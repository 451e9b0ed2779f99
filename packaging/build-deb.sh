#!/usr/bin/env bash
# Build gatewayd_<version>_<arch>.deb with dpkg-deb alone (no debhelper).
#
#   packaging/build-deb.sh [OUTDIR]        (default OUTDIR: dist/; `make deb`)
#
# The package ships a self-contained virtualenv at /opt/gatewayd: gatewayd
# (installed from this source tree, not editable) and its runtime dependencies
# as PyPI wheels, on top of Debian's own interpreter /usr/bin/python3.X. So:
#
# * Build on the release and architecture you install on (a Raspberry Pi OS
#   bookworm arm64 package is built on a bookworm arm64 machine): the wheels
#   are compiled for this machine's CPU and this Python's ABI, and the package
#   depends on exactly this python3.X. Architecture is `dpkg --print-architecture`.
# * A venv has its own absolute path baked in (script shebangs, activate,
#   pyvenv.cfg, .pyc file names). It is created at STAGE/opt/gatewayd and every
#   STAGE/opt/gatewayd is rewritten to /opt/gatewayd afterwards; the .pyc files
#   are compiled last, with /opt/gatewayd names. The bin/python symlink points
#   at /usr/bin/python3.X and needs no fixing.
# * pip needs PyPI (or a mirror configured for pip) while building.
#
# Environment:
#   PYTHON=/usr/bin/python3.X   interpreter of the venv (default: the one
#                               /usr/bin/python3 is); must live in /usr/bin.
#   SYSTEMD_PYTHON=auto|yes|no  bundle systemd-python (native journal fields):
#                               it is compiled from source and needs a C
#                               compiler, pkg-config, libsystemd-dev and
#                               python3-dev. auto: only when those are there,
#                               and carry on without it if the build fails.
#   UVLOOP=auto|yes|no          bundle uvloop, the faster event loop the
#                               daemon then runs on ([daemon] event_loop).
#                               auto: when PyPI has a wheel for this machine
#                               (x86_64, arm64; not armhf), else without it.
#   MAINTAINER="Name <mail>"    the Maintainer field.
set -euo pipefail
umask 022

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/.." && pwd)"
outdir="${1:-$src/dist}"
prefix=/opt/gatewayd
maintainer="${MAINTAINER:-gatewayd developers <gatewayd@users.noreply.github.com>}"
systemd_python="${SYSTEMD_PYTHON:-auto}"
uvloop="${UVLOOP:-auto}"

say() { printf 'build-deb: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v dpkg-deb >/dev/null || die "dpkg-deb not found (a Debian system is needed)"

# --- the interpreter: Debian's, never a pyenv/conda one --------------------
if [ -z "${PYTHON:-}" ]; then
    [ -x /usr/bin/python3 ] || die "/usr/bin/python3 not found: apt-get install python3 python3-venv"
    pyver="$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    PYTHON="/usr/bin/python$pyver"
fi
case "$PYTHON" in
    /usr/bin/python3.*) ;;
    *) die "PYTHON must be Debian's /usr/bin/python3.X (the venv links to it), not $PYTHON" ;;
esac
[ -x "$PYTHON" ] || die "$PYTHON not found"
pyver="${PYTHON#/usr/bin/python}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "gatewayd needs Python >= 3.11; $PYTHON is $pyver"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
    || die "$PYTHON has no venv/ensurepip: apt-get install python3-venv"
pypkg="$(dpkg-query -S "$(readlink -f "$PYTHON")" 2>/dev/null | head -n1 | cut -d: -f1)" || true
[ -n "$pypkg" ] || pypkg="python$pyver-minimal"
pypkg="${pypkg%-minimal}"   # python3.11-minimal has the binary; python3.11 adds the stdlib
arch="$(dpkg --print-architecture)"

# --- scratch space: short path (shebangs), recognisable name (tests look for leftovers)
work="$(mktemp -d "${TMPDIR:-/tmp}/gatewayd-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT
stage="$work/root"
venv="$stage$prefix"
mkdir -p "$stage" "$work/src"

# A clean copy of the source: pip builds in the tree it is given, and this one
# is shared with whoever is working in it.
tar -C "$src" \
    --exclude=./.git --exclude=./.venv --exclude=./dist --exclude=./build \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.hypothesis \
    --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=./ttyAT0 --exclude='*.deb' \
    -cf - . | tar -C "$work/src" -xf -

# --- the virtualenv ----------------------------------------------------------
say "creating the venv with $PYTHON"
"$PYTHON" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet)
say "installing gatewayd and its dependencies"
"${pip[@]}" install --no-compile "$work/src"

optional_req() {  # the first requirement of pyproject's optional dependency group $1
    "$PYTHON" -c '
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(tomllib.load(f)["project"]["optional-dependencies"][sys.argv[2]][0])' \
        "$work/src/pyproject.toml" "$1"
}

want_systemd=no
case "$systemd_python" in
    yes) want_systemd=yes ;;
    no) ;;
    auto)
        if command -v cc >/dev/null && command -v pkg-config >/dev/null \
            && pkg-config --exists libsystemd \
            && [ -f "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]
        then
            want_systemd=yes
        else
            say "systemd-python not bundled (needs cc, pkg-config, libsystemd-dev, python3-dev):" \
                "logs go to the journal as JSON lines on stderr"
        fi ;;
    *) die "SYSTEMD_PYTHON must be auto, yes or no" ;;
esac
if [ "$want_systemd" = yes ]; then
    req="$(optional_req systemd)"
    say "building $req"
    # Built here, against $PYTHON: a wheel cached from another interpreter
    # (a pyenv build, say) would carry that interpreter's RUNPATH.
    if ! "${pip[@]}" install --no-compile --use-pep517 --no-cache-dir \
            --no-binary systemd-python "$req"; then
        [ "$systemd_python" = yes ] && die "$req failed to build"
        say "$req failed to build: not bundled"
    fi
fi

case "$uvloop" in
    no) ;;
    yes|auto)
        req="$(optional_req uvloop)"
        say "installing $req (a wheel)"
        if ! "${pip[@]}" install --no-compile --only-binary uvloop "$req"; then
            [ "$uvloop" = yes ] && die "no $req wheel for this machine"
            say "no $req wheel for this machine: not bundled (the daemon runs on asyncio's loop)"
        fi ;;
    *) die "UVLOOP must be auto, yes or no" ;;
esac

# setuptools came with the venv and is not needed at run time (pip builds
# sdists of third-party plugins in isolated environments).
"${pip[@]}" uninstall --yes setuptools >/dev/null 2>&1 || true

version="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("gatewayd"))')"
# PEP 440 -> Debian: pre-releases sort before the release (1.0rc1 -> 1.0~rc1).
debversion="$("$PYTHON" -c '
import re, sys
v = sys.argv[1]
v = re.sub(r"[.-]?(a|b|rc|dev)(\d*)", r"~\1\2", v)
v = re.sub(r"[.-]?post(\d*)", r"+post\1", v)
print(v)' "$version")"

# --- staging paths -> /opt/gatewayd -------------------------------------------
# direct_url.json only records where the build tree was.
find "$venv" -name direct_url.json -path '*.dist-info/*' -print0 | while IFS= read -r -d '' f; do
    sed -i '/direct_url\.json,/d' "$(dirname "$f")/RECORD"
    rm -f "$f"
done
find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
# Script shebangs, bin/activate*, pyvenv.cfg (`command = ... -m venv STAGE/opt/gatewayd`).
grep -rlIZ -F "$venv" "$venv" | xargs -0 -r sed -i "s|$venv|$prefix|g"
if leftovers="$(grep -rl -F "$work" "$venv")"; then
    die "files still name the build directory: $leftovers"
fi
for f in "$venv"/bin/*; do
    if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
    head -c2 "$f" | grep -q '^#!' || continue
    case "$(head -n1 "$f")" in
        "#!$prefix/bin/python" | "#!$prefix/bin/python3"* | "#!/bin/sh" | "#!/bin/bash" | "#!/usr/bin/env "*) ;;
        *) die "unexpected shebang in $f: $(head -n1 "$f")" ;;
    esac
done
[ "$(head -n1 "$venv/bin/gatewayd")" = "#!$prefix/bin/python" ] \
    || die "bin/gatewayd shebang is $(head -n1 "$venv/bin/gatewayd")"

# Only needed to build C extensions against the venv; empty.
rmdir "$venv/include/python$pyver" "$venv/include" 2>/dev/null || true

# Strip the extension modules (debug symbols are most of their size), as
# dh_strip would. Left alone: libraries auditwheel bundled (*.libs/) and
# anything with a RUNPATH, which patchelf edited and strip could break.
if command -v strip >/dev/null && command -v readelf >/dev/null; then
    find "$venv" -type f -name '*.so*' -not -path '*.libs/*' -print0 \
        | while IFS= read -r -d '' so; do
            readelf -d "$so" 2>/dev/null | grep -E '\((RPATH|RUNPATH)\)' >/dev/null && continue
            strip --strip-unneeded --remove-section=.comment --remove-section=.note "$so"
        done
else
    say "strip/readelf not found (binutils): extension modules left unstripped"
fi

# /opt is read-only for the service (ProtectSystem=strict): ship the .pyc
# files, named as installed. Timestamp-checked (dpkg keeps the mtimes).
"$PYTHON" -m compileall -q -j0 -s "$stage" -p / "$venv/lib" >/dev/null \
    || say "warning: some files did not compile (left as source only)"

# --- the rest of the file system ----------------------------------------------
install -D -m0644 "$here/systemd/gatewayd.service" "$stage/lib/systemd/system/gatewayd.service"
install -D -m0644 "$here/gatewayd.toml" "$stage/etc/gatewayd/gatewayd.toml"
install -d -m0755 "$stage/usr/bin"
ln -s "$prefix/bin/gatewayd" "$stage/usr/bin/gatewayd"
doc="$stage/usr/share/doc/gatewayd"
install -D -m0644 "$here/copyright" "$doc/copyright"
for f in README.md docs/raspberry-pi.md docs/config.md docs/commands.md docs/plugins.md THREAT_MODEL.md; do
    install -m0644 "$src/$f" "$doc/$(basename "$f")"
done
date="$(date -R ${SOURCE_DATE_EPOCH:+-d "@$SOURCE_DATE_EPOCH"})"
printf 'gatewayd (%s) unstable; urgency=medium\n\n  * Upstream release %s.\n\n -- %s  %s\n' \
    "$debversion" "$version" "$maintainer" "$date" | gzip -9n > "$doc/changelog.gz"
install -d -m0755 "$stage/usr/share/man/man1"
gzip -9n < "$here/gatewayd.1" > "$stage/usr/share/man/man1/gatewayd.1.gz"
install -D -m0644 "$here/lintian-overrides" "$stage/usr/share/lintian/overrides/gatewayd"
chmod -R u+rwX,go+rX,go-w "$stage"

# --- DEBIAN/ ----------------------------------------------------------------
install -d -m0755 "$stage/DEBIAN"
for script in postinst prerm postrm; do
    install -m0755 "$here/debian/$script" "$stage/DEBIAN/$script"
done
printf '/etc/gatewayd/gatewayd.toml\n' > "$stage/DEBIAN/conffiles"

# Shared-library dependencies of the wheels' extension modules (libc6, and
# libsystemd0 when systemd-python is in), as Debian computes them.
shlibs=""
if command -v dpkg-shlibdeps >/dev/null; then
    mapfile -d '' elves < <(find "$venv" -type f -name '*.so*' -print0)
    if [ "${#elves[@]}" -gt 0 ]; then
        mkdir -p "$work/shlibs/debian"
        printf 'Source: gatewayd\n\nPackage: gatewayd\nArchitecture: any\n' > "$work/shlibs/debian/control"
        # The wheels' own bundled libraries (*.libs/) are private: search there too.
        libdirs=()
        while IFS= read -r -d '' d; do libdirs+=("-l$d"); done \
            < <(find "$venv" -type d -name '*.libs' -print0)
        shlibs="$(cd "$work/shlibs" && dpkg-shlibdeps -O --ignore-missing-info --warnings=0 \
            "${libdirs[@]}" "${elves[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')" || shlibs=""
    fi
fi
[ -n "$shlibs" ] || { say "dpkg-shlibdeps unavailable or failed: depending on libc6 unversioned"; shlibs="libc6"; }

installed_size="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<EOF
Package: gatewayd
Version: $debversion
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $pypkg, adduser, $shlibs
Recommends: ca-certificates
Section: net
Priority: optional
Description: ESP-AT / Realtek Ameba Wi-Fi module emulator for a UART
 gatewayd stands in for an Espressif ESP-AT or Realtek Ameba Wi-Fi module on
 the UART of a Linux single-board computer such as a Raspberry Pi. The
 microcontroller wired to the UART keeps its firmware: gatewayd answers its AT
 commands byte for byte as the module would, and carries its links over the
 host's network.
 .
 The package installs a self-contained virtualenv in /opt/gatewayd on top
 of $PYTHON, and a hardened systemd service, not enabled
 until the administrator runs: systemctl enable --now gatewayd
EOF
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
    | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

mkdir -p "$outdir"
deb="$outdir/gatewayd_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1))"
printf '%s\n' "$deb"
