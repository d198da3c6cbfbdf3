"""The request-path fuzzer's seeds and mutations (tests/helpers/fuzz_requests.py runs them).

Seeds are real requests that sipp and PJSIP sent to the service (`tests/data/fuzz-seeds/`, see its
README); each mutation corrupts a draft of one where the application rather than the parser reads.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
