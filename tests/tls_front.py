"""Google's HTTPS endpoints, offline: an HTTPS proxy (``HTTPS_PROXY``) that answers CONNECT for
any host with a certificate of a local CA (``REQUESTS_CA_BUNDLE``) and hands the decrypted
request to an emulator over plain HTTP. google-auth and requests then call, say,
``https://iamcredentials.googleapis.com/...`` exactly as in production, and the emulator
answers."""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def _certificates(folder: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) PEM files for ``hosts``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runback test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class TlsFront:
    """``with TlsFront(folder, hosts, "127.0.0.1:PORT") as front:`` ``front.env()`` holds
    HTTPS_PROXY and REQUESTS_CA_BUNDLE."""

    def __init__(self, folder: Path, hosts: list[str], backend: str) -> None:
        self.ca, cert, key = _certificates(folder, hosts)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        host, port = backend.rsplit(":", 1)
        self._backend = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()

    def env(self) -> dict[str, str]:
        return {"HTTPS_PROXY": f"http://127.0.0.1:{self.port}", "REQUESTS_CA_BUNDLE": str(self.ca)}

    def __enter__(self) -> TlsFront:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            if not head.startswith(b"CONNECT "):
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            try:
                secure = self._context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                return
            with secure, socket.create_connection(self._backend) as backend:
                _pipe(secure, backend)


def _pipe(secure: ssl.SSLSocket, backend: socket.socket) -> None:
    """Both ways until either side closes."""

    def upstream() -> None:
        try:
            while data := secure.recv(65536):
                backend.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                backend.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=upstream, daemon=True)
    thread.start()
    try:
        while data := backend.recv(65536):
            secure.sendall(data)
    except OSError:
        pass
    thread.join(timeout=5)
