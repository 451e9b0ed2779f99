"""The entry points of one group, read from the installed distributions'
metadata directories without importing :mod:`importlib.metadata`.

Importing :mod:`importlib.metadata` (which brings in ``email``, ``zipfile``,
``csv`` and ``importlib.resources``) costs 10-11 ms on a desktop core, about
8 % of gatewayd's time to ``READY=1``, and ten times that on a Pi Zero-class
board, for a lookup that reads a handful of small text files. This reads the
same files the same way:

* every ``*.dist-info`` and ``*.egg-info`` directory directly in each
  directory of :data:`sys.path` (``""`` is the current directory), and the
  ``EGG-INFO`` of an unzipped ``*.egg`` directory on it, in :data:`sys.path`
  order;
* the first distribution of a name wins, names compared as PEP 503
  normalises them, as :func:`importlib.metadata.entry_points` does: a copy
  shadowed by an earlier ``sys.path`` entry contributes nothing;
* ``entry_points.txt`` in the INI form of the entry-points specification
  (``[group]`` headers, ``name = module:attr [extras]`` lines, ``#`` and
  ``;`` comments); extras are ignored, as they are by
  :meth:`importlib.metadata.EntryPoint.load`;
* a distribution's display name and version come from the ``Name:`` and
  ``Version:`` headers of its ``METADATA`` (``PKG-INFO`` for an egg-info),
  read only for distributions that have an entry point in the group.

Limits: distributions inside zip files (zipped eggs, zipapps) and custom
:data:`sys.meta_path` finders are not seen; gatewayd is installed as files.
An unreadable or undecodable metadata file is skipped, as if absent.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["EntryPoint", "entry_points"]

_METADATA_DIR = (".dist-info", ".egg-info")
_NORMALISE = re.compile(r"[-_.]+")


class EntryPoint(NamedTuple):
    """One entry point: ``value`` is ``module`` or ``module:attr.attr``;
    ``distribution`` reads ``"name version"``."""

    name: str
    value: str
    distribution: str

    def load(self) -> object:
        """Import the module and look up the attribute path, as
        :meth:`importlib.metadata.EntryPoint.load` does."""
        module_name, _, attrs = self.value.split("[", 1)[0].partition(":")
        target: object = importlib.import_module(module_name.strip())
        for attr in filter(None, attrs.strip().split(".")):
            target = getattr(target, attr)
        return target


def entry_points(group: str, path: Iterable[str] | None = None) -> list[EntryPoint]:
    """The entry points of *group* in the distributions on *path* (default
    :data:`sys.path`), in path order, then in each file's order."""
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for entry in sys.path if path is None else path:
        for directory, dist_name in _metadata_dirs(entry or "."):
            key = _NORMALISE.sub("_", dist_name).lower()
            if key in seen:
                continue
            seen.add(key)
            pairs = _group(_read(os.path.join(directory, "entry_points.txt")), group)
            if pairs:
                distribution = _distribution(directory, dist_name)
                found += [EntryPoint(name, value, distribution) for name, value in pairs]
    return found


def _metadata_dirs(entry: str) -> list[tuple[str, str]]:
    """The metadata directories in *entry*, with the distribution name their
    directory name gives, sorted by directory name (a stable order); for an
    unzipped egg on the path (``name-1.0-py3.11.egg/``), its ``EGG-INFO``."""
    try:
        names = sorted(os.listdir(entry))
    except OSError:  # missing, not a directory, a zip file, unreadable
        return []
    found = [(os.path.join(entry, name), _dist_name(name))
             for name in names if name.lower().endswith(_METADATA_DIR)]
    if entry.lower().endswith(".egg"):
        found += [(os.path.join(entry, name), _dist_name(os.path.basename(entry)))
                  for name in names if name.lower() == "egg-info"]
    return found


def _dist_name(name: str) -> str:
    """``acme_modem`` of ``acme_modem-1.2.dist-info`` or ``acme_modem-1.2-py3.11.egg``."""
    return name.rsplit(".", 1)[0].partition("-")[0]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _group(text: str, group: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of one ``[group]`` section."""
    pairs: list[tuple[str, str]] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == group:
            name, equals, value = line.partition("=")
            if equals and name.strip():
                pairs.append((name.strip(), value.strip()))
    return pairs


def _distribution(directory: str, fallback: str) -> str:
    """``"Name Version"`` from the distribution's metadata headers."""
    metadata = "METADATA" if directory.lower().endswith(".dist-info") else "PKG-INFO"
    headers: dict[str, str] = {}
    for line in _read(os.path.join(directory, metadata)).splitlines():
        if not line:
            break  # the headers end at the first blank line
        key, colon, value = line.partition(":")
        if colon and key in ("Name", "Version"):
            headers.setdefault(key, value.strip())
    return f"{headers.get('Name', fallback)} {headers.get('Version', '(unknown version)')}"
