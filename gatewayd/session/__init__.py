"""The port session: one UART, its AT engine, its dialect's state and links.

:mod:`~gatewayd.session.uart` does the serial I/O, :mod:`~gatewayd.session.port`
runs the engine and dispatches commands, :mod:`~gatewayd.session.rawblock`
streams the raw blocks that follow a prompt.
"""

from gatewayd.session.port import PortSession

__all__ = ["PortSession"]
