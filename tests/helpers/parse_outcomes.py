"""What the SIP syntax layer makes of a fixed corpus, one line per input, for comparing builds.

Run as a program (``python -m tests.helpers.parse_outcomes``) it prints whether the compiled
modules are in use (pbx/native.py) and then one line per input: the parsed message's wire form
and the fields the call layer reads, or the failure's status, reason and what it knew. The
corpus: the RFC 4475 torture messages, the fuzz seeds, and seeded mutations of each (bytes
flipped, cut, repeated), each parsed as a datagram, plus all of them fed through one stream
framer in seeded chunks. tests/test_native.py compares the plain and the compiled output.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path

from pbx import native
from pbx.sip.errors import SipParseError
from pbx.sip.message import Message, Request
from pbx.sip.parser import ParseFailure, StreamFramer, parse_message

DATA = Path(__file__).resolve().parents[1] / "data"
MUTATIONS = 40  # per input


def corpus() -> list[bytes]:
    files = sorted((DATA / "sip-torture").glob("*.dat")) + sorted(
        (DATA / "fuzz-seeds").glob("*.sip")
    )
    inputs = [p.read_bytes() for p in files]
    rnd = random.Random(4475)
    mutated = []
    for data in inputs:
        for _ in range(MUTATIONS):
            b = bytearray(data)
            for _ in range(rnd.randint(1, 4)):
                at = rnd.randrange(len(b))
                kind = rnd.randrange(4)
                if kind == 0:
                    b[at] = rnd.randrange(256)
                elif kind == 1:
                    del b[at : at + rnd.randint(1, 8)]
                elif kind == 2:
                    b[at:at] = b[at : at + rnd.randint(1, 16)]
                else:
                    b[at:at] = rnd.choice([b"\r\n", b";", b",", b":", b"<", b'"', b" ", b"\t"])
            mutated.append(bytes(b))
    return inputs + mutated


def describe(message: Message) -> str:
    head = f"{message.method} {message.uri}" if isinstance(message, Request) else message.status
    try:
        fields = (message.top_via, message.call_id, message.cseq, message.from_, message.to,
                  message.contacts)  # fmt: skip
    except SipParseError as exc:
        fields = (f"accessor failed: {exc.status} {exc}",)
    return f"ok {head!r} {fields!r} {message.to_bytes()!r}"


def outcome(data: bytes) -> str:
    try:
        return describe(parse_message(data, datagram=True))
    except ParseFailure as exc:
        names = exc.headers.to_lines() if exc.headers is not None else None
        return f"refused {exc.status} {exc!s} request={exc.is_request} headers={names}"
    except SipParseError as exc:
        return f"error {exc.status} {exc!s}"


def framable(data: bytes) -> bool:
    """Frames as one whole message on a stream (Content-Length present and right)."""
    framer = StreamFramer()
    items = framer.feed(data)
    return not framer.broken and len(items) == 1 and not isinstance(items[0], ParseFailure)


def stream_outcomes(inputs: list[bytes]) -> Iterator[str]:
    rnd = random.Random(3261)
    framer = StreamFramer()
    stream = b"".join(inputs)
    pos = 0
    while pos < len(stream) and not framer.broken:
        step = rnd.randint(1, 3000)
        for item in framer.feed(stream[pos : pos + step]):
            if isinstance(item, ParseFailure):
                yield f"stream refused {item.status} {item!s}"
            else:
                yield "stream " + describe(item)
        pos += step
    yield f"stream broken={framer.broken} at {pos}"


def main() -> None:
    print(f"native={native.STATUS.active}")
    inputs = corpus()
    for data in inputs:
        print(outcome(data))
    for line in stream_outcomes([d for d in inputs if framable(d)]):
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
