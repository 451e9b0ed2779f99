"""The configuration file's models and loader (see :mod:`gatewayd.config.model`).

The lowest layer but for logging: every other layer may read a loaded
:class:`Config`; nothing here imports the rest of gatewayd.
"""

from gatewayd.config.model import (
    CertsConfig,
    CertSuite,
    Config,
    ConfigError,
    ControlConfig,
    LogConfig,
    MetricsConfig,
    PortConfig,
    Problem,
    UartSettings,
    default_config,
    load_config,
    resolve_device,
    resolve_path,
    split_host_port,
)

__all__ = [
    "CertSuite",
    "CertsConfig",
    "Config",
    "ConfigError",
    "ControlConfig",
    "LogConfig",
    "MetricsConfig",
    "PortConfig",
    "Problem",
    "UartSettings",
    "default_config",
    "load_config",
    "resolve_device",
    "resolve_path",
    "split_host_port",
]
