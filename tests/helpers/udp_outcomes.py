"""What ``pbx.media.udp`` does, line by line, so its plain and compiled twins can be compared.

``python -c "from tests.helpers.udp_outcomes import main; main()"`` prints whether the compiled
modules are active and then one line per step: real datagrams over loopback between 127.0.0.1
and 127.0.0.2, the sources as ``address()`` gives them (ports by name, as they differ between
runs), peers made from good and bad addresses, and the errors of an empty and a closed socket.
The peers themselves differ between the twins (tuples and bytes), so only how they behave is
printed.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

import pbx  # noqa: F401  (activates the compiled modules when HELPLINE_NATIVE asks for them)
from pbx import native
from pbx.media import udp


def _outcome(step: Callable[[], Any]) -> str:
    try:
        return f"= {step()!r}"
    except OSError as exc:
        return f"! {type(exc).__name__} {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    except (TypeError, ValueError) as exc:
        return f"! {type(exc).__name__}"


def main() -> None:
    print(f"native={native.STATUS.active}")
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.2", 0))
    a.setblocking(False)
    b.setblocking(False)
    names = {a.getsockname()[1]: "A", b.getsockname()[1]: "B"}

    def named(address: Any) -> Any:
        return (address[0], names.get(address[1], "?"), *address[2:])

    a_recv, b_send = udp.receiver(a), udp.sender(b)
    to_a = udp.peer(socket.AF_INET, a.getsockname())
    from_b = udp.peer(socket.AF_INET, b.getsockname())
    assert to_a is not None
    lines = [
        "peer of A " + ("made" if to_a is not None else "none"),
        "send 172 " + _outcome(lambda: b_send(bytes(range(172)), to_a)),
        "send 0 " + _outcome(lambda: b_send(b"", to_a)),
        "send 3000 " + _outcome(lambda: b_send(b"x" * 3000, to_a)),
        "send bytearray " + _outcome(lambda: b_send(bytearray(b"rtp"), to_a)),
        "send memoryview " + _outcome(lambda: b_send(memoryview(b"xrtpx")[1:4], to_a)),
    ]
    for size in (2048, 2048, 100, 2048):  # the 3000 bytes arrive cut to 100, as recvfrom does
        data, source = a_recv(size)
        lines.append(f"received {len(data)} {data[:4]!r} from {named(udp.address(source))}")
        lines.append(f"  source is the peer of B: {source == from_b}")
        lines.append(f"  source is the peer of A: {source == to_a}")
    data, source = a_recv(2048)
    lines.append(f"received {data!r}")
    lines.append("nothing waiting " + _outcome(lambda: a_recv(2048)))
    lines.append("negative size " + _outcome(lambda: a_recv(-1)))
    for address in [
        ("127.0.0.2", 5004), ("127.0.0.2", 0), ("127.0.0.2", 65536), ("127.0.0.2", -1),
        ("::1", 5004), ("localhost", 5004), ("127.0.0.2\x00", 5004), ("1.2.3", 5004),
        ("é", 5004), (b"127.0.0.2", 5004), ("127.0.0.2", "5004"), ("127.0.0.2",),
        ["127.0.0.2", 5004],
    ]:  # fmt: skip
        made = udp.peer(socket.AF_INET, address)
        shown = None if made is None else udp.address(made)
        lines.append(f"peer {address!r}: {shown!r}")
    for address in [
        ("::1", 5004), ("::1", 5004, 1, 0), ("0:0::1", 5004), ("::ffff:127.0.0.2", 5004),
        ("127.0.0.2", 5004), ("::1", 5004, -1, 0), ("::1", 5004, 0x100000, 0),
        ("::1", 5004, 0, "eth0"),
    ]:  # fmt: skip
        made = udp.peer(socket.AF_INET6, address)
        shown = None if made is None else udp.address(made)
        lines.append(f"peer6 {address!r}: {shown!r}")
    a.close()
    lines.append("receive on a closed socket " + _outcome(lambda: a_recv(2048)))
    b.close()
    lines.append("send on a closed socket " + _outcome(lambda: b_send(b"x", to_a)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
