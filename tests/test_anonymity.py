"""Anonymity by construction: a caller's number never reaches a volunteer, a log line, a metric,
the database or a file, however many places the carrier puts it in."""

from __future__ import annotations

import asyncio
import io
import urllib.request
from pathlib import Path

import asyncpg

from pbx.logs import configure_logging
from tests.helpers.caller_number import DIGITS, INVITE, headers_by_name
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, MakeHelpline, free_port
from tests.helpers.sip_texts import SDP


async def test_caller_number_leaves_no_trace(make_helpline: MakeHelpline) -> None:
    logs = io.StringIO()
    configure_logging("debug", "json", stream=logs)
    metrics_port = free_port()
    try:
        async with make_helpline(
            digest_algorithms=["MD5"], metrics_port=metrics_port, metrics_host="127.0.0.1"
        ) as helpline:
            await helpline.add_volunteer("nina", "pass-word-yz1")
            volunteer, caller = RawHandset(HANDSET_HOST), RawHandset()
            target = (helpline.host, helpline.port)
            try:
                final = await asyncio.to_thread(
                    volunteer.register, target, "nina", "pass-word-yz1", contact_port=volunteer.port
                )
                assert final.startswith("SIP/2.0 200")
                sdp = SDP.format(port=41004).replace("\n", "\r\n")
                invite = INVITE.format(
                    host=helpline.host, port=helpline.port, me=caller.host, myport=caller.port,
                    length=len(sdp), sdp=sdp.replace("\r\n", "\n"),
                )  # fmt: skip
                caller.send(invite, target)
                ringing = await asyncio.to_thread(volunteer.recv_until, "INVITE", 5)
                assert DIGITS not in ringing  # the volunteer's handset sees nothing of the caller
                await asyncio.to_thread(
                    volunteer.answer, ringing, "200 OK", target, SDP.format(port=42004)
                )
                ok = await asyncio.to_thread(caller.recv_until, "SIP/2.0 200", 5)
                h = headers_by_name(ok)
                dialog = (
                    f"Via: SIP/2.0/UDP {caller.host}:{caller.port};branch=z9hG4bK{{b}};rport\n"
                    f"From: {h['from']}\nTo: {h['to']}\nCall-ID: {h['call-id']}\n"
                )
                contact = h["contact"].strip("<>")
                caller.send(
                    f"ACK {contact} SIP/2.0\n{dialog.format(b='a1')}CSeq: 1 ACK\n"
                    "Max-Forwards: 70\nContent-Length: 0\n\n",
                    target,
                )
                caller.send(
                    f"BYE {contact} SIP/2.0\n{dialog.format(b='b1')}CSeq: 2 BYE\n"
                    "Max-Forwards: 70\nContent-Length: 0\n\n",
                    target,
                )
                bye = await asyncio.to_thread(volunteer.recv_until, "BYE", 5)
                assert DIGITS not in bye
            finally:
                volunteer.close()
                caller.close()
            await asyncio.sleep(0.3)
            scrape = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read()
            )
            metrics = scrape.decode()
            assert 'helpline_calls_total{outcome="answered"} 1.0' in metrics
            service = helpline.service
            assert service.writer is not None and await service.writer.flush(10)
            assert service.db is not None
            conn = await asyncpg.connect(service.db.url)
            try:
                tables = [
                    r["tablename"]
                    for r in await conn.fetch(
                        "select tablename from pg_tables where schemaname='public'"
                    )
                ]
                dump = "".join(
                    [str(await conn.fetch(f'select * from "{table}"')) for table in tables]
                )
            finally:
                await conn.close()
            state = helpline.settings.state_dir
    finally:
        configure_logging("warning", "console")
    log_text = logs.getvalue()
    assert '"event": "inbound_call"' in log_text and '"event": "call_connected"' in log_text
    assert DIGITS not in log_text
    assert DIGITS not in metrics
    assert "registrations" in tables and DIGITS not in dump
    files = [p for p in Path(state).rglob("*") if p.is_file() and "pg" not in p.parts]
    assert files  # the journal, the credential snapshot, the TLS pair
    for path in files:
        assert DIGITS.encode() not in path.read_bytes(), path
