"""tools/system-deps.sh, which `make test` runs first: on a machine that lacks
a tool the suite drives, a user who cannot install it gets one line naming the
exact command, and the run stops before any test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "system-deps.sh"


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder the unprivileged user can read (pytest's tmp_path is private)."""
    folder = Path(tempfile.mkdtemp(prefix="gatewayd-deps-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def path_without(folder: Path, *hidden: str) -> str:
    """A PATH holding every tool of this machine but *hidden*."""
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = folder / name
            if name not in hidden and not target.exists():
                target.symlink_to(os.path.join(directory, name))
    return str(folder)


def run_as_nobody(path: str) -> subprocess.CompletedProcess[str]:
    """The script as an unprivileged user, who cannot install anything."""
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "bash", str(SCRIPT)],
        # Debian's own python3: root's pyenv and .venv are not readable by nobody.
        env={"PATH": path, "PYTHON": "/usr/bin/python3"}, capture_output=True, text=True,
        timeout=60, check=False)


def test_nothing_missing_passes(public_dir):
    result = run_as_nobody(path_without(public_dir))
    assert (result.returncode, result.stderr) == (0, "")


def test_missing_tools_are_named_with_the_install_command(public_dir):
    result = run_as_nobody(path_without(public_dir, "socat", "lintian"))
    assert result.returncode == 1
    assert result.stderr == (
        "system-deps: the test suite needs socat lintian: run `apt-get install -y"
        " --no-install-recommends socat lintian` as root, then make test again\n")
