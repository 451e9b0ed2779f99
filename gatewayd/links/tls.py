"""Certificate suites: checks and TLS contexts, with the stdlib `ssl` module only.

Contexts verify the peer by default: `client_context` checks the server's chain and
host name, against the suite's CA or else the system trust store; turning either off is
an explicit argument. `link_client_context` is the rule client links follow: verify,
unless no CA was asked for and the port sets ``trust_any_server_cert``. Keys must be
unencrypted PEM: a key that asks for a password is refused rather than prompting on the
terminal. Every loading error is a :class:`SuiteLoadError` that names its stage, for the
dialects to number as their firmware does.
"""

from __future__ import annotations

import os
import ssl
import stat
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gatewayd.config import CertSuite

__all__ = [
    "EncryptedKeyError",
    "Stage",
    "SuiteLoadError",
    "client_context",
    "key_permission_warning",
    "link_client_context",
    "server_context",
    "suite_problems",
]

#: Where loading a suite failed: a file is missing or unreadable ("read"), ca or
#: cert holds no certificate ("parse"), or there is no usable key for cert ("key").
Stage = Literal["read", "parse", "key"]


class SuiteLoadError(ValueError):
    """A TLS context could not be built from a suite. ``stage`` is where it
    failed, ``None`` when the suite lacks what was asked of it."""

    def __init__(self, stage: Stage | None, message: str) -> None:
        super().__init__(message)
        self.stage: Stage | None = stage


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
    readable: dict[str, Path] = {}
    for field, path in suite.files().items():
        problem = _unreadable(path)
        if problem:
            problems.append((field, problem))
        else:
            readable[field] = path
    for field in ("ca", "cert"):
        if field in readable:
            parse_problem = _certificate_parse_problem(readable[field])
            if parse_problem:
                problems.append((field, parse_problem))
                del readable[field]
    if suite.key is not None and suite.cert is None:
        problems.append(("key", "key is set but cert is not"))
    elif "cert" in readable and (suite.key is None or "key" in readable):
        key_problem = _cert_key_problem(readable["cert"], suite.key)
        if key_problem:
            problems.append(key_problem)
    return problems


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


@contextmanager
def _stage(stage: Stage) -> Iterator[None]:
    """Loading errors inside the block are *stage*'s (an unreadable file: "read")."""
    try:
        yield
    except (ssl.SSLError, ValueError) as error:  # ssl.SSLError is an OSError too
        raise SuiteLoadError(stage, str(error)) from error
    except OSError as error:
        raise SuiteLoadError("read", str(error)) from error


def _load(context: ssl.SSLContext, *, ca: Path | None, cert: Path | None,
          key: Path | None) -> None:
    """Load ca (to verify peers) and cert/key (to present) into *context*, in
    stages: every file readable, then ca and cert parsed, then the key."""
    with _stage("read"):
        for path in (ca, cert, key):
            if path is not None:
                with open(path, "rb"):
                    pass
    if ca is not None:
        with _stage("parse"):
            context.load_verify_locations(cafile=ca)
    if cert is not None:
        with _stage("parse"):
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
        with _stage("key"):
            _load_cert_chain(context, cert, key)


def client_context(
    suite: CertSuite | None,
    *,
    verify: bool = True,
    check_hostname: bool = True,
    ca_from: CertSuite | None = None,
) -> ssl.SSLContext:
    """A TLS context for a client link.

    By default the server's chain is verified and its host name checked. The CA is
    `ca_from.ca` when `ca_from` is given (SuiteLoadError if it has none), else
    `suite.ca`, else the system trust store. `check_hostname=False` keeps chain
    verification but skips the name; `verify=False` accepts any server certificate
    (explicit opt-in). The suite's cert and key, when set, are presented as the client
    certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca = None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = check_hostname
        if ca_from is not None and ca_from.ca is None:
            raise SuiteLoadError(None, "the certificate suite given for the CA has no ca")
        ca = ca_from.ca if ca_from is not None else suite.ca if suite is not None else None
        if ca is None:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    own = suite is not None and suite.cert is not None
    _load(context, ca=ca, cert=suite.cert if own and suite else None,
          key=suite.key if own and suite else None)
    return context


def link_client_context(own: CertSuite | None, ca_from: CertSuite | None, *,
                        trust_any_server_cert: bool) -> ssl.SSLContext:
    """The context of a client link that presents *own* (cert and key, when set):
    with *ca_from*, verify the server (chain and host name) against its ca; without,
    verify against *own*'s ca or the system trust store, unless the port opted into
    ``trust_any_server_cert`` (the module would not have verified)."""
    if ca_from is not None:
        return client_context(own, verify=True, check_hostname=True, ca_from=ca_from)
    verify = not trust_any_server_cert
    context = client_context(own, verify=verify, check_hostname=verify)
    if verify and (own is None or own.ca is None):
        _STRICTER_THAN_THE_MODULE.add(context)
    return context


#: Contexts that verify against the system store where the module would not.
_STRICTER_THAN_THE_MODULE: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()

#: The per-port setting that restores the module's behaviour.
TRUST_ANY_SETTING = "trust_any_server_cert"


def untrusted_server(context: ssl.SSLContext | None, error: BaseException) -> bool:
    """Did a link fail only because gatewayd verified the server against the
    system trust store, where the module would have accepted any certificate?
    Then the log should say so and name :data:`TRUST_ANY_SETTING`."""
    return (context is not None and context in _STRICTER_THAN_THE_MODULE
            and "CERTIFICATE_VERIFY_FAILED" in str(error))


def log_untrusted_server(log: Any, context: ssl.SSLContext | None,
                         error: BaseException) -> None:
    """One warning line for :func:`untrusted_server` failures (nothing otherwise);
    *log* is bound to the port, whose name the line's ``port`` field gives."""
    if untrusted_server(context, error):
        log.warning("server certificate not trusted", error=str(error),
                    setting=TRUST_ANY_SETTING,
                    hint=(f"the module would not verify this server; gatewayd checks it"
                          f" against the system trust store. Set {TRUST_ANY_SETTING} = true"
                          " in this port's [[port]] table to accept it as the module does,"
                          " or give the server's CA in a certificate suite"))


def server_context(suite: CertSuite, *, require_client_cert: bool) -> ssl.SSLContext:
    """A TLS context for a server, presenting the suite's cert and key
    (SuiteLoadError if unset).

    With `require_client_cert`, clients must present a certificate that the suite's
    CA verifies (SuiteLoadError if the suite has no ca); otherwise none is requested.
    """
    if suite.cert is None:
        raise SuiteLoadError(None, "a server certificate suite needs cert and key")
    if require_client_cert and suite.ca is None:
        raise SuiteLoadError(None, "verifying client certificates needs the suite's ca")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load(context, ca=suite.ca if require_client_cert else None, cert=suite.cert,
          key=suite.key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    return context
