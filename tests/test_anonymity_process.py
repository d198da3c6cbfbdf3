"""Anonymity in what the real process prints: `helpline serve` runs as the README runs it (the
default IVR flow, JSON logs on stdout, at the most verbose log level), the carrier's call carries
the caller's number in every header it can, and neither the raw stdout nor the raw stderr of the
process holds any form of the number: not only the structured log lines (which are scrubbed as a
last defence) but anything else a process can print (tracebacks, warnings, library output)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.caller_number import DIGITS, INVITE, headers_by_name
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import free_port
from tests.helpers.sip_texts import SDP

HELPLINE = Path(sys.executable).with_name("helpline")
NUMBER = "0612345678"


def wait_for(path: Path, text: bytes, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in path.read_bytes():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"helpline exited {proc.returncode}: {path.read_bytes()[-3000:]!r}"
            )
        time.sleep(0.1)
    raise TimeoutError(f"{text!r} not printed within {timeout} s")


def request(method: str, target: tuple[str, int], me: RawHandset, extra: str = "") -> str:
    """A request that carries the number wherever a peer can put it."""
    return (
        f"{method} sip:{NUMBER}@{target[0]}:{target[1]} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {me.host}:{me.port};branch=z9hG4bK{NUMBER}{method};rport\n"
        f'From: "{NUMBER}" <sip:{NUMBER}@{me.host}>;tag={NUMBER}\n'
        f"To: <sip:{NUMBER}@{target[0]}>\nCall-ID: {NUMBER}-{method}@{me.host}\n"
        f"CSeq: 1 {method}\nContact: <sip:+31612345678@{me.host}:{me.port}>\n"
        f"P-Asserted-Identity: <tel:+31612345678>\nUser-Agent: Phone {NUMBER}\n"
        f"Max-Forwards: 70\n{extra}Content-Length: 0\n\n"
    )


@pytest.mark.timeout(120)
async def test_the_serving_process_never_prints_the_callers_number(
    tmp_path: Path, pg_url: str
) -> None:
    port, tls_port, metrics_port = free_port(), free_port(), free_port()
    rtp = 20000 + (free_port() % 400) * 100
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = {
        **os.environ,
        "HELPLINE_LOG_LEVEL": "debug",
        "HELPLINE_RTP_PORT_MIN": str(rtp),
        "HELPLINE_RTP_PORT_MAX": str(rtp + 98),
        "HELPLINE_WEB_PORT": "none",  # 8080 may be taken on this machine; not under test here
    }
    env.pop("HELPLINE_CALL_FLOW", None)  # the default flow: the IVR
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                str(HELPLINE), "serve", "--sip-host", "127.0.0.1", "--sip-port", str(port),
                "--tls-port", str(tls_port), "--metrics-port", str(metrics_port),
                "--state-dir", str(tmp_path / "state"), "--database-url", pg_url,
            ],
            stdout=stdout, stderr=stderr, env=env, cwd=Path(__file__).parent.parent,
        )  # fmt: skip
        try:
            await asyncio.to_thread(wait_for, out, b'"service_started"', 60, proc)
            await asyncio.to_thread(place_call_and_more, ("127.0.0.1", port))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 10)
    printed = out.read_bytes() + err.read_bytes()
    # the process did print what it saw: the call, the IVR, the refusals, its end
    for event in (b'"inbound_call"', b'"ivr_outcome"', b'"call_finished"', b'"service_stopped"'):
        assert event in printed, event
    assert proc.returncode == 0
    assert DIGITS.encode() not in printed
    assert b"31612345678" not in printed and b"612 345 678" not in printed


def place_call_and_more(target: tuple[str, int]) -> None:
    """The carrier's call (number in From, P-Asserted-Identity, Remote-Party-ID, Diversion, Contact,
    Call-ID, Via branch, User-Agent), the caller pressing 1, hanging up; and the same number in
    requests the service refuses (a REGISTER from a stranger, an unknown method, a bad header)."""
    caller, stranger = RawHandset(), RawHandset(host="127.0.0.2")
    try:
        sdp = SDP.format(port=41006)
        invite = INVITE.format(
            host=target[0], port=target[1], me=caller.host, myport=caller.port,
            length=len(sdp.replace("\n", "\r\n")), sdp=sdp,
        )  # fmt: skip
        caller.send(invite, target)
        ok = caller.recv_until("SIP/2.0 200", 10)  # the IVR answers at once
        h = headers_by_name(ok)
        contact = h["contact"].strip("<>")
        dialog = (
            f"Via: SIP/2.0/UDP {caller.host}:{caller.port};branch=z9hG4bK{{b}};rport\n"
            f"From: {h['from']}\nTo: {h['to']}\nCall-ID: {h['call-id']}\nMax-Forwards: 70\n"
        )
        caller.send(f"ACK {contact} SIP/2.0\n{dialog.format(b='a1')}CSeq: 1 ACK\n"
                    "Content-Length: 0\n\n", target)  # fmt: skip
        time.sleep(1.5)  # the welcome plays
        info = "Signal=1\nDuration=160\n"
        caller.send(
            f"INFO {contact} SIP/2.0\n{dialog.format(b='i1')}CSeq: 2 INFO\n"
            f"Content-Type: application/dtmf-relay\nContent-Length: {len(info) + 2}\n\n{info}",
            target,
        )
        caller.recv_until("SIP/2.0 200", 5)
        time.sleep(2.0)  # the language menu takes the key: to the Dutch queue
        caller.send(f"BYE {contact} SIP/2.0\n{dialog.format(b='b1')}CSeq: 3 BYE\n"
                    "Content-Length: 0\n\n", target)  # fmt: skip
        caller.recv_until("SIP/2.0 200", 5)
        # refused requests carrying the number, from a stranger and from the trunk
        stranger.send(request("REGISTER", target, stranger), target)
        stranger.recv_until("SIP/2.0", 5)
        stranger.send(request("INVITE", target, stranger), target)
        stranger.recv_until("SIP/2.0 4", 5)
        caller.send(request("FOO", target, caller), target)
        caller.recv_until("SIP/2.0 501", 5)
        caller.send(request("OPTIONS", target, caller, extra=f"Require: {NUMBER}\n"), target)
        caller.recv_until("SIP/2.0 420", 5)
        caller.send(request("OPTIONS", target, caller).replace("CSeq: 1", "CSeq: x"), target)
        caller.send(request("OPTIONS", target, caller).replace("Via:", "Via: ;"), target)
        time.sleep(0.5)
    finally:
        caller.close()
        stranger.close()
