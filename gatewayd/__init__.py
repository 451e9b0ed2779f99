"""gatewayd: stands in for an ESP-AT or Realtek Ameba Wi-Fi module on a UART.

The MCU keeps its firmware; gatewayd answers its AT commands byte for byte and
carries its links over the host's network through transport plugins.
"""

__version__ = "0.1.0"
#: Reported by AT+GMR in the firmware's "compile time" fields (fixed, so
#: that an MCU comparing version strings sees the same text on every build).
BUILD_DATE = "Nov 22 2026"
BUILD_TIME = "00:00:00"
