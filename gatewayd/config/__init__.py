"""The configuration file's models and loader (see :mod:`gatewayd.config.model`).

The lowest layer but for logging: every other layer may read a loaded
:class:`Config`; nothing here imports the rest of gatewayd. The names are
those of :data:`gatewayd.config.model.__all__`.
"""

from gatewayd.config.model import *  # noqa: F403 - re-exports model.__all__
from gatewayd.config.model import __all__ as __all__
