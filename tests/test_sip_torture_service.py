"""RFC 4475 torture messages sent to the running service over UDP from the trusted trunk
(REGISTERs from a handset's address: the trunk's are refused before the registrar sees them).

Each message's top Via is pointed at the probe socket (with rport), so that the answers RFC 3261
section 18.2.2 routes by Via come back to the test; nothing else in the message is changed.
Afterwards the service still answers OPTIONS.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest

from tests.helpers.service import HANDSET_HOST, TRUNK_HOST, Running
from tests.peers.sipp import run_sipp_async

TORTURE = Path(__file__).parent / "data" / "sip-torture"

# file -> the status line prefix the service answers with; None: no answer (responses, or
# requests too broken to answer). INVITEs from the trunk become calls: with no volunteer
# registered they end in 480, or in 488 when their SDP offers no G.711 codec.
EXPECTED: dict[str, str | None] = {
    "badaspec.dat": "400 Bad Request - Whitespace inside <URI>",
    "badbranch.dat": "200",
    "baddate.dat": "488",
    "baddn.dat": "400 Bad Request - Non-token characters in display name",
    "badinv01.dat": "400 Bad Request - Empty parameter in Via",
    "badvers.dat": "505",
    "bcast.dat": None,  # a response: dropped
    "bext01.dat": "420",
    "bigcode.dat": None,
    "clerr.dat": "400 Bad Request - Content-Length larger than message",
    "cparam01.dat": "401",
    "cparam02.dat": "401",
    "dblreq.dat": "401",
    "esc01.dat": "488",
    "esc02.dat": "501",
    "escnull.dat": "401",
    "escruri.dat": "400 Bad Request - Headers in Request-URI",
    "insuf.dat": None,  # no From/To/Call-ID: nothing to build an answer from
    "intmeth.dat": "501",
    "inv2543.dat": "480",
    "invut.dat": "415",
    "longreq.dat": "488",
    "ltgtruri.dat": "400 Bad Request - Request-URI enclosed in <>",
    "lwsdisp.dat": "200",
    "lwsruri.dat": "400 Bad Request - Malformed Request-Line",
    "lwsstart.dat": "400 Bad Request - Malformed Request-Line",
    "mcl01.dat": "400 Bad Request - Conflicting Content-Length",
    "mismatch01.dat": "400 Bad Request - CSeq method does not match Request-Line",
    "mismatch02.dat": "501",
    "mpart01.dat": "405",
    "multi01.dat": "400 Bad Request - Multiple From headers",
    "ncl.dat": "400 Bad Request - Invalid Content-Length",
    "noreason.dat": None,
    "novelsc.dat": "416",
    "quotbal.dat": "400 Bad Request - Unterminated quoted string",
    "regaut01.dat": "401",
    "regbadct.dat": "400 Bad Request - URI with headers must be enclosed in <>",
    "regescrt.dat": "401",
    "scalar02.dat": "400 Bad Request - CSeq out of range",
    "scalarlg.dat": None,
    "sdp01.dat": "406",
    "semiuri.dat": "200",
    "transports.dat": "200",
    "trws.dat": "400 Bad Request - Malformed Request-Line",
    "unkscm.dat": "416",
    "unksm2.dat": "401",
    "unreason.dat": None,
    "wsinv.dat": "481",  # it carries a To tag: a request in a dialog we do not know
    "zeromf.dat": "200",
}

_VIA = re.compile(rb"^(Via|v)(\s*:\s*SIP\s*/\s*2\.0\s*/\s*)(\S+)(\s+)([^;\r\n]+)", re.I | re.M)


def aimed_at(data: bytes, host: str, port: int) -> bytes:
    """The message with its first Via's sent-by replaced by the probe's address and rport."""
    return _VIA.sub(
        lambda m: (
            m.group(1) + m.group(2) + m.group(3) + m.group(4) + f"{host}:{port};rport".encode()
        ),
        data,
        count=1,
    )


async def _final_answer(data: bytes, service_port: int) -> str | None:
    loop = asyncio.get_running_loop()
    host = HANDSET_HOST if data.startswith(b"REGISTER") else TRUNK_HOST
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        probe.setblocking(False)
        # a plain sendto: uvloop has no loop.sock_sendto (one datagram never blocks here)
        probe.sendto(aimed_at(data, host, probe.getsockname()[1]), ("127.0.0.1", service_port))
        while True:
            try:
                reply = await asyncio.wait_for(loop.sock_recv(probe, 65535), 1.5)
            except TimeoutError:
                return None
            line = reply.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            if not line.startswith("SIP/2.0 1"):
                return line.removeprefix("SIP/2.0 ")


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_torture_message_handled(helpline: Running, name: str) -> None:
    answer = await _final_answer((TORTURE / name).read_bytes(), helpline.port)
    expected = EXPECTED[name]
    if expected is None:
        assert answer is None, answer
    else:
        assert answer is not None and answer.startswith(expected), answer
    (await run_sipp_async("uac_options", helpline.target, timeout_s=10)).assert_ok()


def test_every_torture_file_has_an_expectation() -> None:
    files = {p.name for p in TORTURE.glob("*.dat")} - {"test.dat"}  # test.dat is not RFC 4475
    assert files == set(EXPECTED)
