"""A bare UDP handset for tests that need to control every byte (NAT, retransmissions).

Digest responses are computed here from RFC 7616's formulas with hashlib, independently of the
service's own digest code.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import socket


class RawHandset:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(5)
        self.host, self.port = self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()

    def send(self, text: str, target: tuple[str, int]) -> None:
        self.sock.sendto(text.replace("\n", "\r\n").encode(), target)

    def recv(self, timeout: float = 5) -> str:
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65535)
        return data.decode("utf-8", "replace")

    def recv_until(self, predicate: str, timeout: float = 5) -> str:
        """The next message whose first line contains `predicate` (others are skipped)."""
        while True:
            msg = self.recv(timeout)
            if predicate in msg.split("\r\n", 1)[0]:
                return msg

    def register(
        self,
        target: tuple[str, int],
        user: str,
        password: str,
        *,
        contact_port: int,
        expires: int = 300,
        realm: str = "helpline",
        extra: str = "",
    ) -> str:
        """REGISTER (MD5 digest) with a Contact that names `contact_port`; final response.
        `extra`: more header lines ("Name: value\\n")."""
        call_id = secrets.token_hex(8)
        base = (
            f"REGISTER sip:{target[0]}:{target[1]} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {self.host}:{contact_port};branch=z9hG4bK{{branch}};rport\n"
            f"From: <sip:{user}@{target[0]}>;tag=raw1\nTo: <sip:{user}@{target[0]}>\n"
            f"Call-ID: {call_id}\nCSeq: {{cseq}} REGISTER\n"
            f"Contact: <sip:{user}@{self.host}:{contact_port}>\nExpires: {expires}\n{extra}"
            "Max-Forwards: 70\n{auth}Content-Length: 0\n\n"
        )
        self.send(base.format(branch=secrets.token_hex(6), cseq=1, auth=""), target)
        challenge = self.recv_until("401")
        md5 = next(
            line for line in challenge.split("\r\n")
            if line.startswith("WWW-Authenticate") and "MD5" in line
        )  # fmt: skip
        nonce = re.search(r'nonce="([^"]+)"', md5).group(1)  # type: ignore[union-attr]
        uri = f"sip:{target[0]}:{target[1]}"
        ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        cnonce, nc = "0a4f113b", "00000001"
        resp = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
        auth = (
            f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", '
            f'uri="{uri}", response="{resp}", algorithm=MD5, qop=auth, nc={nc}, '
            f'cnonce="{cnonce}"\n'
        )
        self.send(base.format(branch=secrets.token_hex(6), cseq=2, auth=auth), target)
        return self.recv_until("SIP/2.0 ")

    def answer(self, request: str, status: str, target: tuple[str, int], body: str = "") -> None:
        """Send a response to `request` (copies Via/From/To/Call-ID/CSeq, adds a To tag)."""
        keep = [
            line for line in request.split("\r\n")
            if line.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")
        ]  # fmt: skip
        keep = [f"{line};tag=handset" if line.lower().startswith("to:") else line for line in keep]
        headers = "\n".join(keep)
        ctype = "Content-Type: application/sdp\n" if body else ""
        self.send(
            f"SIP/2.0 {status}\n{headers}\nContact: <sip:h@{self.host}:{self.port}>\n{ctype}"
            f"Content-Length: {len(body.replace(chr(10), chr(13) + chr(10)))}\n\n{body}",
            target,
        )
