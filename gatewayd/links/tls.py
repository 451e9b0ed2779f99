"""Certificate suites: checks and TLS contexts, with the stdlib `ssl` module only.

Contexts verify the peer by default: `client_context` checks the server's chain and
host name, against the suite's CA or else the system trust store; turning either off is
an explicit argument. Keys must be unencrypted PEM: a key that asks for a password is
refused rather than prompting on the terminal. Loading errors propagate as
`ssl.SSLError`, `OSError`, or `ValueError` for a suite that lacks what is asked of it.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gatewayd.config import CertSuite

__all__ = [
    "EncryptedKeyError",
    "check_suite",
    "client_context",
    "key_permission_warning",
    "server_context",
    "suite_problems",
]


class EncryptedKeyError(ValueError):
    """The private key is encrypted; gatewayd does not handle key passwords."""


def _refuse_password() -> bytes:
    raise EncryptedKeyError("the private key is encrypted; gatewayd needs an unencrypted key")


def _load_cert_chain(context: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    context.load_cert_chain(cert, key, password=_refuse_password)


def _unreadable(path: Path) -> str | None:
    try:
        with open(path, "rb"):
            return None
    except FileNotFoundError:
        return f"file not found: {path}"
    except IsADirectoryError:
        return f"not a regular file: {path}"
    except OSError as error:
        return f"cannot read {path}: {error.strerror}"


def _certificate_parse_problem(path: Path) -> str | None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError:
        return f"no PEM certificate in {path}"
    return None


def _cert_key_problem(cert: Path, key: Path | None) -> tuple[str, str] | None:
    try:
        _load_cert_chain(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), cert, key)
    except EncryptedKeyError as error:
        return "key" if key else "cert", f"{error}: {key or cert}"
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            return "key", f"{key or cert} does not match cert {cert}"
        if key is None:
            return "cert", f"no private key in {cert}; set key"
        return "key", f"no PEM private key in {key}"
    return None


def suite_problems(suite: CertSuite) -> list[tuple[str, str]]:
    """(field, message) for everything wrong with the suite's files; empty when usable.

    Checks that each file is readable, that ca and cert hold PEM certificates, and that
    key (or cert, when key is unset) holds an unencrypted PEM key matching cert.
    """
    problems: list[tuple[str, str]] = []
    readable = {}
    for field, path in suite.files().items():
        problem = _unreadable(path)
        if problem:
            problems.append((field, problem))
        else:
            readable[field] = path
    for field in ("ca", "cert"):
        if field in readable:
            problem = _certificate_parse_problem(readable[field])
            if problem:
                problems.append((field, problem))
                del readable[field]
    if suite.key is not None and suite.cert is None:
        problems.append(("key", "key is set but cert is not"))
    elif "cert" in readable and (suite.key is None or "key" in readable):
        problem = _cert_key_problem(readable["cert"], suite.key)
        if problem:
            problems.append(problem)
    return problems


def failure_stage(suite: CertSuite) -> str | None:
    """Where loading the suite fails: "read" (a file is missing or unreadable),
    "parse" (ca or cert holds no certificate), "key" (no usable key for cert),
    or ``None``. Dialects map these onto the module's error numbers."""
    files = suite.files()
    if any(_unreadable(path) for path in files.values()):
        return "read"
    if any(_certificate_parse_problem(files[f]) for f in ("ca", "cert") if f in files):
        return "parse"
    if "cert" in files and _cert_key_problem(files["cert"], suite.key):
        return "key"
    return None


def check_suite(suite: CertSuite) -> list[str]:
    """Everything wrong with the suite's files, one `field: message` string each."""
    return [f"{field}: {message}" for field, message in suite_problems(suite)]


def key_permission_warning(path: str | os.PathLike[str]) -> str | None:
    """A warning when users other than owner and group may read or write the key file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return (
            f"key file {os.fspath(path)} is accessible by others"
            f" (mode {stat.S_IMODE(mode):04o}); run chmod o-rwx on it"
        )
    return None


def client_context(
    suite: CertSuite | None,
    *,
    verify: bool = True,
    check_hostname: bool = True,
    ca_from: CertSuite | None = None,
) -> ssl.SSLContext:
    """A TLS context for a client link.

    By default the server's chain is verified and its host name checked. The CA is
    `ca_from.ca` when `ca_from` is given (ValueError if it has none), else `suite.ca`,
    else the system trust store. `check_hostname=False` keeps chain verification but
    skips the name; `verify=False` accepts any server certificate (explicit opt-in).
    The suite's cert and key, when set, are presented as the client certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = check_hostname
        if ca_from is not None and ca_from.ca is None:
            raise ValueError("the certificate suite given for the CA has no ca")
        ca = ca_from.ca if ca_from is not None else suite.ca if suite is not None else None
        if ca is not None:
            context.load_verify_locations(cafile=ca)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if suite is not None and suite.cert is not None:
        _load_cert_chain(context, suite.cert, suite.key)
    return context


def server_context(suite: CertSuite, *, require_client_cert: bool) -> ssl.SSLContext:
    """A TLS context for a server, presenting the suite's cert and key (ValueError if unset).

    With `require_client_cert`, clients must present a certificate that the suite's
    CA verifies (ValueError if the suite has no ca); otherwise none is requested.
    """
    if suite.cert is None:
        raise ValueError("a server certificate suite needs cert and key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load_cert_chain(context, suite.cert, suite.key)
    if require_client_cert:
        if suite.ca is None:
            raise ValueError("verifying client certificates needs the suite's ca")
        context.load_verify_locations(cafile=suite.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
