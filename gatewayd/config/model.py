"""The configuration file: TOML into typed, frozen dataclasses.

`load_config` reads one TOML file (stdlib `tomllib`) and returns a `Config` or raises
`ConfigError` listing every problem as `file: key.path: message`. Unknown keys are errors.
Relative paths (certificate files, device paths, `pty:PATH`) resolve against the config
file's folder at load time, so a loaded `Config` holds absolute paths only; models built
in Python resolve against the current directory. `socket://` and other pyserial URLs are
kept as written. Values keep their TOML types: `baudrate = "115200"` is an error, not 115200.

Checks that need more than the models (loading certificate suites) live in
`gatewayd.service.checkconfig`; docs/config.md is rendered from the models by
`gatewayd.config.reference` (`python -m gatewayd.config --reference`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from gatewayd.config.routes import check_change, parse_pattern, parse_target
from gatewayd.config.schema import Context, Invalid, Location, Section, parse, setting

__all__ = [
    "CertSuite",
    "CertsConfig",
    "Config",
    "ConfigError",
    "ControlConfig",
    "DaemonConfig",
    "EgressConfig",
    "HeaderFile",
    "LogConfig",
    "MetricsConfig",
    "PluginsConfig",
    "PortConfig",
    "Problem",
    "RouteConfig",
    "UartSettings",
    "default_config",
    "load_config",
    "resolve_device",
    "resolve_path",
    "split_host_port",
]

PTY_PREFIX = "pty:"
#: Ameba command groups a port can leave out, as the firmware's build options
#: (Kconfig) do; dns, mdns and sntp are options of network there.
AmebaCommandGroup = Literal["socket", "websocket", "network", "dns", "mdns", "sntp"]
AMEBA_COMMAND_GROUPS: tuple[AmebaCommandGroup, ...] = (
    "socket", "websocket", "network", "dns", "mdns", "sntp")
_NETWORK_OPTIONS = ("dns", "mdns", "sntp")
#: Ameba firmware generations a port can answer as (shared/reference/
#: ameba-wifi-network.md §0): ATCMD 2.x (2.x-a and 2.x-b are byte-identical
#: here) or the earlier Gen-1 ("ATCMD v1", SDK v1.0 of 2024).
AmebaGeneration = Literal["2.x", "gen1"]


def resolve_path(path: str | os.PathLike[str], base: str | os.PathLike[str]) -> Path:
    """`path` made absolute against `base`, normalised but with symlinks kept."""
    return Path(os.path.normpath(os.path.join(os.path.abspath(base), path)))


def resolve_device(device: str, base: str | os.PathLike[str]) -> str:
    """A `device` string with its path made absolute against `base`.

    `pty:PATH` and plain device paths resolve; `socket://…` and other pyserial URLs
    (anything containing `://`) are returned unchanged.
    """
    if "://" in device:
        return device
    if device.startswith(PTY_PREFIX):
        return PTY_PREFIX + str(resolve_path(device.removeprefix(PTY_PREFIX), base))
    return str(resolve_path(device, base))


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
_INTERFACE = re.compile(r"[^\s/:%]{1,15}")


def split_host_port(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into (host, port); ValueError says what is wrong.

    The host is an IPv4 address, a bracketed IPv6 address or a DNS name; the
    port is 0..65535 (0: any free port, for a listener that logs where it is).
    """
    host, colon, port_text = value.rpartition(":")
    if not colon or not host:
        raise ValueError(f"{value!r} should be host:port (127.0.0.1:9464, [::1]:9464)")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} of {value!r} is not in 0..65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host} is not an IPv6 address") from None
        return host[1:-1], int(port_text)
    if ":" in host:
        raise ValueError(f"IPv6 address {host!r} needs brackets: [{host}]:{port_text}")
    if host.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv4 address") from None
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or address")
    return host, int(port_text)


