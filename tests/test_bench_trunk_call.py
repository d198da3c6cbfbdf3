"""The benches' trunk (bench/sipp_trunk_call.xml, sipp) holds each call for the hold it is given
and ignores a 180 that arrives after the 200, as a carrier's trunk does (RFC 3261: a provisional
response after the final one has no transaction left to go to).

The sippy B2BUA relays the volunteer's 180 after its 200 at times; with a bare pause sipp failed
that call as an unexpected message, and one such call voided a run of ``bench/compare.py``. The
far side here is a small UAS that answers the way sippy did then: 180, 200, and once the ACK is
in, the 180 again.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from tests.helpers.ports import free_port
from tests.peers.sipp import SippResult, run_sipp

SCENARIO = Path(__file__).resolve().parents[1] / "bench" / "sipp_trunk_call.xml"
UAS_IP = "127.0.0.2"
SDP = (
    "v=0\r\no=uas 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class LateRingingUas:
    """Answers each INVITE with 180 and 200; with ``late_ringing``, sends the 180 again once the
    ACK has come. Records when each call's ACK and BYE arrived."""

    def __init__(self, *, late_ringing: bool) -> None:
        self.late_ringing = late_ringing
        self.port = free_port(UAS_IP)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((UAS_IP, self.port))
        self.sock.settimeout(0.2)
        self.acked: dict[str, float] = {}
        self.byes: dict[str, float] = {}
        self._invites: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LateRingingUas:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode()
            method, call_id = text.split(" ", 1)[0], _header(text, "Call-ID")
            if method == "INVITE" and call_id not in self._invites:
                self._invites[call_id] = text
                self.sock.sendto(_response(text, "180 Ringing"), peer)
                self.sock.sendto(_response(text, "200 OK", SDP), peer)
            elif method == "ACK" and call_id not in self.acked:  # sipp acks the late 180 again
                self.acked[call_id] = time.monotonic()
                if self.late_ringing:
                    self.sock.sendto(_response(self._invites[call_id], "180 Ringing"), peer)
            elif method == "BYE":
                self.byes.setdefault(call_id, time.monotonic())
                self.sock.sendto(_response(text, "200 OK"), peer)


def _header(message: str, name: str) -> str:
    for line in message.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    raise AssertionError(f"no {name} in {message!r}")


def _response(request: str, status: str, body: str = "") -> bytes:
    to = _header(request, "To")
    lines = [f"SIP/2.0 {status}"]
    lines += [f"{name}: {_header(request, name)}" for name in ("Via", "From", "Call-ID", "CSeq")]
    lines.append(f"To: {to}" if ";tag=" in to else f"To: {to};tag=uas")
    lines += [f"Contact: <sip:volunteer@{UAS_IP}>", f"Content-Length: {len(body)}"]
    if body:
        lines.insert(-1, "Content-Type: application/sdp")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _run(uas: LateRingingUas, hold_ms: int, calls: int = 3) -> SippResult:
    return run_sipp(
        SCENARIO,
        f"{UAS_IP}:{uas.port}",
        calls=calls,
        rate=10,
        service="09000767",
        keys={"hold_ms": str(hold_ms), "caller": "0201234567", "caller_display": "Anonymous"},
        timeout_s=20,
    )


def test_a_180_after_the_200_is_ignored_and_the_call_completes() -> None:
    with LateRingingUas(late_ringing=True) as uas:
        result = _run(uas, hold_ms=300)
    result.assert_ok()
    assert len(uas.byes) == 3, result.describe()
    assert result.stat("FailedUnexpectedMessage") == 0
    # Every call saw its late 180 (the hold then started again) and still hung up after it.
    assert len(result.received("SIP/2.0 180")) == 6
    for call_id, acked in uas.acked.items():
        assert uas.byes[call_id] - acked >= 0.3


def test_the_hold_lasts_hold_ms_from_the_ack() -> None:
    with LateRingingUas(late_ringing=False) as uas:
        result = _run(uas, hold_ms=600, calls=2)
    result.assert_ok()
    assert len(uas.byes) == 2
    holds = [uas.byes[call_id] - acked for call_id, acked in uas.acked.items()]
    assert all(hold >= 0.6 for hold in holds), holds
