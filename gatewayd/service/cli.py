"""The ``gatewayd`` command line (a fixed contract, see DESIGN.md):

* ``gatewayd run [-c FILE] [--device DEV] [--dialect esp-at|ameba] [--baudrate N]``
* ``gatewayd check-config FILE``
* ``gatewayd plugins``
* ``gatewayd route -c FILE URL [--port NAME]`` (what the route rules make of a destination)
* ``gatewayd status [-c FILE] [--json]`` and ``gatewayd trace PORT [-c FILE] [--raw]``
  (through the control socket, see :mod:`gatewayd.service.control_server`)

Without ``-c`` the daemon runs on the built-in config: one ESP-AT port on
``pty:./ttyAT0`` in the current directory. ``--device`` (with ``--dialect``
and ``--baudrate``) describes one port that replaces the file's ports; other
settings still come from the file. A relative ``--device`` path resolves
against the current directory.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from pathlib import Path

from gatewayd import __version__
from gatewayd.config import (
    Config,
    ConfigError,
    PortConfig,
    Problem,
    default_config,
    load_config,
    resolve_device,
)
from gatewayd.logs import configure_logging, get_logger
from gatewayd.plugin.manager import PluginError, load_plugins
from gatewayd.service.checkconfig import check_config

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatewayd",
        description="Stand in for an ESP-AT or Ameba Wi-Fi module on a UART.")
    parser.add_argument("--version", action="version", version=f"gatewayd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("-c", "--config", type=Path, help="config file (TOML)")
    run.add_argument("--device", help="device path, socket://host:port, or pty:PATH; "
                     "replaces the config file's ports")
    run.add_argument("--dialect", help="dialect of the --device port (default esp-at)")
    run.add_argument("--baudrate", type=int, help="baud rate of the --device port")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                     help="overrides log.level")
    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file", type=Path)
    sub.add_parser("plugins", help="list registered dialects and transports")
    route = sub.add_parser("route", help="what the route rules make of a destination")
    route.add_argument("-c", "--config", type=Path, required=True, help="config file (TOML)")
    route.add_argument("url", help="scheme://host:port[/path], scheme ws, wss, tcp, tls or udp")
    route.add_argument("--port", dest="port_name", help="as seen from this port (its name)")
    status = sub.add_parser("status", help="ports and links of the running daemon")
    status.add_argument("-c", "--config", type=Path, help="config file (for control.socket)")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    trace = sub.add_parser("trace", help="stream a port's AT conversation live")
    trace.add_argument("port", help="port name")
    trace.add_argument("-c", "--config", type=Path, help="config file (for control.socket)")
    trace.add_argument("--raw", action="store_true",
                       help="the bytes unredacted, Wi-Fi passwords and Authorization "
                       "headers included (the daemon's user or root only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file)
    if args.command == "plugins":
        return _plugins()
    if args.command == "route":
        return _route(args.config, args.url, args.port_name)
    if args.command in ("status", "trace"):
        from gatewayd.service import control_client as ctl

        return ctl.main(args)
    return _run(args)


def _check_config(file: Path) -> int:
    errors, warnings = check_config(file)
    if not errors:
        errors = _unknown_dialects(file)
    for problem in warnings:
        print(f"warning: {problem}", file=sys.stderr)
    for problem in errors:
        print(problem, file=sys.stderr)
    if errors:
        return EXIT_CONFIG
    print(f"{file}: ok")
    return 0


def _unknown_dialects(file: Path) -> list[Problem]:
    """What only the plugins can check: dialects, ``[plugins] disable`` and
    the ``[plugin.<name>]`` tables."""
    config = load_config(file, need_ports=False)
    try:
        plugins = load_plugins(disable=config.plugins.disable)
    except PluginError as exc:
        return [Problem(str(file), "plugins", f"plugins failed to load: {exc}")]
    known = plugins.dialects
    return [
        Problem(str(file), f"port[{i}].dialect",
                f"no plugin provides dialect {port.dialect!r} (known: {', '.join(sorted(known))})")
        for i, port in enumerate(config.ports) if port.dialect not in known
    ] + [Problem(str(file), key, message) for key, message in plugins.configure(config.plugin)]


def _route(file: Path, url: str, port: str | None) -> int:
    """Print where a link to *url* would go and which rule decided."""
    from gatewayd.config.routes import parse_destination
    from gatewayd.links.egress import Router

    try:
        config = load_config(file, need_ports=False)
        destination = parse_destination(url)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    decision = Router(config.routes, config.egress).decide(destination, port)
    rule = "[egress] default" if decision.rule is None else f"[[route]] {decision.rule}" \
        f" (match = {config.routes[decision.rule].match!r})"
    if decision.actual is None:
        print(f"{destination} -> denied by {rule}")
        return 0
    via = f" via {decision.fields()['proxy']}" if decision.proxy else ""
    headers = "".join(f"\n  header {name}" + (" (from file)" if not isinstance(v, str) else "")
                      for name, v in decision.headers)
    print(f"{destination} -> {decision.actual}{via} ({rule}){headers}")
    return 0


def _plugins() -> int:
    try:
        plugins = load_plugins()
    except PluginError as exc:
        print(f"gatewayd: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    print("dialects:")
    for p in plugins.provided_dialects:
        print(f"  {p.name:<12} {p.summary}  [plugin {p.plugin} from {p.distribution}]")
    print("transports:")
    if not plugins.provided_transports:
        print("  (none)")
    for p in plugins.provided_transports:
        kinds = ",".join(k for k, t in sorted(plugins.transports.items()) if t.name == p.name)
        print(f"  {p.name:<12} {kinds:<10} {p.summary}  [plugin {p.plugin} from {p.distribution}]")
    return 0


def _load(args: argparse.Namespace) -> Config:
    if args.config:
        config = load_config(args.config, need_ports=args.device is None)
    else:
        config = default_config(os.getcwd())
    if args.device is not None:
        port = PortConfig(
            name="mcu",
            device=resolve_device(args.device, os.getcwd()),
            dialect=args.dialect or "esp-at",
            baudrate=args.baudrate or 115200,
        )
        config = dataclasses.replace(config, ports=(port,))
    return config


def _run(args: argparse.Namespace) -> int:
    if args.device is None and (args.dialect or args.baudrate):
        print("gatewayd: --dialect and --baudrate describe the --device port; "
              "give --device too", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = _load(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(args.log_level or config.log.level, config.log.format)
    log = get_logger()
    try:
        plugins = load_plugins(disable=config.plugins.disable)
    except PluginError as exc:
        log.error("plugins failed to load", error=str(exc))
        return EXIT_RUNTIME
    problems = plugins.configure(config.plugin)
    if problems:
        for key, message in problems:
            log.error("config problem", problem=f"{config.source or '(command line)'}: {key}: "
                                                f"{message}")
        return EXIT_CONFIG

    from gatewayd.service.daemon import Daemon
    from gatewayd.service.eventloop import EventLoopUnavailable, loop_factory

    daemon = Daemon(config, plugins, log, reload_source=args.config,
                    override_ports=config.ports if args.device is not None else None)
    try:
        factory = loop_factory(config.daemon.event_loop)
    except EventLoopUnavailable as exc:
        log.error("config problem", problem=f"{config.source or '(command line)'}: "
                                            f"daemon.event_loop: {exc}")
        return EXIT_CONFIG
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(daemon.run())
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("config problem", problem=str(problem))
        return EXIT_CONFIG
    except OSError as exc:
        log.error("cannot open port", error=str(exc))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 0
