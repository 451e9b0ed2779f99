"""`gatewayd check-config`: the config file's problems, beyond what loading finds.

Loading (`gatewayd.config.load_config`) checks types, ranges and that files
exist; this also loads every certificate suite (PEM parses, key matches cert)
and warns about key files that others may read.
"""

from __future__ import annotations

import os

from gatewayd.config import ConfigError, Problem, load_config
from gatewayd.links import tls

__all__ = ["check_config"]


def check_config(path: str | os.PathLike[str]) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) for config file `path`; valid when errors is empty.

    Beyond `load_config`, loads every certificate suite (PEM parses, key matches cert)
    and warns about key files that others may read.
    """
    file = os.fspath(path)
    try:
        config = load_config(file)
    except ConfigError as error:
        return error.problems, []
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for role in ("client", "server"):
        for index, suite in getattr(config.certs, role).items():
            key_path = f"certs.{role}.{index}"
            for field, message in tls.suite_problems(suite):
                errors.append(Problem(file, f"{key_path}.{field}", message))
            if suite.key is not None:
                warning = tls.key_permission_warning(suite.key)
                if warning:
                    warnings.append(Problem(file, f"{key_path}.key", warning))
    return errors, warnings
