"""Certificate suites for Ameba's TLS conn_types, shared by the WebSocket
client (AT+WSCONN) and socket client (AT+SKTCLIENT) commands.

conn_type 2: TLS without the module verifying the server; 3: verify the server
with ``certs.client.N``'s ``ca``; 4: present its ``cert``/``key``; 5: both.
Where the module would not verify (2, 4), gatewayd still verifies against the
system trust store unless the port sets ``trust_any_server_cert``.
"""

from __future__ import annotations

import ssl
from typing import Any

from gatewayd.dialects.base import AtError, PortContext
from gatewayd.links import tls as cert_contexts

__all__ = ["CLIENT_NEEDS", "client_context", "client_suite"]

#: The suite files each TLS conn_type needs.
CLIENT_NEEDS: dict[int, tuple[str, ...]] = {
    2: (), 3: ("ca",), 4: ("cert", "key"), 5: ("ca", "cert", "key")}


def client_suite(ctx: PortContext, conn_type: int, cert_index: int, *,
                 missing: int) -> Any:
    """``certs.client.<cert_index>`` as *conn_type* needs it (``None`` for 2).
    A bad index is ``ERROR: 1``; a suite missing or lacking a file *missing*."""
    needs = CLIENT_NEEDS[conn_type]
    if not needs:
        return None
    if not 1 <= cert_index <= 10:
        raise AtError(1, why=f"conn_type {conn_type} needs cert_index 1..10")
    suite = ctx.certs.client.get(cert_index)
    if suite is None or any(getattr(suite, name) is None for name in needs):
        raise AtError(missing, why=f"certs.client.{cert_index} lacks {', '.join(needs)}")
    return suite


def client_context(ctx: PortContext, conn_type: int, suite: Any) -> ssl.SSLContext:
    """The TLS context for *conn_type*; raises what loading the files raises
    (OSError, ssl.SSLError, ValueError) for the caller to number."""
    if conn_type in (3, 5):
        return cert_contexts.client_context(suite if conn_type == 5 else None, verify=True,
                                            check_hostname=True, ca_from=suite)
    verify = not ctx.config.trust_any_server_cert
    return cert_contexts.client_context(suite, verify=verify, check_hostname=verify)
