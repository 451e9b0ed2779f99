"""What a port's module keeps in flash: settings that survive ``AT+RST`` and a
daemon restart (ESP-AT ``AT+UART_DEF``, for instance).

One small JSON file per port, ``<directory>/<port name>.json``, written
atomically (a temporary file renamed over the old one) with mode 0600. The
directory is ``[state] directory`` of the config, by default systemd's
``$STATE_DIRECTORY``; without one, settings live in memory: they survive
``AT+RST`` but not a daemon restart. A file that cannot be read or parsed is
logged and treated as empty (a factory-fresh module); at most
:data:`MAX_FILE_SIZE` bytes are read.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["MAX_FILE_SIZE", "PortStore"]

#: Larger files are not this program's and are ignored.
MAX_FILE_SIZE = 64 * 1024


class PortStore:
    """Key/value settings of one port; values are JSON-compatible."""

    def __init__(self, path: Path | None, log: Any) -> None:
        self.path = path
        self.log = log
        self._values: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            with self.path.open("rb") as file:
                raw = file.read(MAX_FILE_SIZE + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            self.log.warning("port settings unreadable", path=str(self.path), error=str(exc))
            return {}
        try:
            if len(raw) > MAX_FILE_SIZE:
                raise ValueError(f"larger than {MAX_FILE_SIZE} bytes")
            values = json.loads(raw)
            if not isinstance(values, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self.log.warning("port settings ignored", path=str(self.path), error=str(exc))
            return {}
        return values

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._values[key] = value
        self._save()

    def delete(self, key: str) -> None:
        """Forget *key* (nothing happens when it is not set)."""
        if key in self._values:
            del self._values[key]
            self._save()

    def clear(self) -> None:
        """Forget everything (``AT+RESTORE``)."""
        self._values.clear()
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                json.dump(self._values, file, sort_keys=True)
            tmp.replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            self.log.warning("port settings not saved", path=str(self.path), error=str(exc))
