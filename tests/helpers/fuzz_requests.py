"""Fuzzing the whole request path of the running service, shared by the test and the bench.

Seeds are real requests that sipp and PJSIP sent to the service (`tests/data/fuzz-seeds/`, see its
README). Each round takes a seed, points it at the service under test (our Via, Contact and a
fresh Call-ID; a fresh digest answer where the seed carried one, so mutated requests also get past
authentication), then corrupts it where the application rather than the parser reads: header
values (URIs, numbers, parameters, huge or truncated values), Content-Length, the SDP body, the
digest parameters, the method and the Request-URI (feature codes, numbers). Requests go to the
service over real UDP sockets on loopback, or straight into its UDP receive path for speed; the
service's answers come back over UDP to a peer that behaves like a phone: it ACKs final responses,
hangs up (BYE) calls that were answered after sending some mutated in-dialog requests, and
answers whatever the service sends it.

`RequestPathWatch` checks the invariants: no unhandled exception (no error logged, none reaching
the event loop, no request whose handling raised), and once timers have run no transaction and no
call leg left, every server transaction answered exactly once, none by the answer limit.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pbx.logs import configure_logging
from pbx.service import HelplineService
from tests.helpers.fuzz_mutations import (
    VOLUNTEERS,
    Draft,
    digest_header,
    load_seeds,
    mutate,
)
from tests.helpers.ivr_helpline import STAFF_KEY
from tests.helpers.service import UNLIMITED_SOURCE

# --- the peer -------------------------------------------------------------------------------------


def _header(text: str, name: str) -> str | None:
    m = re.search(rf"^{name}\s*:\s*(.*)$", text, re.M | re.I)
    return m.group(1).strip() if m else None


@dataclass
class PeerStats:
    sent: int = 0
    responses: int = 0
    finals: dict[tuple[str, str, str], set[int]] = field(default_factory=dict)
    requests_received: int = 0
    calls_answered: int = 0

    def conflicting_finals(self) -> list[tuple[tuple[str, str, str], set[int]]]:
        """Transactions that got two different final responses (each must get exactly one)."""
        return [(k, s) for k, s in self.finals.items() if len(s) > 1]


class FuzzPeer(asyncio.DatagramProtocol):
    """A phone-like UDP peer on one loopback address: sends the fuzzed requests, ACKs finals,
    hangs up answered calls (after a few mutated in-dialog requests), answers the service."""

    def __init__(self, host: str, rnd: random.Random, in_dialog: list[Draft]) -> None:
        self.host = host
        self.rnd = rnd
        self.in_dialog = in_dialog
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.target: tuple[str, int] = ("127.0.0.1", 0)
        self.stats = PeerStats()
        self.nonce: str | None = None
        self.nc = 0
        self.nonce_waiter: asyncio.Future[str] | None = None
        self.inject: Callable[[bytes, tuple[str, int]], None] | None = None

    @classmethod
    async def open(
        cls, host: str, target: tuple[str, int], rnd: random.Random, in_dialog: list[Draft]
    ) -> FuzzPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(
            lambda: cls(host, rnd, in_dialog), local_addr=(host, 0)
        )
        assert peer.transport is not None
        peer.port = peer.transport.get_extra_info("sockname")[1]
        peer.target = target
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> None:
        self.stats.sent += 1
        if self.inject is not None:  # straight into the service's UDP receive path
            self.inject(data, (self.host, self.port))
        elif self.transport is not None:
            self.transport.sendto(data, self.target)

    # --- preparing a seed ---
    def retarget(self, seed: Draft, sign: bool) -> Draft:
        d = seed.copy()
        branch = "z9hG4bK" + secrets.token_hex(8)
        d.set("Via", f"SIP/2.0/UDP {self.host}:{self.port};rport;branch={branch}")
        d.set("Call-ID", secrets.token_hex(10) + "@fuzz")
        frm = d.get("From") or "<sip:fuzz@127.0.0.1>"
        d.set("From", frm.split(";tag=")[0] + ";tag=" + secrets.token_hex(4))
        if d.get("Contact") is not None:
            user = (d.get("Contact") or "").split("@")[0].lstrip("<").removeprefix("sip:")
            d.set("Contact", f"<sip:{user or 'fuzz'}@{self.host}:{self.port}>")
        host = f"{self.target[0]}:{self.target[1]}"
        if "@" in d.uri:
            d.uri = d.uri.split("@")[0] + "@" + host
        else:
            d.uri = "sip:" + host
        for name in ("Authorization", "Proxy-Authorization"):
            value = d.get(name)
            if value is None:
                continue
            user = re.search(r'username="([^"]*)"', value)
            if sign and self.nonce is not None and user and user.group(1) in VOLUNTEERS:
                self.nc += 1
                d.set(name, digest_header(d.method, d.uri, user.group(1), self.nonce, self.nc))
        return d

    async def fetch_nonce(self, timeout: float = 5.0) -> None:
        """A nonce from the service's challenge to an unauthenticated REGISTER from here."""
        self.nonce_waiter = asyncio.get_running_loop().create_future()
        call_id = secrets.token_hex(8)
        text = (
            f"REGISTER sip:{self.target[0]}:{self.target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};rport;branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:seedivr@{self.target[0]}>;tag={call_id}\r\n"
            f"To: <sip:seedivr@{self.target[0]}>\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:seedivr@{self.host}:{self.port}>\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        self.send(text.encode())
        try:
            self.nonce = await asyncio.wait_for(self.nonce_waiter, timeout)
            self.nc = 0
        except TimeoutError:
            self.nonce = None

    # --- what comes back ---
    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        text = data.decode("utf-8", "replace")
        first = text.split("\r\n", 1)[0]
        if first.startswith("SIP/2.0 "):
            self._on_response(text, first)
        elif text.strip():
            self._on_request(text, first)

    def _on_response(self, text: str, first: str) -> None:
        self.stats.responses += 1
        try:
            status = int(first.split()[1])
        except (IndexError, ValueError):
            return
        cseq = _header(text, "CSeq") or ""
        if status == 401 and self.nonce_waiter is not None and not self.nonce_waiter.done():
            m = re.search(r'WWW-Authenticate:.*?nonce="([^"]+)"[^\r\n]*MD5', text, re.I)
            m = m or re.search(r'WWW-Authenticate:.*?nonce="([^"]+)"', text, re.I)
            if m:
                self.nonce_waiter.set_result(m.group(1))
        if status < 200:
            return
        key = (_header(text, "Call-ID") or "", cseq, _header(text, "Via") or "")
        seen = self.stats.finals.setdefault(key, set())
        first_time = status not in seen
        seen.add(status)
        if cseq.split()[-1:] != ["INVITE"]:
            return
        if status >= 300:
            self.send(self._ack(text, key[2]))
        elif first_time:
            self.stats.calls_answered += 1
            self._hang_up(text)
        else:  # a retransmitted 2xx: our ACK was lost or did not match
            self.send(
                self._dialog_request(text, "ACK", _cseq_number(text), self.uri_of(text)).to_bytes()
            )

    def _dialog_request(self, text: str, method: str, cseq: int, target: str) -> Draft:
        via = f"SIP/2.0/UDP {self.host}:{self.port};rport;branch=z9hG4bK{secrets.token_hex(8)}"
        headers = [
            ["Via", via], ["From", _header(text, "From") or ""], ["To", _header(text, "To") or ""],
            ["Call-ID", _header(text, "Call-ID") or ""], ["CSeq", f"{cseq} {method}"],
            ["Max-Forwards", "70"],
        ]  # fmt: skip
        return Draft(method, target, headers, b"")

    def _ack(self, text: str, via: str) -> bytes:
        """The ACK for a non-2xx final: the INVITE's branch (the Via as the response has it)."""
        ack = self._dialog_request(text, "ACK", _cseq_number(text), self.uri_of(text))
        ack.set("Via", via)
        return ack.to_bytes()

    def uri_of(self, text: str) -> str:
        contact = _header(text, "Contact") or _header(text, "m")
        m = re.search(r"<([^>]+)>", contact or "")
        return m.group(1) if m else f"sip:{self.target[0]}:{self.target[1]}"

    def _hang_up(self, ok: str) -> None:
        """ACK the 2xx, send a few (mostly mutated) in-dialog requests, then BYE."""
        target = self.uri_of(ok)
        cseq = _cseq_number(ok)
        self.send(self._dialog_request(ok, "ACK", cseq, target).to_bytes())
        for _ in range(self.rnd.randrange(3)):
            cseq += 1
            seed = self.rnd.choice(self.in_dialog)
            d = self._dialog_request(ok, seed.method, cseq, target)
            for name, value in seed.headers:
                if name.lower() in ("content-type", "contact", "allow", "supported"):
                    d.headers.append([name, value])
            d.body = seed.body
            self.send(mutate(d, self.rnd).to_bytes() if self.rnd.random() < 0.8 else d.to_bytes())
        self.send(self._dialog_request(ok, "BYE", cseq + 1, target).to_bytes())

    def _on_request(self, text: str, first: str) -> None:
        self.stats.requests_received += 1
        if first.startswith("ACK "):
            return
        keep = [
            line for line in text.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
            if line.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")
        ]  # fmt: skip
        # ringing a handset: busy (the fuzzer is no volunteer); anything else: OK
        status = "486 Busy Here" if first.startswith("INVITE ") else "200 OK"
        keep = [f"{line};tag=fz" if line.lower().startswith("to:") else line for line in keep]
        reply = f"SIP/2.0 {status}\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
        if self.transport is not None:
            self.transport.sendto(reply.encode(), self.target)


def _cseq_number(text: str) -> int:
    m = re.match(r"^(\d{1,9})\b", _header(text, "CSeq") or "")
    return int(m.group(1)) if m else 1


# --- watching the service -------------------------------------------------------------------------


ERROR_EVENTS = ("transaction_abandoned", "call_task_left_invite_unanswered")


@dataclass
class Violations:
    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def __str__(self) -> str:
        return "\n".join(self.problems[:40])


class RequestPathWatch:
    """Collects what would show a request the service failed: error log lines (JSON, captured
    from structlog), exceptions that reached the event loop, and the service's own counters."""

    def __init__(self, service: HelplineService) -> None:
        self.service = service
        self.logs = io.StringIO()
        self.loop_errors: list[str] = []
        self._read = 0

    @contextmanager
    def watching(self) -> Iterator[RequestPathWatch]:
        configure_logging("warning", "json", stream=self.logs)
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(
            lambda _, ctx: self.loop_errors.append(
                f"{ctx.get('message')}: {type(ctx.get('exception')).__name__}"
            )
        )
        try:
            yield self
        finally:
            loop.set_exception_handler(previous)
            configure_logging("warning", "console")

    def error_lines(self) -> list[str]:
        """Error lines logged so far (kept; other lines are dropped as they are read)."""
        out = []
        for line in self.logs.getvalue().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                out.append(line[:300])
                continue
            if event.get("level") in ("error", "critical") or event.get("event") in ERROR_EVENTS:
                out.append(line[:600])
        self.logs.seek(0)
        self.logs.truncate()
        self.logs.write("".join(f"{line}\n" for line in out))
        return out

    async def settle(self, timeout: float) -> None:
        """Wait until no server transaction and no call leg is left (timers running), or
        timeout. (The service's own requests, client transactions, end by RFC 3261 timers, an
        INVITE a handset refused only after Timer D's 32 s: they are not what is checked.)"""
        stack, board = self.service.stack, self.service.switchboard
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if stack.layer.server_count() == 0 and not board.legs:
                return
            await asyncio.sleep(0.1)

    def check(self, peers: list[FuzzPeer], *, settled: bool = True) -> Violations:
        v = Violations()
        stack, board = self.service.stack, self.service.switchboard
        stats = stack.layer.stats
        for line in self.error_lines():
            v.problems.append(f"logged: {line}")
        v.problems += [f"event loop: {e}" for e in self.loop_errors]
        if stack.request_failures:
            v.problems.append(f"{stack.request_failures} requests whose handling raised")
        if stack.unanswered_failures:
            v.problems.append(f"{stack.unanswered_failures} requests answered only on failure")
        if stats.abandoned:
            v.problems.append(f"{stats.abandoned} transactions never answered by the service")
        for peer in peers:
            for key, statuses in peer.stats.conflicting_finals()[:5]:
                v.problems.append(f"two different final responses {sorted(statuses)} to {key}")
            if settled:
                peer.stats.finals.clear()  # checked: a long run keeps no per-request state
        if settled:
            if stack.layer.server_count():
                v.problems.append(f"{stack.layer.server_count()} server transactions left")
            if board.legs:
                v.problems.append(f"{len(board.legs)} call legs left")
            elif stats.server_created != stats.server_answered:
                v.problems.append(
                    f"{stats.server_created} server transactions, {stats.server_answered} answered"
                )
        return v


# --- running a batch ------------------------------------------------------------------------------


@dataclass
class Fuzzer:
    """Sends mutated seeds from a trunk address (127.0.0.1) and a handset address (127.0.0.2)."""

    service: HelplineService
    target: tuple[str, int]
    seed: int = 1
    direct: bool = False  # inject into the UDP receive path instead of sending datagrams
    seeds: list[Draft] = field(default_factory=load_seeds)
    peers: list[FuzzPeer] = field(default_factory=list)

    async def open(self) -> Fuzzer:
        self.rnd = random.Random(self.seed)
        in_dialog = [s for s in self.seeds if s.method in ("INFO", "INVITE", "BYE", "OPTIONS")]
        self.trunk = await FuzzPeer.open("127.0.0.1", self.target, self.rnd, in_dialog)
        self.handset = await FuzzPeer.open("127.0.0.2", self.target, self.rnd, in_dialog)
        self.peers = [self.trunk, self.handset]
        if self.direct:
            udp: Any = self.service.stack.transports._udp  # the receive path, minus the socket
            for peer in self.peers:
                peer.inject = udp.datagram_received
        for peer in self.peers:
            await peer.fetch_nonce()
        return self

    def close(self) -> None:
        for peer in self.peers:
            peer.close()

    def one(self) -> None:
        seed = self.rnd.choice(self.seeds)
        handset_like = seed.method == "REGISTER" or "auth" in seed.seed or "*" in seed.uri
        peer = self.handset if handset_like or self.rnd.random() < 0.25 else self.trunk
        draft = peer.retarget(seed, sign=self.rnd.random() < 0.7)
        peer.send(mutate(draft, self.rnd).to_bytes())

    async def batch(self, count: int) -> None:
        """`count` mutated requests, yielding to the service so that it keeps up: after each
        datagram over UDP (asyncio reads one datagram per loop turn, and the socket's buffer
        would overflow), every 20 when injecting."""
        chunk = 20 if self.direct else 1
        for i in range(count):
            self.one()
            if i % chunk == chunk - 1:
                await asyncio.sleep(0)
                if i % (chunk * 50) == chunk * 50 - 1:
                    await asyncio.sleep(0.01)  # let calls, timers and media run too
        if self.rnd.random() < 0.5:  # a fresh nonce now and then, as handsets get
            await self.handset.fetch_nonce()

    @property
    def sent(self) -> int:
        return sum(p.stats.sent for p in self.peers)


# --- a burst from one address ---------------------------------------------------------------------


def burst_datagrams(
    count: int, host: str, port: int, target: tuple[str, int], seed: int
) -> list[bytes]:
    """`count` mutated requests of every kind, as sent from host:port (no valid credentials)."""
    rnd = random.Random(seed)
    seeds = load_seeds()
    peer = FuzzPeer(host, rnd, [])
    peer.port, peer.target = port, target
    return [
        mutate(peer.retarget(rnd.choice(seeds), sign=False), rnd).to_bytes() for _ in range(count)
    ]


def blast(sock: Any, datagrams: list[bytes], target: tuple[str, int], per_ms: int = 8) -> float:
    """Send as fast as the service takes them in (blocking socket; run it in a thread): a short
    pause every `per_ms` datagrams keeps the service's receive buffer from overflowing most of
    them. Returns the seconds it took."""
    import time

    started = time.monotonic()
    for i, data in enumerate(datagrams):
        sock.sendto(data, target)
        if i % per_ms == per_ms - 1:
            time.sleep(0.001)
    return time.monotonic() - started


FUZZ_SETTINGS = {
    "call_flow": "ivr",  # the default flow: calls are answered and walk the dialplan
    "sip_t1": 0.05,  # short transaction timers so that the table empties within seconds
    "digest_algorithms": ["MD5", "SHA-256"],  # the seeds' handsets answer MD5 challenges
    "media_timeout": 2.0,
    "volunteer_whisper": "",
    # voicemail as in production, so that a fuzzed caller who reaches it leaves a message
    # (without a recipient key the service logs an error for each such caller)
    "voicemail_recipients": [str(STAFF_KEY.to_public())],
    **UNLIMITED_SOURCE,
}
