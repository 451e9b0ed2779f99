"""The optional Prometheus endpoint (``[metrics] listen``, off by default).

Served by aiohttp on the event loop (no thread), in the Prometheus text format
rendered by ``prometheus-client``. Nothing is counted twice: on each scrape a
collector reads the same figures ``gatewayd status`` shows.

Per port: ``gatewayd_port_bytes_total{port,direction}``,
``gatewayd_port_commands_total{port}``, ``gatewayd_port_uart_up{port}``,
``gatewayd_port_links{port}``. Per link: ``gatewayd_link_bytes_total{port,
link,kind,direction}``, ``gatewayd_link_up{port,link,kind,peer}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["MetricsServer"]


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
            name = port["name"]
            port_bytes.add_metric([name, "in"], port["bytes_in"])
            port_bytes.add_metric([name, "out"], port["bytes_out"])
            commands.add_metric([name], port["commands"])
            uart_up.add_metric([name], 1 if port["uart_open"] else 0)
            links.add_metric([name], len(port["links"]))
            for link in port["links"]:
                ident, kind = str(link["id"]), str(link["kind"])
                link_bytes.add_metric([name, ident, kind, "in"], link["bytes_in"])
                link_bytes.add_metric([name, ident, kind, "out"], link["bytes_out"])
                link_up.add_metric([name, ident, kind, str(link["peer"])],
                                   1 if link["state"] == "open" else 0)
        yield from (port_bytes, commands, uart_up, links, link_bytes, link_up)


class MetricsServer:
    """``GET /metrics`` on *host*:*port*."""

    def __init__(self, daemon: Any, host: str, port: int, log: Any) -> None:
        self.daemon, self.host, self.port, self.log = daemon, host, port, log
        self._runner: Any = None

    async def start(self) -> None:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self.daemon))  # type: ignore[arg-type]

        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(body=generate_latest(registry),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.log.info("metrics endpoint listening", address=f"{self.host}:{self.port}")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
