"""Throughput of the sans-IO SIP transaction layer for a typical call flow.

Per call, as a UAS over UDP: INVITE in (100 Trying out), 180 and 200 from the TU, ACK for the 2xx
in (delivered to the TU), BYE in, 200 from the TU; timers are fired as the clock advances. Prints
transactions per second with messages pre-parsed (the layer alone) and including parse_message.

    .venv/bin/python bench/bench_transactions.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import time

from pbx.sip.message import Request, make_response
from pbx.sip.parser import parse_message
from pbx.sip.peer import Peer, TransportKind
from pbx.sip.transactions import Deliver, TransactionLayer

PHONE = Peer(TransportKind.UDP, "127.0.0.2", 5070)

TEMPLATE = (
    "{method} sip:0900@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.2:5070;rport;branch=z9hG4bK{branch}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:anonymous@anonymous.invalid>;tag=f{n}\r\n"
    "To: <sip:0900@127.0.0.1>{to_tag}\r\n"
    "Call-ID: bench-{n}@127.0.0.2\r\n"
    "CSeq: {cseq} {method}\r\n"
    "Contact: <sip:127.0.0.2:5070>\r\n"
    "Content-Length: 0\r\n\r\n"
)


def call_messages(n: int) -> list[bytes]:
    return [
        TEMPLATE.format(method="INVITE", branch=f"i{n}", n=n, to_tag="", cseq=1).encode(),
        TEMPLATE.format(method="ACK", branch=f"a{n}", n=n, to_tag=f";tag=t{n}", cseq=1).encode(),
        TEMPLATE.format(method="BYE", branch=f"b{n}", n=n, to_tag=f";tag=t{n}", cseq=2).encode(),
    ]


def run(calls: int, parse_inside: bool) -> tuple[float, int]:
    raw = [call_messages(n) for n in range(calls)]
    parsed = None if parse_inside else [[parse_message(m) for m in msgs] for msgs in raw]
    layer = TransactionLayer(max_transactions=calls * 2 + 10)
    delivered = 0
    now = 0.0
    start = time.perf_counter()
    for n in range(calls):
        msgs = [parse_message(m) for m in raw[n]] if parsed is None else parsed[n]
        invite, ack, bye = msgs
        now += 0.001
        (deliver,) = [e for e in layer.receive(invite, PHONE, now) if isinstance(e, Deliver)]
        tid = deliver.transaction
        assert tid is not None and isinstance(invite, Request) and isinstance(bye, Request)
        layer.send_response(tid, make_response(invite, 180, to_tag=f"t{n}"), now)
        layer.send_response(tid, make_response(invite, 200, to_tag=f"t{n}"), now)
        delivered += len(layer.receive(ack, PHONE, now))
        (bye_in,) = layer.receive(bye, PHONE, now)
        assert isinstance(bye_in, Deliver) and bye_in.transaction is not None
        layer.send_response(bye_in.transaction, make_response(bye, 200), now)
        if n % 1000 == 999:
            layer.on_timer(now)
    layer.on_timer(now + 3600.0)
    elapsed = time.perf_counter() - start
    assert len(layer) == 0 and delivered == calls
    return elapsed, 2 * calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    for parse_inside, label in ((False, "layer only"), (True, "with parse_message")):
        elapsed, transactions = run(args.calls, parse_inside)
        print(
            f"{label:20s} {args.calls} calls, {transactions} transactions in {elapsed:.2f} s: "
            f"{transactions / elapsed:,.0f} transactions/s, {args.calls / elapsed:,.0f} calls/s"
        )


if __name__ == "__main__":
    main()
