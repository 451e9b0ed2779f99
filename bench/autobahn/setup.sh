#!/usr/bin/env bash
# Creates bench/autobahn/.venv27: a Python 2.7 virtualenv with Autobahn|Testsuite
# 0.8.2 (`wstest`) and the pinned dependencies in requirements27.txt.
#
#   bash bench/autobahn/setup.sh          # idempotent: a no-op when up to date
#   PYTHON27=/path/to/python2.7 bash bench/autobahn/setup.sh
#
# Needs a Python 2.7 interpreter (pyenv's 2.7.18 is looked for first), gcc and
# the Python 2.7 headers (wsaccel is built from source), and PyPI. Opt-in: no
# test or CI job runs this.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv27"
boot="$here/.bootstrap"
pins="$here/requirements27.txt"
stamp="$venv/.installed-pins"

find_python27() {
    local candidate
    if [ -n "${PYTHON27:-}" ]; then
        echo "$PYTHON27"
        return
    fi
    for candidate in \
        "$HOME/.pyenv/versions/2.7.18/bin/python" \
        "$(pyenv prefix 2.7.18 2>/dev/null || true)/bin/python" \
        "$(command -v python2.7 || true)" \
        "$(command -v python2 || true)"; do
        if [ -x "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "no Python 2.7 found: install it (pyenv install 2.7.18) or set PYTHON27" >&2
    exit 2
}

wstest_works() {
    [ -x "$venv/bin/wstest" ] && timeout 60 "$venv/bin/wstest" --help >/dev/null 2>&1
}

if [ -f "$stamp" ] && cmp -s "$pins" "$stamp" && wstest_works; then
    echo "bench/autobahn/.venv27 is up to date ($("$venv/bin/python" --version 2>&1), autobahntestsuite 0.8.2)"
    exit 0
fi

py27="$(find_python27)"
echo "using $py27 ($("$py27" --version 2>&1))"

# virtualenv 16.7.12 runs on Python 2.7 itself and seeds pip<=20.3.4 and
# setuptools<=44.1.1, the last releases for 2.7. It goes into a private
# folder so that the interpreter's own site-packages stay untouched.
if ! PYTHONPATH="$boot" "$py27" -c 'import virtualenv' 2>/dev/null; then
    timeout 300 "$py27" -m pip install --quiet --disable-pip-version-check \
        --target "$boot" 'virtualenv==16.7.12'
fi

if [ -d "$venv" ]; then
    rm -rf "$venv"   # stale or half-built: start again
fi
PYTHONPATH="$boot" timeout 300 "$py27" -m virtualenv --quiet "$venv"
timeout 300 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-python-version-warning 'pip==20.3.4' 'setuptools==44.1.1' 'wheel==0.37.1'
timeout 1200 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-python-version-warning -r "$pins"

if ! wstest_works; then
    echo "wstest --help failed after the install" >&2
    exit 1
fi
cp "$pins" "$stamp"
echo "ready: $venv/bin/wstest"
