"""Certificate suites as the Ameba firmware selects and numbers them, for the
WebSocket client (AT+WSCONN), socket client and server (AT+SKTCLIENT,
AT+SKTSERVER) and WebSocket server (AT+WSSRVSTART) commands.

``cert_index`` N (1..10) selects ``certs.client.N`` or ``certs.server.N``.
Client conn_type 2: TLS without the module verifying the server; 3: verify the
server with the suite's ``ca``; 4: present its ``cert``/``key``; 5: both. Where
the module would not verify (2, 4), gatewayd still verifies against the system
trust store unless the port sets ``trust_any_server_cert``
(:func:`gatewayd.links.tls.link_client_context`).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

from gatewayd.dialects.base import AtError, PortContext
from gatewayd.links import tls
from gatewayd.links.tls import Stage, SuiteLoadError

if TYPE_CHECKING:
    from gatewayd.config import CertSuite

__all__ = ["CLIENT_NEEDS", "MAX_CERT_INDEX", "client_context", "client_suite", "load",
           "server_suite"]

#: The suite files each TLS conn_type needs.
CLIENT_NEEDS: dict[int, tuple[str, ...]] = {
    2: (), 3: ("ca",), 4: ("cert", "key"), 5: ("ca", "cert", "key")}
#: The firmware keeps certificate files 1..10 of each role.
MAX_CERT_INDEX = 10


def _suite(ctx: PortContext, role: Literal["client", "server"], cert_index: int,
           needs: tuple[str, ...], *, missing: int) -> CertSuite:
    """``certs.<role>.<cert_index>`` with the files *needs* names. An index
    outside 1..10 is ``ERROR: 1``; a suite missing or lacking a file *missing*."""
    if not 1 <= cert_index <= MAX_CERT_INDEX:
        raise AtError(1, why=f"this conn_type needs cert_index 1..{MAX_CERT_INDEX}")
    suite = (ctx.certs.client if role == "client" else ctx.certs.server).get(cert_index)
    if suite is None or any(getattr(suite, name) is None for name in needs):
        raise AtError(missing, why=f"certs.{role}.{cert_index} lacks {', '.join(needs)}")
    return suite


def client_suite(ctx: PortContext, conn_type: int, cert_index: int, *,
                 missing: int) -> CertSuite | None:
    """``certs.client.<cert_index>`` as *conn_type* needs it (``None`` for 2)."""
    needs = CLIENT_NEEDS[conn_type]
    return _suite(ctx, "client", cert_index, needs, missing=missing) if needs else None


def server_suite(ctx: PortContext, cert_index: int, needs: tuple[str, ...], *,
                 missing: int) -> CertSuite:
    """``certs.server.<cert_index>`` with the files *needs* names."""
    return _suite(ctx, "server", cert_index, needs, missing=missing)


def client_context(ctx: PortContext, conn_type: int, suite: CertSuite | None,
                   ) -> ssl.SSLContext:
    """The TLS context for client *conn_type* (raises :class:`SuiteLoadError`)."""
    verified = conn_type in (3, 5)
    own = suite if conn_type != 3 else None
    return tls.link_client_context(own, suite if verified else None,
                                   trust_any_server_cert=ctx.config.trust_any_server_cert)


def load(build: Callable[[], ssl.SSLContext], numbers: Mapping[Stage, int],
         default: int) -> ssl.SSLContext:
    """``build()``, or the AtError a command answers when the suite fails to load:
    ``numbers`` by the failure's stage, else ``default``."""
    try:
        return build()
    except SuiteLoadError as exc:
        code = numbers.get(exc.stage, default) if exc.stage is not None else default
        raise AtError(code, why=f"certificate suite failed to load ({exc.stage}): {exc}") \
            from None
