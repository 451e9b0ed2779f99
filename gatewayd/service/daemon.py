"""The daemon: every port's session, signals, and systemd notifications.

:meth:`Daemon.start` starts its services in order (see
:mod:`gatewayd.service.lifecycle`): the ports (each pty symlink appears),
then the control socket, then the metrics endpoint; :meth:`Daemon.stop`
stops them in reverse. :meth:`Daemon.run` adds what only the real process
needs: signal handlers (removed again on stop), ``READY=1`` once everything
started, the watchdog, and the descriptor reserve (:mod:`gatewayd.service.fds`).
SIGTERM/SIGINT close every port and return 0. SIGHUP re-reads the config
file: ports whose settings changed are reopened, new ports open, removed
ports close, unchanged ports (and their links) stay up; a file that fails
validation is logged and ignored.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatewayd.config import Config, ConfigError, PortConfig, Problem, load_config
from gatewayd.links.egress import Router
from gatewayd.plugin.manager import Plugins
from gatewayd.plugin.routerules import RouteRules
from gatewayd.service.control_server import ControlServer, control_socket_path
from gatewayd.service.eventloop import running_loop_name
from gatewayd.service.fds import FdReserve
from gatewayd.service.lifecycle import Service, Services
from gatewayd.service.metrics import MetricsServer
from gatewayd.service.systemd import Notifier
from gatewayd.session.port import PortSession
from gatewayd.transport.sockopts import release_freed_memory

__all__ = ["Daemon", "PortSet", "release_startup_memory"]


def release_startup_memory() -> None:
    """Give back to the OS what start-up (config validation, plugin discovery)
    allocated and freed; a few MB on a small board. Reference counting has
    freed it, so glibc's trim suffices: a full collection here found no
    cyclic garbage (five objects with two ports and routes), kept 0.3 MB of
    free lists less, and cost 8-13 ms of the time to READY."""
    release_freed_memory(collect=False)


class PortSet:
    """Service: the sessions of every configured port. Start-up and reload
    open a port the same way (:meth:`open`)."""

    def __init__(self, ports: tuple[PortConfig, ...],
                 make_session: Callable[[PortConfig], PortSession], log: Any) -> None:
        self.ports = ports
        self.make_session = make_session
        self.log = log
        self.sessions: dict[str, PortSession] = {}

    async def open(self, port: PortConfig) -> PortSession:
        session = self.make_session(port)
        try:
            await session.start()
        except BaseException:
            await session.stop()  # a half-opened port must not leak its pty or fds
            raise
        self.sessions[port.name] = session
        return session

    async def start(self) -> None:
        for port in self.ports:
            await self.open(port)

    async def apply(self, ports: tuple[PortConfig, ...]) -> None:
        """Reload: close ports that changed or went, open new ones; unchanged
        ports (and their links) stay up. A port that fails to open is logged."""
        self.ports = ports
        wanted = {p.name: p for p in ports}
        for name, session in list(self.sessions.items()):
            if wanted.get(name) != session.config:
                self.sessions.pop(name, None)
                await session.stop()
        for name, port in wanted.items():
            if name not in self.sessions:
                try:
                    await self.open(port)
                except Exception as exc:
                    self.log.error("port failed to open on reload", port=name, error=str(exc))

    async def stop(self) -> None:
        sessions = list(self.sessions.values())
        self.sessions.clear()
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)


class Daemon:
    def __init__(self, config: Config, plugins: Plugins, log: Any,
                 *, reload_source: Path | None = None,
                 override_ports: tuple[PortConfig, ...] | None = None) -> None:
        self.config = config
        self.plugins = plugins
        self.log = log
        self.router = Router(config.routes, config.egress)
        #: The [[route]] rules, as the last gatewayd_route_link implementation.
        self.route_rules = RouteRules(self.router)
        plugins.manager.register(self.route_rules, name=f"gatewayd-route-rules-{id(self)}")
        self.reload_source = reload_source
        self.override_ports = override_ports
        self.ports = PortSet(self._ports(config), self._session, log)
        self.sessions = self.ports.sessions  # what status, trace and metrics read
        self.notifier = Notifier()
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        self._services = Services(log)
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._ready = False
        self._reloads: set[asyncio.Task[None]] = set()
        self._signals: list[signal.Signals] = []

    def _session(self, port: PortConfig) -> PortSession:
        dialect = self.plugins.dialects.get(port.dialect)
        if dialect is None:
            known = ", ".join(sorted(self.plugins.dialects)) or "none"
            raise ConfigError([Problem(str(self.config.source or "(command line)"),
                                       f"port.{port.name}.dialect",
                                       f"no plugin provides dialect {port.dialect!r} "
                                       f"(known: {known})")])
        session = PortSession(port, dialect, self.log, self.plugins, self.config.certs,
                              router=self.router)
        session.on_links_changed = self._status_changed
        return session

    def _status_changed(self) -> None:
        if self._ready:
            self.notifier.status(self.status_line())

    def status_line(self) -> str:
        ports = ", ".join(f"{name} ({s.dialect.name})" for name, s in self.sessions.items())
        links = sum(len(s.dialect.links(s.state)) for s in self.sessions.values())
        return f"{len(self.sessions)} port(s) open: {ports}; {links} link(s)"

    def _ports(self, config: Config) -> tuple[PortConfig, ...]:
        return self.override_ports if self.override_ports is not None else config.ports

    def _build_services(self) -> list[Service]:
        """What :meth:`start` starts, in order: ports, control socket, metrics."""
        services: list[Service] = [self.ports]
        socket_path = control_socket_path(self.config)
        if socket_path is not None:
            self.control = ControlServer(self, socket_path, self.log)
            services.append(self.control)
        metrics_address = self.config.metrics.address
        if metrics_address is not None:
            self.metrics = MetricsServer(self, *metrics_address, self.log)
            services.append(self.metrics)
        return services

    async def start(self) -> None:
        """Start every service; on failure, stop what started and raise."""
        self._stop.clear()
        await self._services.start(*self._build_services())

    async def stop(self) -> None:
        """Stop every service, last started first; remove the signal handlers.
        Waits for a reload in progress; a reload requested later does nothing."""
        self._stop.set()
        self._remove_signal_handlers()
        async with self._reload_lock:
            await self._services.stop()
            self.control = self.metrics = None

    async def run(self) -> int:
        fds = FdReserve(self.log)  # before anything can exhaust them
        fds.install(asyncio.get_running_loop())
        await self.start()
        try:
            if self.control is not None and self.control.socket is not None:
                fds.keep(self.control.socket, self.control.serve_accepted)
            self._add_signal_handlers()
            release_startup_memory()
            self._ready = True
            self.notifier.ready(self.status_line())
            self.notifier.start_watchdog()
            self.log.info("gatewayd ready", status=self.status_line(),
                          event_loop=running_loop_name())
            # Import every transport's implementation now, after READY (the MCU
            # has its banner): a daemon short of descriptors later needs none
            # to import one.
            self.plugins.preload()
            await self._stop.wait()
            self.log.info("gatewayd stopping")
            self.notifier.stopping()
        finally:
            await self.stop()
            fds.close()
        return 0

    def _add_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
            self._signals.append(sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        self._signals.append(signal.SIGHUP)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        while self._signals:
            loop.remove_signal_handler(self._signals.pop())

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
            config = load_config(source, need_ports=self.override_ports is None)
        except ConfigError as exc:
            for problem in exc.problems:
                self.log.error("reload rejected", problem=str(problem))
            return
        plugin_problems = self.plugins.configure(config.plugin)
        if plugin_problems:
            for key, message in plugin_problems:
                self.log.error("reload rejected", problem=f"{source}: {key}: {message}")
            return
        self.router = self.route_rules.router = Router(config.routes, config.egress)
        await self.ports.apply(self._ports(config))
        self.config = config
        for session in self.sessions.values():
            # Changed suites and rules apply to new connections.
            session.certs = config.certs
            session.router = self.router
        self.log.info("config reloaded", status=self.status_line())
