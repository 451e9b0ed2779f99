"""ESP-AT TLS settings of the TCP/IP links: AT+CIPSSLCCONF, AT+CIPSSLCCN,
AT+CIPSSLCSNI, AT+CIPSSLCALPN, AT+CIPSSLCPSK, AT+CIPSSLCPSKHEX (reference
esp-at-tcpip.md §3). All are per link id (5 = every id) and take effect at
the next ``AT+CIPSTART`` of an ``"SSL"`` link.

- AT+CIPSSLCCONF names ``certs.client.<n>`` suites as AT+WSCFG does
  (:mod:`gatewayd.dialects.esp_at.suites`); a missing suite file prints
  ``NO CERT FOUND`` / ``NO PRVT_KEY FOUND`` / ``NO CA FOUND`` before ERROR.
- SNI and ALPN are sent; with a CA (auth mode 2, 3) the server's name is
  checked against the SNI, else the host the MCU named. The common name of
  AT+CIPSSLCCN is stored and reported only.
- PSK identities are stored and reported; the host's TLS library (Python's
  ``ssl`` before 3.13) cannot offer PSK suites, so links use certificates.
- The queries list only ids with a value set, unquoted, as the firmware
  prints them.
"""

from __future__ import annotations

from gatewayd.dialects.base import AtError, CommandSpec, PortContext, from_end
from gatewayd.dialects.esp_at.fields import Fields, raw_fields
from gatewayd.dialects.esp_at.iplinks import ALL_LINKS, IpState, TlsOptions
from gatewayd.dialects.esp_at.suites import check_suites
from gatewayd.dialects.esp_at.tcpip import ip_state

__all__ = ["COMMANDS"]

MAX_NAME = 64
MAX_PSK = 32
MAX_ALPN = 5


def _ids(ip: IpState, f: Fields) -> range | tuple[int]:
    """The ids a set command applies to: its leading id in mux 1 (5: all)."""
    if not ip.mux:
        return (0,)
    link_id = f.number("link ID", 0, ALL_LINKS)
    return range(5) if link_id == ALL_LINKS else (link_id,)


def _each(ip: IpState) -> list[tuple[int, TlsOptions]]:
    return [(i, ip.options[i].tls) for i in ip.ids()]


async def cipsslcconf_query(ctx: PortContext) -> None:
    ctx.write(b"".join(b"+CIPSSLCCONF:%d,%d,%d,%d\r\n" % (i, t.auth_mode, t.pki_number,
                                                          t.ca_number)
                       for i, t in _each(ip_state(ctx))))


async def cipsslcconf_set(ctx: PortContext, *raw: bytes | None) -> None:
    ip = ip_state(ctx)
    f = Fields(raw)
    ids = _ids(ip, f)
    auth_mode = f.number("auth_mode", 0, 3)
    pki = f.number("pki_number", 0, 2**31 - 1, default=0)
    ca = f.number("ca_number", 0, 2**31 - 1, default=0)
    f.done()
    check_suites(ctx, auth_mode, pki, ca)
    for i in ids:
        tls = ip.options[i].tls
        tls.auth_mode, tls.pki_number, tls.ca_number = auth_mode, pki, ca


def _text_query(ctx: PortContext, name: bytes, attribute: str) -> None:
    lines = [b"%s:%d,%s\r\n" % (name, i, getattr(t, attribute).encode())
             for i, t in _each(ip_state(ctx)) if getattr(t, attribute)]
    ctx.write(b"".join(lines))


def _text_set(ctx: PortContext, raw: tuple[bytes | None, ...], attribute: str) -> None:
    ip = ip_state(ctx)
    f = Fields(raw)
    ids = _ids(ip, f)
    value = f.text(attribute, max_len=MAX_NAME)
    f.done()
    if not value:
        raise AtError(why=f"{attribute} is empty")
    for i in ids:
        setattr(ip.options[i].tls, attribute, value)


async def cipsslccn_query(ctx: PortContext) -> None:
    _text_query(ctx, b"+CIPSSLCCN", "common_name")


async def cipsslccn_set(ctx: PortContext, *raw: bytes | None) -> None:
    _text_set(ctx, raw, "common_name")


