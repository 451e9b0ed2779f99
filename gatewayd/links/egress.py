"""Where outgoing links really go: ``[[route]]`` rules and the ``[egress]`` policy.

Every client link of every dialect reaches a transport through
:class:`RoutedTransport` (:func:`gatewayd.dialects.base.transport_for` hands
one out per link), so the rules apply in this one place, before any name is
resolved: a rewritten host is never looked up, only the new one (by the
proxy, when there is one).

A :class:`Router` decides (:meth:`Router.decide`): the first rule whose
``match`` (and ``ports``) fits the link wins; it may deny it, send it
elsewhere (``ws``→``wss`` and ``tcp``→``tls`` upgrade it: the MCU keeps
speaking plain text), add request headers, choose a proxy and a CA. A link no
rule matches is allowed unless ``[egress] default = "deny"``. Each link's
decision is logged once, counted (``gatewayd_route_decisions_total``) and
shown by ``gatewayd status``. The rules reach links as the ``trylast``
``gatewayd_route_link`` implementation (:class:`gatewayd.plugin.routerules.RouteRules`),
so plugins decide before them.

Listeners are not routed. UDP links of ESP-AT (unconnected sockets) ask
:meth:`Router.decide` for their first destination themselves.
"""

from __future__ import annotations

import collections
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatewayd.config.routes import Destination, Pattern, parse_pattern, parse_target, rewrite
from gatewayd.transport import (
    ClientRequest,
    Connection,
    LinkEvents,
    Listener,
    ListenRequest,
    Transport,
    TransportError,
    kit,
)

if TYPE_CHECKING:
    from gatewayd.config import EgressConfig, RouteConfig

