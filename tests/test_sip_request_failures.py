"""A failure above the transaction layer becomes an answer, never silence: the stack answers a
request whose handler raised (500, or 400 for a header that turned out not to be valid SIP), a call
task that dies before answering answers its INVITE with 500, and the failure is logged by kind and
code location only, never with what the request carried. Real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from pbx.calls.legs import InboundLeg, watch_call_task
from pbx.logs import configure_logging
from pbx.sip.dialog import contact_uri
from pbx.sip.peer import TransportKind
from pbx.sip.stack import IncomingRequest, RequestHandlers, SipStack
from pbx.sip.timers import Timers
from pbx.sip.transport import SipTransports
from tests.helpers.raw_handset import RawHandset

MARKER = "zebra-caller-marker"  # stands for what a caller sends: it must never be logged

REQUEST = (
    "{method} sip:0900@127.0.0.1 SIP/2.0\n"
    "Via: SIP/2.0/UDP {me}:{myport};branch=z9hG4bK{branch};rport\n"
    f'From: "{MARKER}" <sip:{MARKER}@{{me}}>;tag=f1\n'
    "To: <sip:0900@127.0.0.1>\nCall-ID: {branch}@{me}\nCSeq: 1 {method}\n"
    f"Contact: <sip:{MARKER}@{{me}}:{{myport}}>\nP-Asserted-Identity: <sip:{MARKER}@{{me}}>\n"
    "Max-Forwards: 70\nContent-Length: 0\n\n"
)


@asynccontextmanager
async def stack_with(handler: Callable[[IncomingRequest], None]) -> AsyncIterator[SipStack]:
    stack = SipStack(SipTransports(), timers=Timers(t1=0.05))
    await stack.start(RequestHandlers(handler), "127.0.0.1", 0)
    try:
        yield stack
    finally:
        await stack.close()


@asynccontextmanager
async def captured_logs() -> AsyncIterator[io.StringIO]:
    logs = io.StringIO()
    configure_logging("debug", "json", stream=logs)
    try:
        yield logs
    finally:
        configure_logging("warning", "console")


async def exchange(stack: SipStack, method: str, branch: str, until: str) -> list[str]:
    """Send one request; every response up to the first whose status line contains `until`."""
    phone = RawHandset()
    try:
        target = ("127.0.0.1", stack.port(TransportKind.UDP))
        phone.send(
            REQUEST.format(method=method, me=phone.host, myport=phone.port, branch=branch), target
        )
        got: list[str] = []
        while not got or until not in got[-1].split("\r\n", 1)[0]:
            got.append(await asyncio.to_thread(phone.recv, 5))
        return [m.split("\r\n", 1)[0] for m in got]
    finally:
        phone.close()


def leaky_handler(incoming: IncomingRequest) -> None:
    """A handler with a bug whose message quotes what the request carried."""
    raise ValueError(f"cannot route {incoming.request.headers.get('From')}")


async def test_a_handler_that_raises_gets_500_and_a_log_line_without_request_data() -> None:
    async with captured_logs() as logs, stack_with(leaky_handler) as stack:
        assert await exchange(stack, "OPTIONS", "o1", "500") == [
            "SIP/2.0 500 Server Internal Error"
        ]
        assert stack.request_failures == 1 and stack.unanswered_failures == 1
    text = logs.getvalue()
    assert '"event": "request_failed"' in text and '"error": "ValueError"' in text
    assert "leaky_handler" in text  # where it failed, for the developer
    assert MARKER not in text


class BrokenStream(io.StringIO):
    """A log destination that fails on every write (a full disk, a closed pipe)."""

    def write(self, text: str) -> int:
        raise OSError("no space left on the log's device")


async def test_a_failing_log_does_not_cost_the_failed_request_its_answer() -> None:
    configure_logging("debug", "json", stream=BrokenStream())
    try:
        async with stack_with(leaky_handler) as stack:
            assert await exchange(stack, "OPTIONS", "o2", "500") == [
                "SIP/2.0 500 Server Internal Error"
            ]
            assert stack.request_failures == 1 and stack.unanswered_failures == 1
    finally:
        configure_logging("warning", "console")


async def test_a_header_that_is_not_valid_sip_when_read_gets_400() -> None:
    def reads_a_bad_header(incoming: IncomingRequest) -> None:
        incoming.request.headers.set("Contact", "<sip:broken")  # as a peer could have sent it
        incoming.request.contacts  # noqa: B018 - parsed lazily: raises SipParseError

    async with stack_with(reads_a_bad_header) as stack:
        (status,) = await exchange(stack, "REGISTER", "r1", "400")
        assert status.startswith("SIP/2.0 400 ")


async def test_a_handler_that_answered_before_raising_is_not_answered_twice() -> None:
    def answers_then_raises(incoming: IncomingRequest) -> None:
        incoming.respond(200)
        raise RuntimeError("after the answer")

    async with stack_with(answers_then_raises) as stack:
        phone = RawHandset()
        try:
            target = ("127.0.0.1", stack.port(TransportKind.UDP))
            text = REQUEST.format(method="OPTIONS", me=phone.host, myport=phone.port, branch="a1")
            phone.send(text, target)
            first = await asyncio.to_thread(phone.recv, 5)
            assert first.startswith("SIP/2.0 200")
            phone.send(text, target)  # a retransmission gets the same single answer
            again = await asyncio.to_thread(phone.recv, 5)
            assert again.startswith("SIP/2.0 200")
            try:
                extra = await asyncio.to_thread(phone.recv, 0.5)
            except TimeoutError:
                extra = ""
            assert extra == ""
        finally:
            phone.close()
        assert stack.request_failures == 1 and stack.unanswered_failures == 0
        assert stack.layer.stats.server_answered == 1


async def test_a_call_task_that_dies_before_answering_answers_the_invite_with_500() -> None:
    tasks: set[asyncio.Task[None]] = set()

    async def buggy_call(leg: InboundLeg) -> None:
        leg.ring()
        await asyncio.sleep(0.05)
        raise KeyError(leg.invite.headers.get("From"))

    def accept(incoming: IncomingRequest) -> None:
        if incoming.request.method == "ACK":
            return
        contact = contact_uri(
            "helpline", "127.0.0.1", incoming.stack.port(TransportKind.UDP), "udp"
        )
        leg = InboundLeg.accept(incoming, ref="c1", contact=contact)
        watch_call_task(asyncio.create_task(buggy_call(leg)), leg, tasks)

    async with captured_logs() as logs, stack_with(accept) as stack:
        statuses = await exchange(stack, "INVITE", "i1", "500")
        assert statuses == [
            "SIP/2.0 100 Trying",
            "SIP/2.0 180 Ringing",
            "SIP/2.0 500 Server Internal Error",
        ]
        assert stack.unanswered_failures == 1 and not tasks
    text = logs.getvalue()
    assert '"event": "call_task_failed"' in text and "buggy_call" in text
    assert MARKER not in text


async def test_a_call_task_cancelled_before_answering_answers_the_invite_with_500() -> None:
    tasks: set[asyncio.Task[None]] = set()

    def accept(incoming: IncomingRequest) -> None:
        if incoming.request.method == "ACK":
            return
        contact = contact_uri(
            "helpline", "127.0.0.1", incoming.stack.port(TransportKind.UDP), "udp"
        )
        leg = InboundLeg.accept(incoming, ref="c2", contact=contact)
        task = asyncio.create_task(asyncio.sleep(30))
        watch_call_task(task, leg, tasks)
        asyncio.get_running_loop().call_later(0.05, task.cancel)  # e.g. the service stopping

    async with stack_with(accept) as stack:
        statuses = await exchange(stack, "INVITE", "i2", "500")
        assert statuses[-1] == "SIP/2.0 500 Server Internal Error"
