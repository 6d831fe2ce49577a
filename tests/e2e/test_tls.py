"""The official Python SDK client over HTTPS: drawbridge's MCP listener with `tls:`.

A test CA (made here with `cryptography`) issues the listener's certificate; the client
trusts that CA only. Over HTTP/1.1 and over HTTP/2 (negotiated by ALPN, httpx2 with
`h2`), the SDK initializes, lists the everything server's tools, calls `echo`, runs a
streamed tool whose progress must arrive before its result, and closes the session
(DELETE). Every response the client received is checked for the HTTP version it came
over, and the echo text proves the upstream executed the call.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import LOOPBACK, free_port, start_drawbridge, stop_peer
from test_everything import STREAMING_TOOL, mcp_session, run, text_of


@dataclass(frozen=True)
class TlsGateway:
    url: str
    ca_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_test_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for 127.0.0.1 and localhost: (ca.pem, tls.crt, tls.key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("drawbridge e2e CA"))
        .issuer_name(_name("drawbridge e2e CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "tls.crt", directory / "tls.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


@pytest.fixture(scope="module")
def tls_gateway(everything_server, peer_log_dir) -> Iterator[TlsGateway]:
    """drawbridge with `tls:` and a public route to the everything server."""
    pki = peer_log_dir / "tls-pki"
    pki.mkdir(exist_ok=True)
    ca_file, cert_file, key_file = write_test_pki(pki)
    listen_port, admin_port = free_port(), free_port()
    base = f"https://{LOOPBACK}:{listen_port}"
    config = f"""\
listen: {LOOPBACK}:{listen_port}
admin:
  listen: {LOOPBACK}:{admin_port}
tls:
  cert_file: {cert_file}
  key_file: {key_file}
routes:
  - name: everything
    match: {{ path: /everything/mcp }}
    public_url: {base}/everything/mcp
    upstream:
      url: {everything_server}
"""
    proc = start_drawbridge("drawbridge-tls", config, peer_log_dir, f"http://{LOOPBACK}:{admin_port}")
    try:
        yield TlsGateway(url=f"{base}/everything/mcp", ca_file=ca_file)
    finally:
        stop_peer(proc)


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
def test_the_python_sdk_works_over_https(tls_gateway, http2):
    responses: list[tuple[str, str, int]] = []  # (method, http version, status)
    progress: list[float] = []

    async def record(response: httpx2.Response) -> None:
        responses.append((response.request.method, response.http_version, response.status_code))

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(time.monotonic())

    async def scenario():
        trust = ssl.create_default_context(cafile=str(tls_gateway.ca_file))
        async with httpx2.AsyncClient(verify=trust, http2=http2,
                                      event_hooks={"response": [record]}) as client:
            async with mcp_session(tls_gateway.url, http_client=client) as session:
                tools = {tool.name for tool in (await session.list_tools()).tools}
                assert {"echo", STREAMING_TOOL} <= tools
                echoed = await session.call_tool("echo", {"message": "over TLS ✓"})
                streamed = await session.call_tool(
                    STREAMING_TOOL, {"duration": 1.0, "steps": 2}, progress_callback=on_progress)
                return echoed, streamed, time.monotonic()

    echoed, streamed, finished = run(scenario)
    assert text_of(echoed) == "Echo: over TLS ✓"
    assert "Long running operation completed" in text_of(streamed)
    assert progress and progress[0] < finished, progress
    want = "HTTP/2" if http2 else "HTTP/1.1"
    assert responses and {version for _, version, _ in responses} == {want}, responses
    methods = {method for method, _, _ in responses}
    assert {"POST", "DELETE"} <= methods, responses
    deletes = [status for method, _, status in responses if method == "DELETE"]
    assert all(status in (200, 204) for status in deletes), responses


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_gateway):
    async def scenario():
        async with httpx2.AsyncClient(verify=ssl.create_default_context()) as client:
            await client.post(tls_gateway.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})

    with pytest.raises(httpx2.ConnectError):
        run(scenario)