__all__ = ["Decision", "RoutedTransport", "Router", "destination_of", "routed_request",
           "rule_name"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules made of one destination."""

    original: Destination
    actual: Destination | None  #: ``None``: denied
    rule: int | None  #: index into ``[[route]]``; ``None``: the egress default
    headers: tuple[tuple[str, str | Path], ...] = ()
    proxy: str | None = None
    ca: Path | None = None

    @property
    def denied(self) -> bool:
        return self.actual is None

    @property
    def outcome(self) -> str:
        if self.denied:
            return "denied"
        return "allowed" if self.actual == self.original else "rewritten"

    def fields(self) -> dict[str, Any]:
        """The decision as log fields."""
        return {"rule": "default" if self.rule is None else self.rule,
                "destination": str(self.original),
                "actual": str(self.actual) if self.actual else None,
                "outcome": self.outcome, "proxy": _without_password(self.proxy)}


def _without_password(url: str | None) -> str | None:
    if not url or "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"


@dataclass(frozen=True, slots=True)
class _Rule:
    """One `[[route]]` table, compiled: its position, match and target patterns."""

    index: int
    match: Pattern
    target: Pattern | None
    config: RouteConfig


class Router:
    """The compiled rules of one config, and how often each decided."""

    def __init__(self, routes: tuple[RouteConfig, ...] = (),
                 egress: EgressConfig | None = None) -> None:
        self.rules = tuple(_Rule(i, parse_pattern(r.match),
                                 parse_target(r.to) if r.to else None, r)
                           for i, r in enumerate(routes))
        self.deny_by_default = egress is not None and egress.default == "deny"
        self.default_proxy = egress.proxy if egress is not None and egress.proxy else None
        #: (rule index or "default", outcome) -> links decided so.
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    @property
    def active(self) -> bool:
        """Whether any rule, policy or proxy can change a link."""
        return bool(self.rules or self.deny_by_default or self.default_proxy)

    def decide(self, dest: Destination, port: str | None = None) -> Decision:
        for rule in self.rules:
            config = rule.config
            if config.ports and port not in config.ports:
                continue
            if not rule.match.matches(dest):
                continue
            if config.deny:
                return Decision(dest, None, rule.index)
            actual = rewrite(dest, rule.match, rule.target) if rule.target else dest
            proxy = self.default_proxy if config.proxy is None else (config.proxy or None)
            headers = tuple(
                (name, value if isinstance(value, str) else value.file)
                for name, value in config.headers.items())
            return Decision(dest, actual, rule.index, headers, proxy, config.ca)
        if self.deny_by_default:
            return Decision(dest, None, None)
        return Decision(dest, dest, None, proxy=self.default_proxy)

    def count(self, decision: Decision) -> None:
        rule = "default" if decision.rule is None else str(decision.rule)
        self.counts[(rule, decision.outcome)] += 1


def destination_of(request: ClientRequest) -> Destination:
    """The destination a dialect asked for."""
    path = request.path if request.kind in ("ws", "wss") else ""
    return Destination(request.kind, request.host.strip("[]"), request.port, path)


def _header_value(value: str | Path) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.read_text().rstrip("\r\n")
    except OSError as exc:
        raise TransportError(f"route header file {value}: {exc.strerror}",
                             stage="connect") from exc


def routed_request(request: ClientRequest, decision: Decision) -> ClientRequest:
    """*request* as *decision* sends it."""
    actual = decision.actual
    assert actual is not None
    tls = request.tls
    server_hostname = request.server_hostname
    if actual.host != decision.original.host:
        server_hostname = None if kit.is_ip(actual.host) else actual.host
    if actual.scheme != decision.original.scheme:  # an upgrade: gatewayd does the TLS
        tls = ssl.create_default_context(cafile=str(decision.ca) if decision.ca else None)
    elif decision.ca is not None:
        tls = ssl.create_default_context(cafile=str(decision.ca))
    headers = tuple(request.headers)
    if decision.headers:
        names = {name.lower() for name, _ in decision.headers}
        headers = tuple(h for h in headers if h[0].lower() not in names) + tuple(
            (name, _header_value(value)) for name, value in decision.headers)
    return replace(request, kind=actual.scheme, host=actual.host, port=actual.port,
                   path=actual.path or request.path, tls=tls, server_hostname=server_hostname,
                   headers=headers, proxy=decision.proxy)


class RoutedTransport(Transport):
    """The transport of one link, through ``gatewayd_route_link`` (the
    built-in rules and any plugin's): each connect is decided and handed to
    the transport serving the kind it ends up as. The decision is logged when
    it is made first or changes, and counted in *router*."""

    def __init__(self, kind: str, plugins: Any, router: Router | None, *, port: str | None,
                 dialect: str | None, link_id: int | None, log: Any) -> None:
        self.name = f"routed {kind}"
        self.kinds = frozenset({kind})
        self._plugins = plugins
        self._router = router
        self._port, self._dialect, self._link_id = port, dialect, link_id
        self._log = log
        self._last: tuple[str, str | None] | None = None
        self.decision: Decision | None = None

    def _decided(self, original: Destination, actual: Destination | None,
                 by: str | None, proxy: str | None) -> None:
        rule = _rule_label(by)
        self.decision = Decision(original, actual, None, proxy=proxy)
        outcome = self.decision.outcome
        if (outcome, by) != self._last:
            self._last = (outcome, by)
            if self._router is not None:
                self._router.counts[(rule, outcome)] += 1
            self._log.info("route decision", rule=by or "none", destination=str(original),
                           actual=str(actual) if actual else None, outcome=outcome,
                           proxy=_without_password(proxy))

    def route(self, request: ClientRequest) -> ClientRequest:
        """Where *request* goes (logged and counted); TransportError if refused."""
        request = replace(request, port_name=self._port, dialect=self._dialect,
                          link_id=self._link_id)
        original = destination_of(request)
        try:
            routed = self._plugins.route(request) if self._plugins is not None else request
        except TransportError as exc:
            self._decided(original, None, str(exc).removeprefix("denied by "), None)
            raise
        self._decided(original, destination_of(routed), routed.decided_by, routed.proxy)
        return routed

    async def connect(self, request: ClientRequest, events: LinkEvents) -> Connection:
        routed = self.route(request)
        transport = self._plugins.transports.get(routed.kind)
        if transport is None:
            raise TransportError(f"no transport plugin serves {routed.kind!r} links",
                                 stage="connect")
        connection: Connection = await transport.connect(routed, events)
        return connection

    async def listen(self, request: ListenRequest, accept: Any) -> Listener:
        request = replace(request, port_name=self._port, dialect=self._dialect,
                          link_id=self._link_id)
        listener: Listener = await self._plugins.transports[request.kind].listen(request, accept)
        return listener


def _rule_label(by: str | None) -> str:
    """The metrics label of who decided: a rule's index, ``default``, or the plugin."""
    if by is None or by.startswith("[egress]"):
        return "default"
    if by.startswith("[[route]] rule "):
        return by.removeprefix("[[route]] rule ")
    return by


def rule_name(decision: Decision) -> str:
    """Who decided: ``[[route]] rule N`` or ``[egress] default``."""
    return "[egress] default" if decision.rule is None \
        else f"[[route]] rule {decision.rule}"
