"""Entry points read without importlib.metadata: the same answers as the
standard library gives, on this interpreter's own distributions and on
distributions built on disk, and what `gatewayd plugins` makes of them."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gatewayd.plugin.entrypoints import EntryPoint, entry_points


def stdlib_entry_points(group: str, path: list[str]) -> list[tuple[str, str, str]]:
    """importlib.metadata's answer for *path*: the first distribution of a name
    wins, as importlib.metadata.entry_points() decides on sys.path."""
    seen: set[str] = set()
    found = []
    for dist in importlib.metadata.distributions(path=path):
        key = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
        if key in seen:
            continue
        seen.add(key)
        found += [(ep.name, ep.value, f"{dist.metadata['Name']} {dist.version}")
                  for ep in dist.entry_points if ep.group == group]
    return found


def ours(group: str, path: list[str]) -> list[EntryPoint]:
    """gatewayd's answer (an EntryPoint is a named tuple: equal to its fields)."""
    return entry_points(group, path)


@pytest.mark.parametrize("group", ["gatewayd", "pytest11", "console_scripts"])
def test_this_interpreters_entry_points_are_the_standard_librarys(group: str) -> None:
    expected = stdlib_entry_points(group, sys.path)
    assert sorted(ours(group, sys.path)) == sorted(expected)
    if group == "gatewayd":
        assert ("dialects", "gatewayd.plugin.dialects", "gatewayd 0.1.0") in expected


def dist(root: Path, dirname: str, entry_points_txt: str, name: str, version: str) -> None:
    meta = root / dirname
    meta.mkdir(parents=True)
    headers = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nName: not a header\n"
    (meta / ("METADATA" if dirname.endswith(".dist-info") else "PKG-INFO")).write_text(headers)
    (meta / "entry_points.txt").write_text(entry_points_txt)


def test_distributions_on_disk_read_as_the_standard_library_reads_them(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    dist(first, "acme_modem-1.2.dist-info",
         "# a comment\n; another\n[console_scripts]\nacme = acme.cli:main\n\n"
         "[gatewayd]\nmodem = acme.plugin:PLUGIN [fast]\nplain=acme.other\n",
         "Acme-Modem", "1.2")
    # The same distribution again, later on the path: shadowed, contributes nothing.
    dist(second, "acme_modem-0.9.dist-info", "[gatewayd]\nold = acme.old:PLUGIN\n",
         "acme-modem", "0.9")
    dist(second, "legacy-3.0-py3.11.egg-info", "[gatewayd]\nlegacy = legacy_plugin\n",
         "legacy", "3.0")
    dist(second, "other-1.0.dist-info", "[gatewayd.extra]\nnot-ours = x:y\n", "other", "1.0")
    egg = tmp_path / "eggy-2.0-py3.11.egg"
    dist(egg, "EGG-INFO", "[gatewayd]\neggy = eggy.plugin\n", "eggy", "2.0")
    (tmp_path / "a-file.zip").write_bytes(b"PK not really")
    path = [str(first), str(tmp_path / "missing"), str(second), str(egg),
            str(tmp_path / "a-file.zip")]
    expected = [("modem", "acme.plugin:PLUGIN [fast]", "Acme-Modem 1.2"),
                ("plain", "acme.other", "Acme-Modem 1.2"),
                ("legacy", "legacy_plugin", "legacy 3.0"),
                ("eggy", "eggy.plugin", "eggy 2.0")]
    assert stdlib_entry_points("gatewayd", path) == expected
    assert ours("gatewayd", path) == expected


def test_load_imports_the_module_and_follows_the_attribute_path() -> None:
    assert EntryPoint("x", "os.path:join", "d 1").load() is os.path.join
    assert EntryPoint("x", "os.path", "d 1").load() is os.path
    assert EntryPoint("x", "os:path.join [extra]", "d 1").load() is os.path.join
    assert EntryPoint("x", "os.path [extra]", "d 1").load() is os.path


def install_plugin(site: Path, module: str, body: str) -> None:
    dist(site, f"{module}-1.0.dist-info", f"[gatewayd]\n{module} = {module}\n",
         module.replace("_", "-"), "1.0")
    (site / f"{module}.py").write_text(body)


def gatewayd_plugins(site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "gatewayd", "plugins"], capture_output=True,
                          text=True, timeout=60, env=env)


def test_a_plugin_on_the_path_is_listed_with_its_distribution(tmp_path: Path) -> None:
    install_plugin(tmp_path, "hayes_dialect", (
        "from gatewayd.plugin import hookimpl\n"
        "from gatewayd.dialects.base import LazyDialect\n"
        "@hookimpl\n"
        "def gatewayd_dialects():\n"
        "    return [LazyDialect('hayes', 'Hayes AT', 'hayes_dialect:NONE')]\n"))
    listed = gatewayd_plugins(tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^  hayes +Hayes AT  \[plugin hayes_dialect from hayes-dialect 1\.0\]$",
                     listed.stdout, re.M), listed.stdout


def test_a_plugin_that_fails_to_import_is_named_with_its_distribution(tmp_path: Path) -> None:
    install_plugin(tmp_path, "broken_plugin", "import no_such_module_here\n")
    listed = gatewayd_plugins(tmp_path)
    assert listed.returncode != 0
    assert ("cannot load plugin broken_plugin (from broken-plugin 1.0): ModuleNotFoundError("
            "\"No module named 'no_such_module_here'\"") in listed.stderr, listed.stderr


def test_a_plugin_pluggy_refuses_is_named_with_its_distribution(tmp_path: Path) -> None:
    install_plugin(tmp_path, "not_generator", (
        "from gatewayd.plugin import hookimpl\n"
        "@hookimpl(wrapper=True)\n"
        "def gatewayd_transports():\n"
        "    return []\n"))
    listed = gatewayd_plugins(tmp_path)
    assert listed.returncode != 0
    assert re.search(r"cannot load plugin not_generator \(from not-generator 1\.0\): .*"
                     r"gatewayd_transports.*not a generator function", listed.stderr,
                     re.S), listed.stderr