def _check_bind(value: str) -> str:
    """An IP address (IPv6 with an optional %zone) or an interface name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if "%" in value or ":" in value or value.replace(".", "").isdigit():
            raise ValueError(f"{value!r} is not an IP address") from None
        if not _INTERFACE.fullmatch(value):
            raise ValueError(f"{value!r} is neither an IP address nor an interface name"
                             " (at most 15 characters, no spaces, '/', ':' or '%')") from None
    return value


_SUITE_INDEX = re.compile(r"0|[1-9][0-9]*")


def _suite_index(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _SUITE_INDEX.fullmatch(value):
        return int(value)
    raise ValueError(
        f"certificate suite index must be a non-negative integer (0, 1, 2, …), got {value!r}"
    )


def _file(path: Path, context: Context) -> Path:
    """`path` resolved; when files are checked, it must be an existing regular file."""
    path = resolve_path(path, context.base)
    if context.check_files:
        if not path.exists():
            raise ValueError(f"file not found: {path}")
        if not path.is_file():
            raise ValueError(f"not a regular file: {path}")
    return path


def _resolved(path: Path, context: Context) -> Path:
    return resolve_path(path, context.base)


def _command_groups(groups: tuple[str, ...], _context: Context) -> tuple[str, ...]:
    needs_network = [g for g in groups if g in _NETWORK_OPTIONS]
    if needs_network and "network" not in groups:
        raise ValueError(f"{', '.join(needs_network)} need `network` (options of it)")
    return groups


def _networks(networks: tuple[str, ...], _context: Context) -> tuple[str, ...]:
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"{network!r} is not an IP network (192.168.1.0/24)") from None
    return networks


def _device(device: str, context: Context) -> str:
    if device.startswith(PTY_PREFIX) and not device.removeprefix(PTY_PREFIX):
        raise ValueError("pty: needs a path, e.g. pty:/run/gatewayd/ttyAT0")
    if device.startswith("socket://"):
        try:
            url = urlsplit(device)
            port = url.port
        except ValueError:
            port = None
        if not url.hostname or port is None or port == 0:
            raise ValueError(f"{device!r} should be socket://host:port")
    return resolve_device(device, context.base)


def _listen(listen: str, _context: Context) -> str:
    split_host_port(listen)
    return listen


def _proxy(proxy: str, _context: Context) -> str:
    return check_proxy(proxy)


def _bind(bind: str, _context: Context) -> str:
    return _check_bind(bind)


@dataclass(frozen=True, kw_only=True, slots=True)
class WifiNetwork(Section):
    """Ameba: a network AT+WLCONN may join (`wifi_networks`)."""

    ssid: str = setting(
        min_length=1, max_length=32, description="The SSID, as the MCU sends it.")
    password: str | None = setting(
        default=None, description="Its password; absent: an open network (no `pw` in AT+WLCONN).")
    bssid: str | None = setting(
        default=None, pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$",
        description="BSSID that AT+WLSTATE/AT+WLSCAN report (and that a `bssid` join must name).")
    channel: int = setting(default=6, ge=1, le=165, description="Channel reported.")
    rssi: int = setting(default=-45, ge=-100, le=0,
                            description="Signal strength (dBm) AT+WLSCAN reports.")
    mode: Literal["B", "G", "N", "AC", "AX"] = setting(
        default="N", description="802.11 mode AT+WLSCAN reports.")
    security: str | None = setting(
        default=None, max_length=32, description=(
            "Security AT+WLSCAN reports (`WPA/WPA2 AES`, …). Default: `Open` without a"
            " password, else `WPA2 AES`."))


@dataclass(frozen=True, kw_only=True, slots=True)
class PortConfig(Section):
    """One UART wired to an MCU: one `[[port]]` table each, at least one.

    Names and devices must be unique across ports.
    """

    name: str = setting(
        min_length=1, description="Name of the port in logs and status; unique across ports."
    )
    device: str = setting(
        min_length=1, check=_device,
        description=(
            "Device path (`/dev/serial0`), pyserial URL (`socket://host:port`), or `pty:PATH`"
            " (gatewayd creates a pseudo-terminal and a symlink at PATH)."
        ),
    )
    baudrate: int = setting(default=115200, gt=0, description="Line speed in bit/s.")
    bytesize: Literal[5, 6, 7, 8] = setting(default=8, description="Data bits per character.")
    parity: Literal["N", "E", "O", "M", "S"] = setting(
        default="N", description="Parity: none, even, odd, mark or space."
    )
    # mypy allows no float in a Literal; the schema checks it as written.
    stopbits: Literal[1, 1.5, 2] = setting(  # type: ignore[valid-type]
        default=1, description="Stop bits."
    )
    rtscts: bool = setting(default=False, description="RTS/CTS hardware flow control.")
    dialect: str = setting(
        default="esp-at",
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description=(
            "AT command set the MCU expects: `esp-at` or `ameba` (built in), or a dialect"
            " a plugin registers (`gatewayd plugins` lists them)."
        ),
    )

    boot_time: float | None = setting(
        default=None, ge=0, le=10,
        description=(
            "Seconds the port stays silent after `AT+RST`/`AT+RESTORE` (after their OK) and at"
            " start-up before the banner (`ready`, `ATCMD READY`), as a rebooting module does;"
            " bytes the MCU sends meanwhile are dropped. Hosts that flush their receive buffer"
            " after the OK rely on it. Default: the dialect's (esp-at 0.3, ameba 0); 0 sends"
            " the banner at once."
        ),
    )

    trust_any_server_cert: bool = setting(
        default=False,
        description=(
            "Accept any TLS server certificate where the module would not verify it (ESP-AT"
            " auth_mode 0/1, Ameba conn_type 2), as the firmware does. Default: verify against"
            " the system trust store."
        ),
    )
    ws_reconnect_interval: float = setting(
        default=10.0, gt=0, le=3600,
        description="ESP-AT: seconds between reconnect attempts of a dropped WebSocket link.",
    )
    ameba_ws_data_opcode: bool = setting(
        default=False,
        description=(
            "Ameba: report WebSocket data as `[$][WS][DATA][<id>][<opcode>][<len>]:` (newer"
            " firmware) instead of the documented `[$][WS][DATA][<id>][<len>]:`."
        ),
    )
    ipd_trailing_crlf: bool = setting(
        default=True,
        description=(
            "ESP-AT: end each active-mode `+IPD` message with CRLF after the data, as the"
            " firmware's code does (`at_construct_tail`); `false` ends it with the data, as"
            " the documents draw it."
        ),
    )
    wifi_interface: str | None = setting(
        default=None,
        description=(
            "ESP-AT: host interface whose address AT+CWJAP/AT+CIFSR/AT+CIPSTA? report;"
            " default: the interface of the default route."
        ),
    )
    wifi_ssid: str | None = setting(
        default=None,
        description=(
            "SSID reported by AT+CWJAP? (ESP-AT); default: the SSID the MCU asked to join."
        ),
    )

    server_bind: str | None = setting(
        default=None,
        min_length=1, check=_bind,
        description=(
            "Where the MCU's servers (ESP-AT AT+CIPSERVER; Ameba AT+SKTSERVER, AT+WSSRVSTART)"
            " listen: an IP"
            " address (`192.168.1.20`, `::1`) or a host interface name (`eth0`: its IPv4"
            " address when the server starts). Default: every interface, as the module."
        ),
    )
    server_allow: tuple[str, ...] = setting(
        default=(), check=_networks,
        description=(
            "Client networks allowed to reach the MCU's servers (`192.168.1.0/24`,"
            " `fd00::/8`, a single address). Others are turned away before the MCU hears of"
            " them: TCP/TLS connections closed, UDP datagrams dropped and counted, WebSocket"
            " upgrades answered 403. Default: every peer."
        ),
    )
    wssrv_token: str | None = setting(
        default=None,
        min_length=16,
        description=(
            "Ameba WebSocket server: clients must send `Authorization: Bearer <token>` or"
            " `?token=<token>` in the upgrade request, or get 401 and never reach the MCU."
            " At least 16 characters. Default: no token."
        ),
    )
    wssrv_require_client_cert: bool = setting(
        default=False,
        description=(
            "Ameba WebSocket server: demand a client certificate signed by the `ca` of the"
            " server suite the MCU names, whatever its conn_type (2 behaves as 3); a plain"
            " `ws` server (conn_type 1) then fails to start with `ERROR: 6`. Default: as the"
            " MCU asks."
        ),
    )
    wifi_networks: tuple[WifiNetwork, ...] = setting(
        default=(),
        description=(
            "Ameba: the networks AT+WLCONN may join, e.g. `[{ssid = \"MyWiFi\", password ="
            " \"password123\"}]`; a join with another SSID or a wrong password fails as on the"
            " module (`[$]wifi connect failed`, `ERROR: 17`). Default: any SSID and password"
            " join while the host has a default route. Each entry: `ssid`, `password` (absent:"
            " an open network, joined without `pw`), and optionally the `bssid` and `channel`"
            " AT+WLSTATE and AT+WLSCAN report."
        ),
    )
    wifi_mac: str | None = setting(
        default=None, pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$",
        description=(
            "Ameba: the station MAC AT+WLSTATE reports. Default: a Realtek address"
            " (`00:e0:4c:…`) derived from the port name, stable across restarts."
        ),
    )
    ameba_command_groups: tuple[AmebaCommandGroup, ...] = setting(
        default=AMEBA_COMMAND_GROUPS, check=_command_groups,
        description=(
            "Ameba: the command groups the module is built with, as the firmware's build"
            " options: `socket` (AT+SKT…), `websocket` (AT+WS… and AT+WSSRV…), `network`"
            " (AT+PING, AT+IPERF, AT+IPERF3), and under `network` `dns` (AT+DNS or Gen-1's"
            " AT+IPDOMAIN, AT+QUERYDNSSRV, AT+SETDNSSRV), `mdns` (AT+MDNS), `sntp` (AT+SNTPCFG,"
            " AT+SNTPQUERY, AT+SNTPTIME). A command of a group left out behaves as an"
            " unknown command (no answer) and AT+LIST omits it. The system and Wi-Fi"
            " commands are always built in. Default: every group."
        ),
    )
    ameba_generation: AmebaGeneration = setting(
        default="2.x",
        description=(
            "Ameba: the firmware generation whose reply forms the port writes. `2.x` (ATCMD"
            " 2.x: `OK`, `ERROR: <n>`, `[$]` event messages) or `gen1`, a compatibility"
            " profile for an MCU written against the Gen-1 firmware (SDK v1.0, 2024): the"
            " Wi-Fi, network and system commands end in `+<CMD>:OK` / `+<CMD>:ERROR:<n>`"
            " (AT+WLCONN with Gen-1's error numbers), AT+IPDOMAIN replaces AT+DNS, and the"
            " Wi-Fi and ping `[$]` event messages are not sent (see docs/commands.md)."
        ),
    )
    ameba_ping_results: bool = setting(
        default=False,
        description=(
            "Ameba: AT+PING reports each echo on the AT port as `[$][ping_test] …` lines (the"
            " documented form) instead of only the log (the firmware's)."
        ),
    )

    @property
    def line(self) -> UartSettings:
        """The line settings this port starts with."""
        return UartSettings(baudrate=self.baudrate, bytesize=self.bytesize,
                            parity=self.parity, stopbits=self.stopbits, rtscts=self.rtscts)

    @property
    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """:attr:`server_allow` parsed."""
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.server_allow)


@dataclass(frozen=True, slots=True)
class UartSettings:
    """A UART's line settings, as `[[port]]` gives them and AT+UART commands
    change them. A ``pty:`` device carries them in the MCU end's termios
    (where the MCU side can read them back); ``socket://`` ignores them."""

    baudrate: int = 115200
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class CertSuite(Section):
    """A certificate suite: CA to verify the peer, and the certificate and key to present.

    Any of the three may be given, but a key needs a cert; cert may hold the key too.
    """

    ca: Path | None = setting(
        default=None, check=_file,
        description="PEM file of the CA certificate(s) that verify the peer."
    )
    cert: Path | None = setting(
        default=None, check=_file,
        description="PEM file of the certificate (chain) presented to the peer.",
    )
    key: Path | None = setting(
        default=None, check=_file,
        description="PEM file of the unencrypted private key of `cert`."
    )

    def _check(self) -> None:
        if self.ca is None and self.cert is None and self.key is None:
            raise ValueError("a certificate suite needs at least one of ca, cert, key")
        if self.key is not None and self.cert is None:
            raise ValueError("key is set but cert is not")

    def files(self) -> dict[str, Path]:
        """The files that are set, by field name."""
        files = {"ca": self.ca, "cert": self.cert, "key": self.key}
        return {field: path for field, path in files.items() if path is not None}


