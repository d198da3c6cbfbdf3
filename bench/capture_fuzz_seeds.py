"""Record real SIP traffic of sipp and PJSIP to the service, as seeds for the request-path fuzzer.

Run: .venv/bin/python bench/capture_fuzz_seeds.py [--out tests/data/fuzz-seeds]
It starts the service (IVR flow, embedded PostgreSQL, loopback), adds a volunteer, then lets
real peers talk to it: sipp (OPTIONS, digest REGISTER, a trunk call with SDP, a CANCELled call)
and two PJSIP handsets (a volunteer registering and dialling the *1/*2/*0 feature codes with
digest, a caller on the trunk who sends keys as SIP INFO and hangs up). Every datagram the service
receives is written as it arrived, one file each, named <peer>-<nn>-<first line summary>.sip.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbx import event_loop  # noqa: E402
from pbx.db.embedded import start_embedded  # noqa: E402
from pbx.sip.transport import SipTransports  # noqa: E402
from tests.helpers.pg_state import pg_state_dir  # noqa: E402
from tests.helpers.ports import free_port  # noqa: E402
from tests.helpers.service import running_service  # noqa: E402
from tests.peers.pjsua_phone import AsyncPjsuaPhone  # noqa: E402
from tests.peers.sipp import run_sipp_async  # noqa: E402

PASSWORD = "seed-pass-word1"


class Recorder:
    """Keeps every datagram the service's UDP transport receives, tagged with the peer in use."""

    def __init__(self, transports: SipTransports) -> None:
        self.peer = "none"
        self.seen: list[tuple[str, bytes]] = []
        udp: Any = transports._udp  # the capture tool looks inside; the service never does
        original = udp.datagram_received

        def tap(data: bytes, addr: tuple[Any, ...]) -> None:
            if data.strip(b"\r\n\x00"):
                self.seen.append((self.peer, data))
            original(data, addr)

        udp.datagram_received = tap


def name_for(peer: str, index: int, data: bytes) -> str:
    first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    if first.startswith("SIP/2.0"):
        summary = "response-" + first.split()[1]
    else:
        summary = first.split()[0].lower()
    if re.search(rb"^(Proxy-)?Authorization:", data, re.M | re.I):
        summary += "-auth"
    if b"\r\n\r\nv=0" in data:
        summary += "-sdp"
    return f"{peer}-{index:02d}-{summary}.sip"


async def capture(out: Path) -> None:
    seen: list[tuple[str, bytes]] = []
    with pg_state_dir() as pg_dir:
        server = start_embedded(pg_dir)
        try:
            for flow, drive in (("ivr", drive_ivr), ("direct", drive_direct)):
                async with running_service(
                    pg_dir / f"state-{flow}", server.url, call_flow=flow,
                    digest_algorithms=["MD5"], volunteer_whisper="",
                ) as helpline:  # fmt: skip
                    await helpline.add_volunteer(f"seed{flow}", PASSWORD, languages=["nl"])
                    rec = Recorder(helpline.service.stack.transports)
                    await drive(helpline.host, helpline.port, helpline.target, rec)
                    await asyncio.sleep(1.0)
                    seen += rec.seen
        finally:
            server.stop()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.sip"):
        old.unlink()
    for index, (peer, data) in enumerate(seen):
        (out / name_for(peer, index, data)).write_bytes(data)
    print(f"{len(seen)} datagrams written to {out}")


async def drive_ivr(host: str, port: int, target: str, rec: Recorder) -> None:
    """The default flow: OPTIONS, digest REGISTER, a trunk call with SDP, feature codes, INFO."""
    rec.peer = "sipp"
    (await run_sipp_async("uac_options", target, service="09000767")).assert_ok()
    (
        await run_sipp_async(
            "uac_register_digest", target, keys={"user": "seedivr", "password": PASSWORD},
            pause_ms=200,
        )
    ).assert_ok()  # fmt: skip
    (await run_sipp_async("uac_call", target, service="09000767", pause_ms=1500)).assert_ok()
    rec.peer = "pjsip"
    async with AsyncPjsuaPhone("seedivr") as volunteer, AsyncPjsuaPhone("caller") as caller:
        await volunteer.start(free_port())
        assert await volunteer.register(host, port, "seedivr", PASSWORD) == 200
        for code in ("*1", "*2", "*0"):
            assert await volunteer.make_call(f"sip:{code}@{host}:{port}") == 200
            await volunteer.wait_disconnected(timeout=20)
        await caller.start(free_port())
        assert await caller.make_call(f"sip:09000767@{host}:{port}") == 200
        await caller.send_dtmf("1", "sip_info")
        await caller.sleep(0.5)
        await caller.hangup()
        await volunteer.unregister()


async def drive_direct(host: str, port: int, target: str, rec: Recorder) -> None:
    """Ringing a volunteer's handset: a trunk caller who CANCELs while it rings."""
    rec.peer = "pjsip"
    async with AsyncPjsuaPhone("seeddirect") as volunteer:
        await volunteer.start(free_port())
        assert await volunteer.register(host, port, "seeddirect", PASSWORD) == 200
        rec.peer = "sipp"
        cancel = run_sipp_async("uac_cancel", target, service="09000767", keys={"ring_ms": "500"})
        (await cancel).assert_ok()
        rec.peer = "pjsip"
        await volunteer.unregister()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parent.parent / "tests" / "data" / "fuzz-seeds"
    parser.add_argument("--out", type=Path, default=default)
    args = parser.parse_args()
    event_loop.run(capture(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
