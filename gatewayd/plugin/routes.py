"""The built-in ``[[route]]`` rules and ``[egress]`` policy as a
``gatewayd_route_link`` implementation (registration is a plugin concern:
the rules themselves are in :mod:`gatewayd.links.egress`)."""

from __future__ import annotations

from dataclasses import replace

from gatewayd.links.egress import Router, destination_of, routed_request, rule_name
from gatewayd.plugin import hookimpl
from gatewayd.transport import ClientRequest, Refused

__all__ = ["RouteRules"]


class RouteRules:
    """The built-in ``[[route]]`` rules as a ``gatewayd_route_link`` plugin
    (``trylast``: plugins decide first). The daemon registers one and swaps
    its :attr:`router` on reload."""

    def __init__(self, router: Router) -> None:
        self.router = router

    @hookimpl(trylast=True)
    def gatewayd_route_link(self, request: ClientRequest) -> ClientRequest | None:
        decision = self.router.decide(destination_of(request), request.port_name)
        if decision.actual is None:
            raise Refused(f"denied by {rule_name(decision)}")
        if decision.actual == decision.original and not decision.proxy and \
                not decision.headers and decision.ca is None:
            return replace(request, decided_by=rule_name(decision)) \
                if decision.rule is not None else None
        return replace(routed_request(request, decision), decided_by=rule_name(decision))
