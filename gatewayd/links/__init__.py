"""The link layer: network-side behaviour that every dialect shares.

Below the dialects, above the transports. :mod:`~gatewayd.links.table` is the
link table (ids, roll-back, generations, status, descriptions);
:mod:`~gatewayd.links.client` is an outgoing link (connect deadline,
reconnect); :mod:`~gatewayd.links.keepalive` the ping deadline and idle
timeout of client and server links; :mod:`~gatewayd.links.tls` builds TLS contexts from
certificate suites; :mod:`~gatewayd.links.hostnet` reads the host's network
facts the dialects report.
"""

from gatewayd.links.client import (
    GOING_AWAY,
    ClientLink,
    LinkObserver,
    ReconnectPolicy,
    close_connection,
    routed_to,
)
from gatewayd.links.keepalive import Expiry, Keepalive, PingPolicy
from gatewayd.links.table import (
    DescribedLink,
    Generation,
    LinkDescription,
    LinkState,
    LinkTable,
    Token,
)

__all__ = [
    "GOING_AWAY",
    "ClientLink",
    "DescribedLink",
    "Expiry",
    "Generation",
    "Keepalive",
    "LinkDescription",
    "LinkObserver",
    "LinkState",
    "LinkTable",
    "PingPolicy",
    "ReconnectPolicy",
    "Token",
    "close_connection",
    "routed_to",
]
