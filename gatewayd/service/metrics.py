"""The optional Prometheus endpoint (``[metrics] listen``, off by default).

Served on the event loop (no thread, no web framework: the core never
imports aiohttp) by a minimal HTTP/1.1 responder, in the Prometheus text
format rendered by ``prometheus-client``. Nothing is counted twice: on each scrape a
collector reads the same figures ``gatewayd status`` shows.

Per port: ``gatewayd_port_bytes_total{port,direction}``,
``gatewayd_port_commands_total{port}``, ``gatewayd_port_uart_up{port}``,
``gatewayd_port_links{port}``. Per link: ``gatewayd_link_bytes_total{port,
link,kind,direction}``, ``gatewayd_link_up{port,link,kind,peer}``. Route
rules: ``gatewayd_route_decisions_total{rule,outcome}`` (rule index or
``default``; ``allowed``, ``rewritten``, ``denied``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from gatewayd.links import LinkState

__all__ = ["MAX_HEAD", "MetricsServer"]

#: Bytes a request head (request line and headers) may take.
MAX_HEAD = 8192


class _Collector:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        port_bytes = CounterMetricFamily("gatewayd_port_bytes", "Bytes on the UART.",
                                         labels=["port", "direction"])
        commands = CounterMetricFamily("gatewayd_port_commands", "AT commands run.",
                                       labels=["port"])
        uart_up = GaugeMetricFamily("gatewayd_port_uart_up", "1 while the UART is open.",
                                    labels=["port"])
        links = GaugeMetricFamily("gatewayd_port_links", "Links the MCU holds.",
                                  labels=["port"])
        link_bytes = CounterMetricFamily("gatewayd_link_bytes", "Payload bytes of a link.",
                                         labels=["port", "link", "kind", "direction"])
        link_up = GaugeMetricFamily("gatewayd_link_up", "1 while the link is open.",
                                    labels=["port", "link", "kind", "peer"])
        for session in list(self.daemon.sessions.values()):
            port = session.describe()
            name = port.name
            port_bytes.add_metric([name, "in"], port.bytes_in)
            port_bytes.add_metric([name, "out"], port.bytes_out)
            commands.add_metric([name], port.commands)
            uart_up.add_metric([name], 1 if port.uart_open else 0)
            links.add_metric([name], len(port.links))
            for link in port.links:
                ident, kind = str(link.id), str(link.kind)
                link_bytes.add_metric([name, ident, kind, "in"], link.bytes_in)
                link_bytes.add_metric([name, ident, kind, "out"], link.bytes_out)
                link_up.add_metric([name, ident, kind, str(link.peer)],
                                   1 if link.state is LinkState.OPEN else 0)
        routes = CounterMetricFamily("gatewayd_route_decisions",
                                     "Links decided by the route rules.",
                                     labels=["rule", "outcome"])
        for (rule, outcome), count in sorted(self.daemon.router.counts.items()):
            routes.add_metric([rule, outcome], count)
        yield from (port_bytes, commands, uart_up, links, link_bytes, link_up, routes)


class MetricsServer:
    """``GET /metrics`` on *host*:*port* (a :class:`~gatewayd.service.lifecycle.Service`).

    A minimal HTTP/1.1 responder on ``asyncio.start_server``: one request per
    connection, whose head must arrive within :attr:`head_timeout` seconds and
    :data:`MAX_HEAD` bytes; ``GET`` (or ``HEAD``) ``/metrics`` answers 200,
    another path 404, another method 405; then the connection closes.
    """

    #: Seconds a client has to send its request head, and to take the answer.
    head_timeout = 10.0

    def __init__(self, daemon: Any, host: str, port: int, log: Any) -> None:
        self.daemon, self.host, self.port, self.log = daemon, host, port, log
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[Any]] = set()
        self._render: Callable[[], bytes] = bytes
        self._content_type = ""

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port the OS chose for ``:0``)."""
        assert self._server is not None, "start() first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self.daemon))
        self._render = functools.partial(generate_latest, registry)
        self._content_type = CONTENT_TYPE_LATEST
        self._server = await asyncio.start_server(self._client, self.host, self.port,
                                                  limit=MAX_HEAD)
        self.log.info("metrics endpoint listening", address=f"{self.host}:{self.address[1]}")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()  # a client still sending its head is not waited for
            await asyncio.gather(*self._clients, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._clients.add(task)
        task.add_done_callback(self._clients.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.head_timeout):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    await self._answer(writer, 431, "Request Header Fields Too Large")
                    return
                except asyncio.IncompleteReadError:
                    return  # the client went away before finishing its request
                await self._respond(writer, head)
        except (TimeoutError, ConnectionError):
            pass  # too slow a client, or gone: it just loses its connection
        except Exception:
            self.log.exception("metrics request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, writer: asyncio.StreamWriter, head: bytes) -> None:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await self._answer(writer, 400, "Bad Request")
            return
        method, target, _ = parts
        if urllib.parse.urlsplit(target).path != "/metrics":
            await self._answer(writer, 404, "Not Found")
        elif method not in ("GET", "HEAD"):
            await self._answer(writer, 405, "Method Not Allowed", allow="GET, HEAD")
        else:
            body = self._render()
            await self._answer(writer, 200, "OK", body, self._content_type,
                               send_body=method == "GET")

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, reason: str,
                      body: bytes | None = None, content_type: str = "text/plain; charset=utf-8",
                      *, allow: str | None = None, send_body: bool = True) -> None:
        if body is None:
            body = f"{status} {reason}\n".encode()
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}",
                 f"Content-Length: {len(body)}", "Connection: close"]
        if allow is not None:
            lines.append(f"Allow: {allow}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if send_body:
            writer.write(body)
        await writer.drain()
