"""A connected call between two RawHandsets through the service: caller (trunk) and volunteer."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import Running

SDP = (
    "v=0\no=- 1 {version} IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=audio {port} RTP/AVP 8 0 101\na=rtpmap:8 PCMA/8000\na=rtpmap:0 PCMU/8000\n"
    "a=rtpmap:101 telephone-event/8000\na={direction}\n"
)


def sdp(port: int, direction: str = "sendrecv", version: int = 1) -> str:
    return SDP.format(port=port, direction=direction, version=version)


def headers_of(message: str) -> dict[str, str]:
    return {
        line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip()
        for line in message.split("\r\n\r\n")[0].split("\r\n")[1:]
        if ":" in line
    }


def body_length(body: str) -> int:
    return len(body.replace("\n", "\r\n"))


@dataclass
class RawDialog:
    """One side's view of its dialog with the service, enough to send in-dialog requests."""

    handset: RawHandset
    target: tuple[str, int]
    request_uri: str
    local: str  # our From (with tag)
    remote: str  # our To (with the service's tag)
    call_id: str
    cseq: int
    service_sdp: str = ""  # the SDP the service sent this side (its RTP port for the leg)

    @property
    def service_rtp(self) -> tuple[str, int]:
        """Where this side's RTP goes: the service's address and port from its SDP."""
        host = re.search(r"c=IN IP4 (\S+)", self.service_sdp)
        port = re.search(r"m=audio (\d+)", self.service_sdp)
        assert host is not None and port is not None, self.service_sdp
        return host.group(1), int(port.group(1))

    def request(self, method: str, body: str = "", content_type: str = "application/sdp") -> None:
        self.cseq += 1
        extra = f"Content-Type: {content_type}\n" if body else ""
        self.handset.send(
            f"{method} {self.request_uri} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {self.handset.host}:{self.handset.port};"
            f"branch=z9hG4bK{method.lower()}{self.cseq};rport\n"
            f"From: {self.local}\nTo: {self.remote}\nCall-ID: {self.call_id}\n"
            f"CSeq: {self.cseq} {method}\nMax-Forwards: 70\n"
            f"Contact: <sip:h@{self.handset.host}:{self.handset.port}>\n"
            f"{extra}Content-Length: {body_length(body)}\n\n{body}",
            self.target,
        )

    def ack(self) -> None:
        self.handset.send(
            f"ACK {self.request_uri} SIP/2.0\n"
            f"Via: SIP/2.0/UDP {self.handset.host}:{self.handset.port};"
            f"branch=z9hG4bKack{self.cseq};rport\n"
            f"From: {self.local}\nTo: {self.remote}\nCall-ID: {self.call_id}\n"
            f"CSeq: {self.cseq} ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
            self.target,
        )


async def connect(
    helpline: Running,
    caller: RawHandset,
    volunteer: RawHandset,
    username: str,
    password: str,
    volunteer_sdp: str | None = None,
    caller_sdp: str | None = None,
) -> tuple[RawDialog, RawDialog]:
    """Register the volunteer, call in from the caller, answer, ACK: both dialogs."""
    target = (helpline.host, helpline.port)
    final = await asyncio.to_thread(
        volunteer.register, target, username, password, contact_port=volunteer.port
    )
    assert final.startswith("SIP/2.0 200"), final
    offer = caller_sdp if caller_sdp is not None else sdp(41010)
    caller.send(
        f"INVITE sip:09000767@{helpline.host}:{helpline.port} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {caller.host}:{caller.port};branch=z9hG4bKinv1;rport\n"
        f"From: <sip:anonymous@{caller.host}>;tag=caller1\nTo: <sip:09000767@{helpline.host}>\n"
        f"Call-ID: dialog-test@{caller.host}\nCSeq: 1 INVITE\n"
        f"Contact: <sip:c@{caller.host}:{caller.port}>\nMax-Forwards: 70\n"
        f"Content-Type: application/sdp\nContent-Length: {body_length(offer)}\n\n{offer}",
        target,
    )
    invite = await asyncio.to_thread(volunteer.recv_until, "INVITE", 5)
    answer = volunteer_sdp if volunteer_sdp is not None else sdp(42010)
    await asyncio.to_thread(volunteer.answer, invite, "200 OK", target, answer)
    vol_ack = await asyncio.to_thread(volunteer.recv_until, "ACK", 5)
    ok = await asyncio.to_thread(caller.recv_until, "SIP/2.0 200", 10)
    h = headers_of(ok)
    caller_dialog = RawDialog(
        caller, target, h["contact"].strip("<>"), h["from"], h["to"], h["call-id"], 1,
        ok.split("\r\n\r\n", 1)[1],
    )  # fmt: skip
    caller_dialog.ack()
    iv = headers_of(invite)
    volunteer_dialog = RawDialog(
        volunteer, target, iv["contact"].strip("<>"), f"{iv['to']};tag=handset", iv["from"],
        iv["call-id"], 0, invite.split("\r\n\r\n", 1)[1],
    )  # fmt: skip
    assert vol_ack.startswith("ACK ")
    return caller_dialog, volunteer_dialog
