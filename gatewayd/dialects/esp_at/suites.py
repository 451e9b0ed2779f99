"""TLS settings of ESP-AT links (AT+WSCFG, AT+CIPSSLCCONF): the client
suites ``certs.client.<n>`` that auth modes 1-3 name, and the context built
from them.

auth_mode bit 0: present ``certs.client.<pki_number>``'s certificate and
key; bit 1: verify the server against ``certs.client.<ca_number>``'s CA
(with the host name). Without bit 1 the module would not verify; gatewayd
verifies against the system trust store unless the port sets
``trust_any_server_cert``.
"""

from __future__ import annotations

import ssl

from gatewayd.dialects.base import AtError, PortContext
from gatewayd.links.tls import SuiteLoadError, link_client_context

__all__ = ["check_suites", "client_tls"]


def check_suites(ctx: PortContext, auth_mode: int, pki: int | None, ca: int | None) -> None:
    """Answer as the module does for missing manufacturing data: ``NO CERT
    FOUND``, ``NO PRVT_KEY FOUND`` or ``NO CA FOUND``, then ERROR."""
    if auth_mode & 1:
        suite = ctx.certs.client.get(pki)  # type: ignore[arg-type]
        if suite is None or suite.cert is None:
            ctx.write(b"NO CERT FOUND\r\n")
            raise AtError(why=f"no certs.client.{pki} cert")
        if suite.key is None:
            ctx.write(b"NO PRVT_KEY FOUND\r\n")
            raise AtError(why=f"no certs.client.{pki} key")
    if auth_mode & 2:
        suite = ctx.certs.client.get(ca)  # type: ignore[arg-type]
        if suite is None or suite.ca is None:
            ctx.write(b"NO CA FOUND\r\n")
            raise AtError(why=f"no certs.client.{ca} ca")


def client_tls(ctx: PortContext, auth_mode: int, pki: int, ca: int,
               alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """The context of one TLS client link; AtError when a suite fails to load."""
    suites = ctx.certs.client
    own = suites.get(pki) if auth_mode & 1 else None
    ca_suite = suites.get(ca) if auth_mode & 2 else None
    try:
        context = link_client_context(own, ca_suite,
                                      trust_any_server_cert=ctx.config.trust_any_server_cert)
    except SuiteLoadError as exc:
        raise AtError(why=f"TLS setup failed: {exc}") from None
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context
