"""Longer fuzzing of the SIP parser than CI runs: mutated RFC 4475 messages for N seconds.

Run: .venv/bin/python bench/fuzz_parser.py [--seconds 60] [--seed 1]
With atheris installed (`pip install atheris`, needs clang), `--atheris` hands the same target to
libFuzzer instead. Anything raised other than ParseFailure, or a parsed message whose
serialization does not parse back to the same message, is printed and counted.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

from pbx.sip.message import Request
from pbx.sip.parser import ParseFailure, StreamFramer, parse_message

DATA = Path(__file__).parent.parent / "tests" / "data" / "sip-torture"
SPICE = [
    b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"=", b'"', b"\\", b"<", b">", b"[",
    b"]", b"@", b"%", b"%0", b"%00", b"/", b"?", b"*", b"\x00", b"\xff", b"\xc3", b"0" * 50,
    b"9" * 5000, b"SIP/2.0", b"sip:", b"Via: ", b"l: ", b"Content-Length: 99", b"\r\n\r\n",
    b"\r\n ", b"[::1]", b"sips:", b"tel:", b"<sip:a@b>", b"Contact: *\r\n", "１²".encode(),
]  # fmt: skip


def target(data: bytes) -> str | None:
    """None when the parser behaved; otherwise a short description of what went wrong."""
    for datagram in (True, False):
        try:
            message = parse_message(data, datagram=datagram)
            message.vias, message.from_, message.to, message.cseq, message.contacts  # noqa: B018
            message.routes, message.record_routes  # noqa: B018
            if isinstance(message, Request):
                message.max_forwards  # noqa: B018
            if parse_message(message.to_bytes(), datagram=False) != message:
                return "round trip changed the message"
        except ParseFailure:
            pass
        except Exception as exc:  # noqa: BLE001 - finding these is the point
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            return f"{type(exc).__name__} at {frame.filename}:{frame.lineno}: {exc!r:.120}"
    framer = StreamFramer()
    try:
        for i in range(0, len(data), 7):
            framer.feed(data[i : i + 7])
    except Exception as exc:  # noqa: BLE001
        return f"StreamFramer: {type(exc).__name__}: {exc!r:.120}"
    return None


def mutate(rnd: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rnd.randint(1, 8)):
        at = rnd.randint(0, len(data))
        kind = rnd.randrange(5)
        if kind == 0:
            data[at:at] = rnd.choice(SPICE)
        elif kind == 1:
            del data[at : at + rnd.randint(1, 20)]
        elif kind == 2:
            data[at : at + rnd.randint(1, 8)] = rnd.choice(SPICE)
        elif kind == 3 and at < len(data):
            data[at] ^= 1 << rnd.randrange(8)
        else:
            data[at:at] = data[at : at + rnd.randint(1, 80)]
    return bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--atheris", action="store_true")
    args = parser.parse_args()
    if args.atheris:
        import atheris

        def one(data: bytes) -> None:
            problem = target(data)
            if problem:
                raise AssertionError(problem)

        atheris.Setup([sys.argv[0], f"-max_total_time={int(args.seconds)}", str(DATA)], one)
        atheris.Fuzz()
        return 0
    seeds = [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]
    rnd = random.Random(args.seed)
    seen: dict[str, bytes] = {}
    count = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        data = mutate(rnd, rnd.choice(seeds))
        problem = target(data)
        if problem and problem not in seen:
            seen[problem] = data
            print(problem, "\n  input:", data[:300])
        count += 1
    print(f"{count} inputs, {len(seen)} distinct problems")
    return 1 if seen else 0


if __name__ == "__main__":
    raise SystemExit(main())
