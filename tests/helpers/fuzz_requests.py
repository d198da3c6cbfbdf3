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
import hashlib
import io
import json
import random
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbx.logs import configure_logging
from pbx.service import HelplineService
from tests.helpers.service import UNLIMITED_SOURCE

SEEDS = Path(__file__).parents[1] / "data" / "fuzz-seeds"
PASSWORD = "seed-pass-word1"  # of the volunteers the seeds were captured with
VOLUNTEERS = ("seedivr", "seeddirect")
REALM = "helpline"

# --- seeds ----------------------------------------------------------------------------------------


@dataclass
class Draft:
    """A request being mutated: start line, header fields in order, body."""

    method: str
    uri: str
    headers: list[list[str]]
    body: bytes
    version: str = "SIP/2.0"
    content_length: str | None = None  # set by a mutation: sent as is instead of the real one
    seed: str = ""

    def get(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def set(self, name: str, value: str) -> None:
        for field_ in self.headers:
            if field_[0].lower() == name.lower():
                field_[1] = value
                return
        self.headers.append([name, value])

    def remove(self, name: str) -> None:
        self.headers = [f for f in self.headers if f[0].lower() != name.lower()]

    def copy(self) -> Draft:
        return Draft(
            self.method, self.uri, [list(f) for f in self.headers], self.body, self.version,
            self.content_length, self.seed,
        )  # fmt: skip

    def to_bytes(self) -> bytes:
        length = self.content_length
        if length is None:
            length = str(len(self.body))
        head = f"{self.method} {self.uri} {self.version}\r\n" + "".join(
            f"{n}: {v}\r\n" for n, v in self.headers if n.lower() not in ("content-length", "l")
        )
        return (head + f"Content-Length: {length}\r\n\r\n").encode(
            "utf-8", "surrogateescape"
        ) + self.body


def parse_seed(data: bytes, name: str = "") -> Draft | None:
    """A captured request as a Draft (None for responses)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0].startswith("SIP/"):
        return None
    headers = [[n.strip(), v.strip()] for n, _, v in (line.partition(":") for line in lines[1:])]
    return Draft(parts[0], parts[1], headers, body, parts[2], seed=name)


def load_seeds() -> list[Draft]:
    seeds = [parse_seed(p.read_bytes(), p.name) for p in sorted(SEEDS.glob("*.sip"))]
    return [s for s in seeds if s is not None]


# --- nasty values ---------------------------------------------------------------------------------

URIS = [
    "sip:", "<sip:>", "<sip:@>", "<sip:@127.0.0.1>", "<sip:a@[::1>", "<sip:a@127.0.0.1:99999>",
    "<sip:a@127.0.0.1:0>", "<sips:a@127.0.0.1>", "<tel:+31-6;phone-context=x>", "<tel:>",
    "<mailto:a@b>", "<urn:service:sos>", "<sip:%00@127.0.0.1>", "<sip:%zz@127.0.0.1>",
    "<sip:a@127.0.0.1;transport=>", "<sip:a@127.0.0.1;maddr=127.0.0.9>", "<sip:a@h?Route=x>",
    "<sip:*1@127.0.0.1>", "<sip:a@-h->", "<sip:a@h..>", '"unterminated <sip:a@h>', "<sip:a@h",
    "sip:a@h>", "*", "<*>", "<sip:" + "a" * 3000 + "@h>", "<sip:a@" + "h" * 300 + ">",
    "<sip:anonymous@anonymous.invalid>", '"\\"" <sip:a@h>', "<sip:a:pw@h>", "<sip:a@h;lr;lr>",
    "<sip:a@127.0.0.1>;tag=", "<sip:a@127.0.0.1>;tag", "<sip:a@127.0.0.1>,<sip:b@127.0.0.1>",
    "<sip:a@1.2.3.4.5>", "<sip:a@[fe80::1%eth0]>", "<sip:user;x=y@h>", "<SIP:A@H>", "<>",
]  # fmt: skip
NUMBERS = [
    "", "-1", "0", "4294967296", "99999999999999999999999", "1.5", "0x10", "１２", " 7 ", "1e3",
    "NaN", "70 70", "+5", "00000000000000000000000001", "2147483648", "4294967295",
]  # fmt: skip
PARAMS = [
    ";tag", ";tag=", ";;;", ";expires=abc", ";expires=-5", ";q=2.0", ";q=abc", ";reg-id=x",
    ';+sip.instance="<urn:uuid:x>"', ";lr", ";transport=sctp", ";received=x", ";branch",
    ";rport=abc", ";maddr=", "; =", ";" + "p" * 500 + "=1",
]  # fmt: skip
JUNK = [
    "A" * 5000, "x," * 1500, '"' * 101, "\\", "<", ">", ",", ";", "=", "%", "\x00", "\x7f",
    "é", "\U0001f600", "null", "*", "  ", "\t",
]  # fmt: skip
TOKENS = ["foo", "100rel", "timer", "replaces", "", "x" * 300, "*", "a b", "text/plain"]
REQUEST_USERS = [
    "*1", "*0", "*2", "*9", "%2A1", "*", "**", "*1*", "*1;user=phone", "*12", "0900-0767",
    "09000767", "0900-1234567", "+31900", "", "anonymous", "113", "%00", "a" * 300, "0" * 40,
]  # fmt: skip
METHODS = [
    "FOO", "invite", "PRACK", "UPDATE", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH",
    "INFO", "BYE", "CANCEL", "ACK", "OPTIONS", "REGISTER", "INVITE", "I" * 100,
]  # fmt: skip
SDP_LINES = [
    "c=IN IP4 example.com", "c=IN IP4 224.0.0.1", "c=IN IP4 0.0.0.0", "c=IN IP6 ::1", "c=IN IP4",
    "c=", "c=IN IP4 256.1.1.1", "c=IN IP4 127.0.0.1/127", "c=IN IP6 ::", "c=XX IP4 127.0.0.1",
    "m=audio 0 RTP/AVP 0", "m=audio 99999 RTP/AVP 0", "m=audio -1 RTP/AVP 0",
    "m=audio 4000 RTP/AVP",
    "m=audio 4000 RTP/SAVP 0", "m=video 4000 RTP/AVP 96", "m=audio 4000/2 RTP/AVP 0",
    "m=audio abc RTP/AVP 0", "m=audio 4000 RTP/AVP 127 300 -1", "m=image 4000 udptl t38",
    "a=rtpmap:0", "a=rtpmap:x PCMU/8000", "a=rtpmap:101 telephone-event/abc",
    "a=rtpmap:8 PCMA/0", "a=fmtp:101 0-999999", "a=fmtp:", "a=ptime:0", "a=ptime:-5",
    "a=ptime:abc", "a=sendonly", "a=inactive", "a=recvonly", "a=rtcp:abc", "a=maxptime:1e9",
    "v=1", "o=", "o=- x x IN IP4 127.0.0.1", "s=", "t=a b", "b=AS:-1", "=", "m=", "a=",
    "m=audio 4000 RTP/AVP " + " ".join(str(n) for n in range(128)),
]  # fmt: skip
AUTH_VALUES = [
    "", '""', '"' + "a" * 3000 + '"', '"a\\"b"', "zz", "ffffffffffffffffff", "00000000",
    "auth-int", '"auth,auth-int"', "SHA-512-256", "MD5-sess", "foo", '"sip:other@h"',
    '"0123"', '"' + "f" * 64 + '"', '"seeddirect"', '"*"', '"seedivr"', '"helpline "',
    '"%00"', "\\", '"unterminated',
]  # fmt: skip


def _pick(rnd: random.Random, values: list[str]) -> str:
    return values[rnd.randrange(len(values))]


# --- mutations ------------------------------------------------------------------------------------

APP_HEADERS = [
    "From", "To", "Contact", "Via", "CSeq", "Call-ID", "Max-Forwards", "Expires",
    "Authorization", "Proxy-Authorization", "P-Asserted-Identity", "Require", "Accept",
    "Content-Type", "Route", "Record-Route", "Supported", "Allow", "User-Agent", "Event",
]  # fmt: skip


def corrupt_value(draft: Draft, rnd: random.Random) -> None:
    present = [n for n, _ in draft.headers]
    name = _pick(rnd, present + APP_HEADERS) if present else _pick(rnd, APP_HEADERS)
    value = draft.get(name) or ""
    kind = rnd.randrange(7)
    if kind == 0:
        new = _pick(rnd, URIS)
    elif kind == 1:
        new = _pick(rnd, NUMBERS) + ("" if rnd.random() < 0.5 else " " + draft.method)
    elif kind == 2:
        new = value + _pick(rnd, PARAMS)
    elif kind == 3:
        new = value[: rnd.randrange(len(value) + 1)]  # missing parts
    elif kind == 4:
        at = rnd.randrange(len(value) + 1)
        new = value[:at] + _pick(rnd, JUNK) + value[at:]
    elif kind == 5:
        new = _pick(rnd, TOKENS)
    else:
        new = _pick(rnd, URIS) + _pick(rnd, PARAMS)
    draft.set(name, new)


def drop_header(draft: Draft, rnd: random.Random) -> None:
    if draft.headers:
        del draft.headers[rnd.randrange(len(draft.headers))]


def duplicate_header(draft: Draft, rnd: random.Random) -> None:
    if draft.headers:
        name, value = draft.headers[rnd.randrange(len(draft.headers))]
        if rnd.random() < 0.5:
            value = _pick(rnd, URIS + NUMBERS)
        draft.headers.insert(rnd.randrange(len(draft.headers) + 1), [name, value])


def add_header(draft: Draft, rnd: random.Random) -> None:
    name = _pick(
        rnd,
        ["Require", "Proxy-Require", "Supported", "P-Asserted-Identity", "Route", "Expires",
         "Max-Forwards", "Accept", "Content-Type", "Content-Encoding", "Session-Expires",
         "Replaces", "Refer-To", "Event", "Privacy", "Remote-Party-ID", "Diversion", "Timestamp",
         "Contact", "Unsupported", "Min-Expires", "Retry-After", "Allow-Events", "Reason"],
    )  # fmt: skip
    draft.headers.append([name, _pick(rnd, URIS + NUMBERS + TOKENS + PARAMS)])


def wrong_content_length(draft: Draft, rnd: random.Random) -> None:
    real = len(draft.body)
    draft.content_length = _pick(
        rnd, [str(real + 1), str(max(real - 1, 0)), "0", "-1", "99999999", "abc", "", "1e3"]
    )


def corrupt_sdp(draft: Draft, rnd: random.Random) -> None:
    lines = draft.body.decode("utf-8", "surrogateescape").split("\r\n")
    if not draft.body:
        draft.set("Content-Type", "application/sdp")
        lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
                 "m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000", ""]  # fmt: skip
    for _ in range(rnd.randint(1, 3)):
        if not lines:
            lines = [""]
        kind = rnd.randrange(5)
        at = rnd.randrange(len(lines))
        if kind == 0:
            lines[at] = _pick(rnd, SDP_LINES)
        elif kind == 1:
            lines.insert(at, _pick(rnd, SDP_LINES))
        elif kind == 2 and len(lines) > 1:
            del lines[at]
        elif kind == 3:
            lines = lines[: rnd.randrange(len(lines) + 1)]
        else:
            lines.insert(at, lines[at])
    draft.body = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    if rnd.random() < 0.1:
        draft.body = draft.body[: rnd.randrange(len(draft.body) + 1)]


_AUTH_PARAM = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\s]*)')


def corrupt_auth(draft: Draft, rnd: random.Random) -> None:
    name = "Proxy-Authorization" if draft.method == "INVITE" else "Authorization"
    if draft.get("Proxy-Authorization") is not None:
        name = "Proxy-Authorization"
    elif draft.get("Authorization") is not None:
        name = "Authorization"
    value = draft.get(name) or (
        'Digest username="seedivr", realm="helpline", nonce="x", uri="sip:h", '
        'response="00000000000000000000000000000000"'
    )
    params = _AUTH_PARAM.findall(value)
    kind = rnd.randrange(6)
    if kind == 0 and params:
        i = rnd.randrange(len(params))
        params[i] = (params[i][0], _pick(rnd, AUTH_VALUES))
    elif kind == 1 and params:
        del params[rnd.randrange(len(params))]
    elif kind == 2 and params:
        params.insert(rnd.randrange(len(params) + 1), params[rnd.randrange(len(params))])
    elif kind == 3:
        draft.set(name, _pick(rnd, ["Basic YWxhZGRpbjpvcGVuc2VzYW1l", "Digest", "Digest ,,,",
                                    "Bearer x", "", "Digest " + "a=b," * 1000]))  # fmt: skip
        return
    elif kind == 4 and params:
        i = rnd.randrange(len(params))
        params[i] = (_pick(rnd, ["", "USERNAME", "x" * 200, "nc", "algorithm"]), params[i][1])
    else:
        params.append((_pick(rnd, ["opaque", "userhash", "auth-param", "qop"]),
                       _pick(rnd, AUTH_VALUES)))  # fmt: skip
    scheme = _pick(rnd, ["Digest ", "digest ", "DIGEST ", "Digest  "])
    draft.set(name, scheme + ", ".join(f"{k}={v}" for k, v in params))


def change_method(draft: Draft, rnd: random.Random) -> None:
    method = _pick(rnd, METHODS)
    draft.method = method
    if rnd.random() < 0.7:
        cseq = (draft.get("CSeq") or "1 X").split()
        draft.set("CSeq", f"{cseq[0] if cseq else '1'} {method}")


def corrupt_request_uri(draft: Draft, rnd: random.Random) -> None:
    kind = rnd.randrange(3)
    host = draft.uri.split("@", 1)[-1] if "@" in draft.uri else "127.0.0.1"
    if kind == 0:
        draft.uri = f"sip:{_pick(rnd, REQUEST_USERS)}@{host}"
    elif kind == 1:
        draft.uri = _pick(rnd, URIS).strip("<>") or "sip:"
    else:
        draft.uri = f"tel:{_pick(rnd, REQUEST_USERS)}"


def to_tag(draft: Draft, rnd: random.Random) -> None:
    """In-dialog to a dialog that does not exist (or a mangled tag)."""
    to = (draft.get("To") or "<sip:h>").split(";tag=")[0]
    draft.set("To", to + ";tag=" + _pick(rnd, ["x", "", "a" * 200, "%00", "1;tag=2"]))


def change_cseq(draft: Draft, rnd: random.Random) -> None:
    draft.set("CSeq", f"{_pick(rnd, NUMBERS)} {_pick(rnd, [draft.method, *METHODS])}")


def flip_bytes(draft: Draft, rnd: random.Random) -> None:
    """A little byte-level noise too (the parser has its own fuzzing: bench/fuzz_parser.py)."""
    if draft.headers:
        f = draft.headers[rnd.randrange(len(draft.headers))]
        raw = bytearray(f[1].encode("utf-8", "surrogateescape"))
        if raw:
            at = rnd.randrange(len(raw))
            raw[at] = rnd.randrange(32, 256)
        f[1] = raw.decode("utf-8", "surrogateescape")


Mutation = Callable[[Draft, random.Random], None]
MUTATIONS: list[tuple[Mutation, int]] = [
    (corrupt_value, 30), (drop_header, 6), (duplicate_header, 5), (add_header, 6),
    (wrong_content_length, 5), (corrupt_sdp, 14), (corrupt_auth, 12), (change_method, 6),
    (corrupt_request_uri, 8), (to_tag, 3), (change_cseq, 4), (flip_bytes, 3),
]  # fmt: skip
_WEIGHTED = [m for m, w in MUTATIONS for _ in range(w)]


def mutate(draft: Draft, rnd: random.Random) -> Draft:
    out = draft.copy()
    for _ in range(rnd.choice((1, 1, 1, 2, 2, 3))):
        rnd.choice(_WEIGHTED)(out, rnd)
    return out


# --- digest answers -------------------------------------------------------------------------------


def digest_header(method: str, uri: str, user: str, nonce: str, nc: int) -> str:
    """Digest credentials as a handset computes them (RFC 7616, MD5, qop=auth)."""
    ha1 = hashlib.md5(f"{user}:{REALM}:{PASSWORD}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    cnonce, count = secrets.token_hex(4), f"{nc:08x}"
    resp = hashlib.md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{resp}", algorithm=MD5, qop=auth, nc={count}, cnonce="{cnonce}"'
    )


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
    **UNLIMITED_SOURCE,
}
