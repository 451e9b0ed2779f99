"""The link layer: network-side behaviour that every dialect shares.

Below the dialects, above the transports. :mod:`~gatewayd.links.client` is an
outgoing link (connect deadline, keepalive, reconnect); :mod:`~gatewayd.links.tls`
builds TLS contexts from certificate suites; :mod:`~gatewayd.links.hostnet`
reads the host's network facts the dialects report.
"""

from gatewayd.links.client import ClientLink, LinkObserver, LinkState, PingPolicy, ReconnectPolicy

__all__ = ["ClientLink", "LinkObserver", "LinkState", "PingPolicy", "ReconnectPolicy"]
