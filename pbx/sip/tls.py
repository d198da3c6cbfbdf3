"""TLS for SIP (port 5061): PEM files from the settings, or a self-signed pair for local use.

The certificate and key are read by path and reloaded when the files change (a renewal): new
handshakes get the new pair, connections already up (calls, registrations) keep theirs. Outbound
connections verify the peer's certificate against a configured CA bundle when one is set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pbx.private_files import private_dir, write_private

log = structlog.get_logger("pbx.sip.tls")


def ensure_self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Create (once) a self-signed certificate and key for `host` under `directory`."""
    cert_path, key_path = directory / "sip-selfsigned.pem", directory / "sip-selfsigned.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    private_dir(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([san, x509.DNSName("localhost")]), False)
        .sign(key, hashes.SHA256())
    )
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """For the TLS connections we open. With ``ca_file`` (PEM bundle) the peer's certificate must
    chain to it and name the address or host we connect to, or the connection is refused.
    Without it nothing is verified: handsets present self-signed certificates more often than
    not, and SIP digest already authenticates them; TLS then only protects against listening."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


_Stamp = tuple[int, int, int, int]


class CertificateFiles:
    """The server's certificate and key, by path, in one live SSLContext that follows the files:
    ``check`` (or ``watch``) loads a changed pair into it once the pair is valid together."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.context = server_context(cert, key)
        self.reloads = 0
        self._stamp = self._stat()

    def _stat(self) -> _Stamp | None:
        try:
            c, k = self.cert.stat(), self.key.stat()
        except OSError:
            return None
        return (c.st_mtime_ns, c.st_size, k.st_mtime_ns, k.st_size)

    def check(self) -> bool:
        """Reload if the files changed; True when the new pair is in use."""
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            server_context(self.cert, self.key)  # the pair first, so half a renewal is never used
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            # keep serving the pair in use; the next change of the files is tried again
            log.warning("tls_certificate_reload_failed", error=type(exc).__name__, why=str(exc))
            return False
        self.reloads += 1
        log.info("tls_certificate_reloaded", cert=str(self.cert))
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()