@dataclass(frozen=True, kw_only=True, slots=True)
class CertsConfig(Section):
    """Certificate suites by index, for client links and for servers."""

    client: dict[int, CertSuite] = setting(
        factory=dict, key=_suite_index, description="Suites for client links: `[certs.client.N]`."
    )
    server: dict[int, CertSuite] = setting(
        factory=dict, key=_suite_index, description="Suites for servers: `[certs.server.N]`."
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class LogConfig(Section):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = setting(
        default="info", description="Least severe level that is logged."
    )
    format: Literal["auto", "console", "json"] = setting(
        default="auto",
        description="`console` for people, `json` for machines; `auto` is console on a terminal.",
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class DaemonConfig(Section):
    """The daemon process itself. Read when it starts; a reload keeps these."""

    event_loop: Literal["auto", "asyncio", "uvloop"] = setting(
        default="auto", description=(
            "Event loop: `uvloop` (C, about a third less CPU per message; installed with "
            "`gatewayd[uvloop]`, refused at start when missing), `asyncio` (the standard "
            "library's), or `auto`: uvloop when installed, else asyncio."))


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlConfig(Section):
    """The control socket that `gatewayd status` and `gatewayd trace` talk to.

    Unset, it is `$RUNTIME_DIRECTORY/gatewayd.sock` under systemd (the unit's
    `RuntimeDirectory=gatewayd` makes that `/run/gatewayd/gatewayd.sock`), and
    off otherwise. Only the daemon's user and group may connect (mode 0660,
    from the moment the socket exists). `gatewayd trace` redacts secrets;
    `gatewayd trace --raw` is for the daemon's user and root only.
    """

    socket: Path | None = setting(
        default=None, check=_resolved,
        description="Path of the unix control socket (see above for the default)."
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class MetricsConfig(Section):
    """The optional Prometheus endpoint, `GET /metrics` (off unless `listen` is set).

    Per-port and per-link byte counters, command counts, UART and link state;
    see `gatewayd/service/metrics.py`. Bind it to a loopback address unless a firewall
    guards the port: the figures name the MCU's peers.
    """

    listen: str | None = setting(
        default=None, check=_listen,
        description=(
            "`host:port` to serve metrics on, e.g. `127.0.0.1:9464` or `[::1]:9464`"
            " (port 0..65535; 0 picks a free port, which the log names); unset: off."
        ),
    )

    @property
    def address(self) -> tuple[str, int] | None:
        """:attr:`listen` as (host, port), brackets removed; None when off."""
        return None if self.listen is None else split_host_port(self.listen)


_PROXY_SCHEMES = ("http", "socks4", "socks5")


def check_proxy(url: str) -> str:
    """A proxy URL: ``http://``, ``socks4://`` or ``socks5://``, a host and a
    port (``user:password@`` allowed); ``""`` means none."""
    if url == "":
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"proxy {url!r}: {exc}") from None
    if parts.scheme not in _PROXY_SCHEMES or not parts.hostname or port is None:
        raise ValueError(f"proxy {url!r} is not http://, socks4:// or socks5://host:port")
    if parts.path not in ("", "/"):
        raise ValueError(f"proxy {url!r} has a path")
    return url


@dataclass(frozen=True, kw_only=True, slots=True)
class HeaderFile(Section):
    """A header value read from a file at every connect (a token that rotates)."""

    file: Path = setting(check=_file, description=(
        "File whose content (without a final newline) is the value."))


@dataclass(frozen=True, kw_only=True, slots=True)
class RouteConfig(Section):
    """One `[[route]]` rule; the first rule that matches a link decides."""

    match: str = setting(description=(
        "Destinations this rule applies to: `scheme://host[:port][/path]`, scheme `ws`, `wss`,"
        " `tcp`, `tls` or `udp`; `*` matches any run of characters in the host and the path;"
        " without a port every port, without a path every path."))
    to: str | None = setting(default=None, description=(
        "Where matching links go instead: new scheme, host, and optionally port and path"
        " (`ws`→`wss` and `tcp`→`tls` upgrade the link; with `/*` in match and a trailing `/`"
        " here, the matched rest of the path is appended). Default: unchanged."))
    deny: bool = setting(default=False, description=(
        "Refuse matching links (the dialect's connect-failure answer)."))
    headers: dict[str, str | HeaderFile] = setting(factory=dict, description=(
        "ws/wss only: request headers added (replacing the MCU's of the same name), a value"
        " or `{ file = \"path\" }` read at every connect."))
    proxy: str | None = setting(default=None, check=_proxy, description=(
        "HTTP CONNECT (`http://host:port`) or SOCKS (`socks5://`, `socks4://`) proxy for"
        " matching links; `\"\"` opts out of `[egress] proxy`. Default: `[egress] proxy`."))
    ca: Path | None = setting(default=None, check=_file, description=(
        "PEM CA file that verifies an upgraded link instead of the system trust store."))
    ports: tuple[str, ...] = setting(default=(), description=(
        "Names of the ports this rule applies to. Default: every port."))

    def _check(self) -> None:
        match = parse_pattern(self.match)
        if self.deny and (self.to or self.headers or self.proxy or self.ca):
            raise ValueError("a deny rule takes no to, headers, proxy or ca")
        scheme = match.scheme
        if self.to is not None:
            target = parse_target(self.to)
            check_change(match, target)
            scheme = target.scheme
        if self.headers and scheme not in ("ws", "wss"):
            raise ValueError("headers are for ws and wss links only")
        if self.ca is not None and scheme not in ("wss", "tls"):
            raise ValueError("ca is for links that end as wss or tls")
        if self.proxy and scheme == "udp":
            raise ValueError("UDP links cannot go through a proxy")


@dataclass(frozen=True, kw_only=True, slots=True)
class EgressConfig(Section):
    """What happens to links no `[[route]]` rule matches, and the default proxy."""

    default: Literal["allow", "deny"] = setting(default="allow", description=(
        "`deny`: a link that matches no rule is refused (the dialect's connect-failure"
        " answer)."))
    proxy: str | None = setting(default=None, check=_proxy, description=(
        "Proxy for every link (`http://`, `socks5://`, `socks4://`); a rule's"
        " `proxy = \"\"` opts out. Default: none."))


@dataclass(frozen=True, kw_only=True, slots=True)
class PluginsConfig(Section):
    """Which plugins' dialects and transports are used."""

    disable: tuple[str, ...] = setting(default=(), description=(
        "Dialects and transports (by the name `gatewayd plugins` shows) to leave out, which"
        " frees their names and link kinds for another plugin: `[\"aiohttp-ws-client\"]`"
        " lets a third-party transport serve `ws` and `wss`."))


def _unique_ports(ports: tuple[PortConfig, ...], context: Context) -> tuple[PortConfig, ...]:
    if not ports and context.need_ports:
        raise ValueError("no [[port]] table: add one, or give the port with --device")
    for attribute in ("name", "device"):
        first_index: dict[str, int] = {}
        for index, port in enumerate(ports):
            value = getattr(port, attribute)
            if value in first_index:
                raise ValueError(
                    f"port[{index}] has the same {attribute} as port[{first_index[value]}]:"
                    f" {value!r}"
                )
            first_index[value] = index
    return ports


@dataclass(frozen=True, kw_only=True, slots=True)
class Config(Section):
    """The whole file."""

    ports: tuple[PortConfig, ...] = setting(
        default=(), alias="port", check=_unique_ports, check_default=True,
        description="The UARTs: `[[port]]` tables, at least one unless `--device` gives the port.",
    )
    certs: CertsConfig = setting(factory=CertsConfig, description="Certificate suites.")
    log: LogConfig = setting(factory=LogConfig, description="Logging.")
    daemon: DaemonConfig = setting(factory=DaemonConfig, description="The daemon process.")
    control: ControlConfig = setting(factory=ControlConfig, description="Control socket.")
    metrics: MetricsConfig = setting(factory=MetricsConfig, description="Prometheus.")
    routes: tuple[RouteConfig, ...] = setting(
        default=(), alias="route",
        description="Route rules for outgoing links: `[[route]]` tables, first match wins.")
    egress: EgressConfig = setting(factory=EgressConfig, description="Egress policy.")
    plugins: PluginsConfig = setting(factory=PluginsConfig, description="Plugins used.")
    plugin: dict[str, dict[str, Any]] = setting(factory=dict, description=(
        "`[plugin.<name>]` tables, each handed to the plugin called <name>, which checks it."))
    source: Path | None = setting(
        default=None, exclude=True, description="The file this was loaded from; not a TOML key."
    )


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file; `str()` is one line: `file: key.path: message`."""

    file: str
    key_path: str
    message: str

    def __str__(self) -> str:
        message = " ".join(self.message.split())
        if self.key_path:
            return f"{self.file}: {self.key_path}: {message}"
        return f"{self.file}: {message}"


class ConfigError(Exception):
    """The config file cannot be used; `.problems` says why, one `Problem` each."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_path(loc: Location) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        key = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
        path += f".{key}" if path else key
    return path


def load_config(path: str | os.PathLike[str], *, need_ports: bool = True) -> Config:
    """The config in TOML file `path`; `ConfigError` lists every problem found.

    Checks types, ranges, unknown keys, unique port names and devices, and that every
    certificate file exists; `check_config` also parses the certificates. With
    `need_ports=False` (the command line gives the port, `--device`) a file without
    `[[port]]` tables is valid.
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as stream:
            data = tomllib.load(stream)
    except OSError as error:
        raise ConfigError([Problem(file, "", f"cannot read: {error.strerror}")]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError([Problem(file, "(toml)", str(error))]) from None
    if "source" in data:
        raise ConfigError([Problem(file, "source", "unknown key")])
    source = Path(os.path.abspath(file))
    context = Context(source.parent, check_files=True, need_ports=need_ports)
    try:
        config: Config = parse(Config, data, context)
    except Invalid as error:
        raise ConfigError([Problem(file, _key_path(loc), message)
                           for loc, message in error.problems]) from None
    object.__setattr__(config, "source", source)
    return config


def default_config(base: str | os.PathLike[str]) -> Config:
    """The built-in config: one ESP-AT port named "mcu" on `pty:<base>/ttyAT0`."""
    device = PTY_PREFIX + str(resolve_path("ttyAT0", base))
    return Config(ports=(PortConfig(name="mcu", device=device),))
