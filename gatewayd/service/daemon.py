"""The daemon: every port's session, signals, and systemd notifications.

Start-up order: plugins are loaded, every port is opened (its pty symlink
appears), and only then ``READY=1`` is sent. SIGTERM/SIGINT close every port
and return 0. SIGHUP re-reads the config file: ports whose settings changed
are reopened, new ports open, removed ports close, unchanged ports (and their
links) stay up; a file that fails validation is logged and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import signal
from pathlib import Path
from typing import Any

from gatewayd.config import Config, ConfigError, PortConfig, Problem, load_config
from gatewayd.plugin.manager import Plugins
from gatewayd.service.control_server import ControlServer, control_socket_path
from gatewayd.service.systemd import Notifier
from gatewayd.session.port import PortSession

__all__ = ["Daemon", "release_startup_memory"]


def release_startup_memory() -> None:
    """Give back to the OS what start-up (config validation, plugin discovery)
    allocated and freed: a collection, then glibc's ``malloc_trim``. A few MB
    on a small board; a no-op where glibc is not the C library."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class Daemon:
    def __init__(self, config: Config, plugins: Plugins, log: Any,
                 *, reload_source: Path | None = None,
                 override_ports: tuple[PortConfig, ...] | None = None) -> None:
        self.config = config
        self.plugins = plugins
        self.log = log
        self.reload_source = reload_source
        self.override_ports = override_ports
        self.sessions: dict[str, PortSession] = {}
        self.notifier = Notifier()
        self.control: ControlServer | None = None
        self.metrics: Any = None
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._ready = False
        self._reloads: set[asyncio.Task[None]] = set()

    def _session(self, port: PortConfig) -> PortSession:
        dialect = self.plugins.dialects.get(port.dialect)
        if dialect is None:
            known = ", ".join(sorted(self.plugins.dialects)) or "none"
            raise ConfigError([Problem(str(self.config.source or "(command line)"),
                                       f"port.{port.name}.dialect",
                                       f"no plugin provides dialect {port.dialect!r} "
                                       f"(known: {known})")])
        session = PortSession(port, dialect, self.log, self.plugins, self.config.certs)
        session.on_links_changed = self._status_changed
        return session

    def _status_changed(self) -> None:
        if self._ready:
            self.notifier.status(self.status_line())

    def status_line(self) -> str:
        ports = ", ".join(f"{name} ({s.dialect.name})" for name, s in self.sessions.items())
        links = sum(len(s.dialect.links(s.state)) for s in self.sessions.values())
        return f"{len(self.sessions)} port(s) open: {ports}; {links} link(s)"

    async def start(self) -> None:
        for port in self._ports(self.config):
            session = self._session(port)
            try:
                await session.start()
            except BaseException:
                await session.stop()  # a half-opened port must not leak its pty or fds
                raise
            self.sessions[port.name] = session

    def _ports(self, config: Config) -> tuple[PortConfig, ...]:
        return self.override_ports if self.override_ports is not None else config.ports

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            await self.start()
            socket_path = control_socket_path(self.config)
            if socket_path is not None:
                self.control = ControlServer(self, socket_path, self.log)
                await self.control.start()
            if self.config.metrics.listen is not None:
                from gatewayd.service.metrics import MetricsServer

                host, _, port = self.config.metrics.listen.rpartition(":")
                self.metrics = MetricsServer(self, host.strip("[]"), int(port), self.log)
                await self.metrics.start()
        except BaseException:
            await self.stop()
            raise
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        release_startup_memory()
        self._ready = True
        self.notifier.ready(self.status_line())
        self.notifier.start_watchdog()
        self.log.info("gatewayd ready", status=self.status_line())
        await self._stop.wait()
        self.log.info("gatewayd stopping")
        self.notifier.stopping()
        await self.stop()
        return 0

    def request_stop(self) -> None:
        self._stop.set()

    async def stop(self) -> None:
        async with self._reload_lock:
            await self._stop_all()

    async def _stop_all(self) -> None:
        if self.metrics is not None:
            await self.metrics.close()
            self.metrics = None
        if self.control is not None:
            await self.control.close()
            self.control = None
        sessions, self.sessions = list(self.sessions.values()), {}
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)

    def _reload_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        """Re-read the config file (SIGHUP). Reloads run one at a time."""
        if self.reload_source is None:
            self.log.info("reload requested; running on the built-in config, nothing to re-read")
            return
        async with self._reload_lock:
            if self._stop.is_set():
                return
            self.notifier.reloading()
            try:
                await self._apply(self.reload_source)
            except Exception:
                self.log.exception("reload failed")
            finally:
                self.notifier.ready(self.status_line())

    async def _apply(self, source: Path) -> None:
        try:
            config = load_config(source)
        except ConfigError as exc:
            for problem in exc.problems:
                self.log.error("reload rejected", problem=str(problem))
            return
        wanted = {p.name: p for p in self._ports(config)}
        for name, session in list(self.sessions.items()):
            if wanted.get(name) != session.config:
                self.sessions.pop(name, None)
                await session.stop()
        for name, port in wanted.items():
            if name not in self.sessions:
                session = self._session(port)
                try:
                    await session.start()
                except Exception as exc:
                    self.log.error("port failed to open on reload", port=name, error=str(exc))
                    await session.stop()
                    continue
                self.sessions[name] = session
        self.config = config
        for session in self.sessions.values():
            session.certs = config.certs  # changed suites apply to new connections
        self.log.info("config reloaded", status=self.status_line())