async def cipsslcsni_query(ctx: PortContext) -> None:
    _text_query(ctx, b"+CIPSSLCSNI", "sni")


async def cipsslcsni_set(ctx: PortContext, *raw: bytes | None) -> None:
    _text_set(ctx, raw, "sni")


async def cipsslcalpn_query(ctx: PortContext) -> None:
    lines = [b"+CIPSSLCALPN:%d,%s\r\n" % (i, ",".join(t.alpn).encode())
             for i, t in _each(ip_state(ctx)) if t.alpn]
    ctx.write(b"".join(lines))


async def cipsslcalpn_set(ctx: PortContext, *raw: bytes | None) -> None:
    ip = ip_state(ctx)
    f = Fields(raw)
    ids = _ids(ip, f)
    count = f.number("counts", 0, MAX_ALPN)
    names = tuple(f.text(f"alpn{n}", max_len=MAX_NAME) for n in range(count))
    f.done()
    if any(not name for name in names):
        raise AtError(why="an empty ALPN protocol")
    for i in ids:
        ip.options[i].tls.alpn = names


def _psk_query(ctx: PortContext, hex_form: bool) -> None:
    lines = []
    for i, t in _each(ip_state(ctx)):
        if t.psk is not None and t.psk_hex == hex_form:
            key = t.psk.hex().encode() if hex_form else t.psk
            lines.append(b"%s:%d,%s,%s\r\n" % (b"+CIPSSLCPSKHEX" if hex_form else b"+CIPSSLCPSK",
                                               i, key, (t.psk_hint or "").encode()))
    ctx.write(b"".join(lines))


def _psk_set(ctx: PortContext, raw: tuple[bytes | None, ...], hex_form: bool) -> None:
    ip = ip_state(ctx)
    f = Fields(raw)
    ids = _ids(ip, f)
    key_text = f.text("psk", max_len=2 * MAX_PSK if hex_form else MAX_PSK)
    hint = f.text("hint", max_len=MAX_PSK)
    f.done()
    try:
        key = bytes.fromhex(key_text) if hex_form else key_text.encode("utf-8", "surrogateescape")
    except ValueError:
        raise AtError(why="the PSK is not hexadecimal") from None
    for i in ids:
        tls = ip.options[i].tls
        tls.psk, tls.psk_hint, tls.psk_hex = key, hint, hex_form


async def cipsslcpsk_query(ctx: PortContext) -> None:
    _psk_query(ctx, hex_form=False)


async def cipsslcpsk_set(ctx: PortContext, *raw: bytes | None) -> None:
    _psk_set(ctx, raw, hex_form=False)


async def cipsslcpskhex_query(ctx: PortContext) -> None:
    _psk_query(ctx, hex_form=True)


async def cipsslcpskhex_set(ctx: PortContext, *raw: bytes | None) -> None:
    _psk_set(ctx, raw, hex_form=True)


COMMANDS = (
    CommandSpec("+CIPSSLCCONF", "TLS client auth mode and certs.client suites per link",
                query=cipsslcconf_query, set=raw_fields(cipsslcconf_set, 4)),
    CommandSpec("+CIPSSLCCN", "server common name per link (stored and reported)",
                query=cipsslccn_query, set=raw_fields(cipsslccn_set, 2)),
    CommandSpec("+CIPSSLCSNI", "TLS SNI per link", query=cipsslcsni_query,
                set=raw_fields(cipsslcsni_set, 2)),
    CommandSpec("+CIPSSLCALPN", "TLS ALPN protocols per link", query=cipsslcalpn_query,
                set=raw_fields(cipsslcalpn_set, 2 + MAX_ALPN)),
    CommandSpec("+CIPSSLCPSK", "TLS PSK per link (stored and reported)",
                query=cipsslcpsk_query, set=raw_fields(cipsslcpsk_set, 3, secrets=from_end(2))),
    CommandSpec("+CIPSSLCPSKHEX", "TLS PSK per link, as hex (stored and reported)",
                query=cipsslcpskhex_query,
                set=raw_fields(cipsslcpskhex_set, 3, secrets=from_end(2))),
)
