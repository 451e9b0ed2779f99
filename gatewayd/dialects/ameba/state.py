"""Per-port Ameba state, as the module keeps it in RAM (a restart resets it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayd.dialects.ameba.network import NetworkState
from gatewayd.dialects.ameba.sockets import SocketState
from gatewayd.dialects.ameba.system import SystemState
from gatewayd.dialects.ameba.websocket import AmebaWsState
from gatewayd.dialects.ameba.wifi import WifiState
from gatewayd.dialects.ameba.wsserver import WsServerState

__all__ = ["AmebaState"]


@dataclass
class AmebaState:
    """Per-port state that a restart resets."""

    ws: AmebaWsState = field(default_factory=AmebaWsState)
    sockets: SocketState = field(default_factory=SocketState)
    wsserver: WsServerState = field(default_factory=WsServerState)
    wifi: WifiState = field(default_factory=WifiState)
    network: NetworkState = field(default_factory=NetworkState)
    system: SystemState = field(default_factory=SystemState)
