"""Test kit for gatewayd and its plugins: a virtual MCU on a pty."""

from gatewayd.testing.virtual_mcu import (
    DEFAULT_TIMEOUT,
    GatewaydProcess,
    VirtualMcu,
    running_gateway,
)

__all__ = ["DEFAULT_TIMEOUT", "GatewaydProcess", "VirtualMcu", "running_gateway"]
