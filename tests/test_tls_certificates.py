"""TLS certificates: outbound connections verify the peer against the configured CA bundle, and
the service's own certificate is reloaded from its files on renewal without dropping anything.

The far ends are real TLS endpoints on loopback: a minimal SIP responder over TLS (Python's ssl,
answering 200 to whatever arrives) standing for a handset or trunk, and plain TLS clients.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
from pathlib import Path

from cryptography import x509

from pbx.sip.dialog import new_call_id, new_tag
from pbx.sip.headers import Headers
from pbx.sip.message import Request
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.uri import SipUri
from tests.helpers.certificates import CertAuthority, Pem, self_signed
from tests.helpers.logs import captured_logs, log_events
from tests.helpers.polling import until
from tests.helpers.service import HANDSET_HOST, MakeHelpline


class SipOverTls:
    """A TLS server on HANDSET_HOST answering every SIP request with 200 (a handset's stand-in)."""

    def __init__(self, pem: Pem) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pem.cert, pem.key)
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> SipOverTls:
        self.server = await asyncio.start_server(self._serve, HANDSET_HOST, 0, ssl=self.ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.requests.append(head)
                lines = head.decode().split("\r\n")
                keep = [
                    ln for ln in lines[1:] if ln.split(":")[0] in ("Via", "From", "Call-ID", "CSeq")
                ]
                to = next(ln for ln in lines if ln.startswith("To:"))
                answer = "\r\n".join(["SIP/2.0 200 OK", *keep, f"{to};tag=t1", "Content-Length: 0"])
                writer.write(answer.encode() + b"\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def options(host: str, port: int, public_host: str) -> Request:
    uri = SipUri(host=host, port=port, user="vera", params={"transport": "tls"})
    headers = Headers()
    headers.add("Max-Forwards", "70")
    headers.add("From", f"<sip:keepalive@{public_host}>;tag={new_tag()}")
    headers.add("To", f"<{uri}>")
    headers.add("Call-ID", new_call_id(public_host))
    headers.add("CSeq", "1 OPTIONS")
    return Request("OPTIONS", uri, headers)


async def test_outbound_tls_refuses_a_peer_the_ca_bundle_does_not_vouch_for(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    ca = CertAuthority(tmp_path / "pki")
    trusted = ca.issue(HANDSET_HOST, "handset")
    unknown = self_signed(tmp_path / "other", HANDSET_HOST, "impostor")
    async with captured_logs() as logs, make_helpline(tls_ca_file=ca.pem.cert) as helpline:
        stack = helpline.service.stack
        async with SipOverTls(unknown) as impostor:
            peer = Peer(TransportKind.TLS, HANDSET_HOST, impostor.port)
            request = options(HANDSET_HOST, impostor.port, stack.public_host)
            response = await asyncio.wait_for(stack.request(request, peer), 40)
            assert response.status != 200
            assert impostor.requests == []  # not one byte of SIP reached it
            refused = log_events(logs, "tls_peer_refused")
            assert refused and "self-signed" in refused[0]["why"], refused
        async with SipOverTls(trusted) as handset:
            peer = Peer(TransportKind.TLS, HANDSET_HOST, handset.port)
            request = options(HANDSET_HOST, handset.port, stack.public_host)
            response = await asyncio.wait_for(stack.request(request, peer), 10)
            assert response.status == 200
            assert handset.requests and handset.requests[0].startswith(b"OPTIONS ")


def presented(port: int) -> x509.Certificate:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


async def test_a_renewed_certificate_is_used_for_new_connections_and_old_ones_go_on(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    ca = CertAuthority(tmp_path / "pki")
    first, renewed = ca.issue("127.0.0.1", "first"), ca.issue("127.0.0.1", "renewed")
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "sip.pem", live / "sip.key"
    shutil.copy(first.cert, cert)
    shutil.copy(first.key, key)
    serial = {
        p: x509.load_pem_x509_certificate(p.cert.read_bytes()).serial_number
        for p in (first, renewed)
    }
    async with (
        captured_logs() as logs,
        make_helpline(tls_cert=cert, tls_key=key, tls_reload_interval=0.2) as helpline,
    ):
        port = helpline.service.stack.port(TransportKind.TLS)
        assert (await asyncio.to_thread(presented, port)).serial_number == serial[first]
        # a connection made before the renewal (a handset's registration) stays up through it
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ssl._create_unverified_context()
        )
        shutil.copy(renewed.key, key)
        shutil.copy(renewed.cert, cert)
        await until(lambda: bool(log_events(logs, "tls_certificate_reloaded")))
        assert (await asyncio.to_thread(presented, port)).serial_number == serial[renewed]
        request = options("127.0.0.1", port, "127.0.0.1")
        via = f"SIP/2.0/TLS {HANDSET_HOST}:5061;branch=z9hG4bK{new_tag()};rport"
        request.headers.add("Via", via)
        request.headers.add("Content-Length", "0")
        writer.write(request.to_bytes())
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"SIP/2.0 "), status  # the old connection still carries SIP
        writer.close()
