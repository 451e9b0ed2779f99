"""Certificate suites: checks on real files, and TLS handshakes between real contexts."""

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from gatewayd.config import CertSuite
from gatewayd.links.tls import (
    client_context,
    key_permission_warning,
    server_context,
    suite_problems,
)


def check_suite(suite: CertSuite) -> list[str]:
    """Everything wrong with the suite's files, one `field: message` string each."""
    return [f"{field}: {message}" for field, message in suite_problems(suite)]


@dataclass
class Material:
    folder: Path
    client: CertSuite
    server: CertSuite
    other_ca: CertSuite


def write_leaf(ca: trustme.CA, folder: Path, name: str, *identities: str) -> tuple[Path, Path]:
    leaf = ca.issue_cert(*identities)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    os.chmod(key, 0o600)
    return cert, key


@pytest.fixture
def material(tmp_path: Path) -> Material:
    ca, other_ca = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    other_ca.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    client_cert, client_key = write_leaf(ca, tmp_path, "client", "client.example")
    server_cert, server_key = write_leaf(ca, tmp_path, "server", "localhost", "127.0.0.1")
    return Material(
        folder=tmp_path,
        client=CertSuite(ca=tmp_path / "ca.pem", cert=client_cert, key=client_key),
        server=CertSuite(ca=tmp_path / "ca.pem", cert=server_cert, key=server_key),
        other_ca=CertSuite(ca=tmp_path / "other-ca.pem"),
    )


def test_good_suites_have_no_problems(material: Material) -> None:
    assert check_suite(material.client) == []
    assert check_suite(material.server) == []
    assert check_suite(material.other_ca) == []


def test_key_in_the_cert_file(material: Material) -> None:
    combined = material.folder / "combined.pem"
    combined.write_bytes(material.client.key.read_bytes() + material.client.cert.read_bytes())
    assert check_suite(CertSuite(cert=combined)) == []
    assert check_suite(CertSuite(cert=material.client.cert)) == [
        f"cert: no private key in {material.client.cert}; set key"
    ]


def test_key_cert_mismatch(material: Material) -> None:
    suite = CertSuite(cert=material.client.cert, key=material.server.key)
    assert check_suite(suite) == [
        f"key: {material.server.key} does not match cert {material.client.cert}"
    ]


def test_files_that_are_not_pem(material: Material) -> None:
    garbage = material.folder / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert check_suite(CertSuite(ca=garbage)) == [f"ca: no PEM certificate in {garbage}"]
    assert check_suite(CertSuite(cert=garbage, key=material.client.key)) == [
        f"cert: no PEM certificate in {garbage}"
    ]
    assert check_suite(CertSuite(cert=material.client.cert, key=material.client.cert)) == [
        f"key: no PEM private key in {material.client.cert}"
    ]


def test_missing_and_unreadable_files(material: Material) -> None:
    absent = material.folder / "absent.pem"
    assert check_suite(CertSuite(ca=absent, cert=material.folder)) == [
        f"ca: file not found: {absent}",
        f"cert: not a regular file: {material.folder}",
    ]


def test_encrypted_key_is_refused_without_prompting(material: Material) -> None:
    key = serialization.load_pem_private_key(material.client.key.read_bytes(), None)
    encrypted = material.folder / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    suite = CertSuite(cert=material.client.cert, key=encrypted)
    assert check_suite(suite) == [
        f"key: the private key is encrypted; gatewayd needs an unencrypted key: {encrypted}"
    ]
    with pytest.raises(ValueError, match="encrypted"):
        client_context(suite)


def test_key_permission_warning(material: Material) -> None:
    key = material.client.key
    assert key_permission_warning(key) is None
    os.chmod(key, 0o640)
    assert key_permission_warning(key) is None
    os.chmod(key, 0o644)
    assert key_permission_warning(key) == (
        f"key file {key} is accessible by others (mode 0644); run chmod o-rwx on it"
    )


def test_client_context_defaults_verify_against_the_system_store() -> None:
    context = client_context(None)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_contexts_refuse_incomplete_suites(material: Material) -> None:
    with pytest.raises(ValueError, match="has no ca"):
        client_context(material.client, ca_from=CertSuite(cert=material.server.cert))
    with pytest.raises(ValueError, match="needs cert"):
        server_context(material.other_ca, require_client_cert=False)
    server_without_ca = CertSuite(cert=material.server.cert, key=material.server.key)
    with pytest.raises(ValueError, match="needs the suite's ca"):
        server_context(server_without_ca, require_client_cert=True)


@dataclass
class EchoServer:
    port: int
    peer_certs: list[dict]


@pytest.fixture
async def serve_tls() -> AsyncIterator:
    servers: list[asyncio.Server] = []

    async def start(context: ssl.SSLContext) -> EchoServer:
        echo = EchoServer(port=0, peer_certs=[])

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            echo.peer_certs.append(writer.get_extra_info("peercert"))
            try:
                writer.write(await reader.readline())
                await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
        servers.append(server)
        echo.port = server.sockets[0].getsockname()[1]
        return echo

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def exchange(port: int, context: ssl.SSLContext, hostname: str = "localhost") -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=hostname
    )
    try:
        writer.write(b"hello\n")
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


async def test_mutual_tls_handshake(material: Material, serve_tls) -> None:
    server = await serve_tls(server_context(material.server, require_client_cert=True))

    assert await exchange(server.port, client_context(material.client)) == b"hello\n"
    [peer_cert] = server.peer_certs
    assert ("DNS", "client.example") in peer_cert["subjectAltName"]


async def test_ca_from_another_suite(material: Material, serve_tls) -> None:
    server = await serve_tls(server_context(material.server, require_client_cert=True))
    client_without_ca = CertSuite(cert=material.client.cert, key=material.client.key)
    context = client_context(client_without_ca, ca_from=material.server)

    assert await exchange(server.port, context) == b"hello\n"


async def test_wrong_ca_fails_the_handshake(material: Material, serve_tls) -> None:
    server = await serve_tls(server_context(material.server, require_client_cert=False))

    with pytest.raises(ssl.SSLCertVerificationError):
        await exchange(server.port, client_context(material.other_ca))
    with pytest.raises(ssl.SSLCertVerificationError):
        await exchange(server.port, client_context(material.client, ca_from=material.other_ca))


async def test_server_requires_a_client_certificate(material: Material, serve_tls) -> None:
    server = await serve_tls(server_context(material.server, require_client_cert=True))
    client_without_cert = CertSuite(ca=material.client.ca)

    try:
        reply = await exchange(server.port, client_context(client_without_cert))
    except (ssl.SSLError, ConnectionResetError):
        reply = b""
    assert reply == b""
    assert server.peer_certs == []


async def test_hostname_check_can_be_turned_off(material: Material, serve_tls) -> None:
    server = await serve_tls(server_context(material.server, require_client_cert=False))

    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await exchange(server.port, client_context(material.client), "gateway.example")
    context = client_context(material.client, check_hostname=False)
    assert await exchange(server.port, context, "gateway.example") == b"hello\n"


async def test_verification_can_be_turned_off(material: Material, serve_tls) -> None:
    server = await serve_tls(server_context(material.server, require_client_cert=False))

    context = client_context(material.other_ca, verify=False)
    assert context.verify_mode == ssl.CERT_NONE
    assert await exchange(server.port, context) == b"hello\n"
