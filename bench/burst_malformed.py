"""The issue's burst: N malformed requests of varied kinds from one address (127.0.0.2), then a
trunk call from 127.0.0.1 (sipp). Prints how long the burst took, the transactions it created,
how many were answered, the peak of the table, how long it took to empty, what was left, and
whether the trunk's call was answered afterwards. Same code as tests/test_sip_burst.py.

Run: .venv/bin/python bench/burst_malformed.py [--count 50000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbx import event_loop  # noqa: E402
from pbx.db.embedded import start_embedded  # noqa: E402
from tests.helpers.bursts import burst_from_one_address
from tests.helpers.pg_state import pg_state_dir  # noqa: E402
from tests.helpers.service import UNLIMITED_SOURCE, running_service  # noqa: E402
from tests.peers.sipp import run_sipp_async  # noqa: E402


async def run(count: int, repeat: int) -> int:
    bad = 0
    with pg_state_dir() as pg_dir:
        server = start_embedded(pg_dir)
        try:
            async with running_service(
                pg_dir / "state",
                server.url,
                call_flow="ivr",
                volunteer_whisper="",
                sip_t1=0.1,
                **UNLIMITED_SOURCE,
            ) as helpline:
                for round_ in range(repeat):
                    r = await burst_from_one_address(helpline, count, seed=11 + round_)
                    call = await run_sipp_async(
                        "uac_call", helpline.target, service="09000767", pause_ms=500,
                        timeout_s=20,
                    )  # fmt: skip
                    print(
                        f"burst {round_ + 1}: {r.sent} requests in {r.seconds:.1f} s "
                        f"({r.sent / r.seconds:.0f}/s offered), {r.transactions} transactions "
                        f"created, {r.answered} answered in total, {r.abandoned} by the answer "
                        f"limit, peak {r.peak} live, empty {r.drained_after:.1f} s after the "
                        f"burst, left: {r.left} transactions {r.legs_left} legs; "
                        f"failures raised: {helpline.service.stack.request_failures}; "
                        f"trunk call afterwards: {'answered' if call.ok else 'FAILED'}",
                        flush=True,
                    )
                    bad += int(r.left > 0 or r.legs_left > 0 or not call.ok or r.abandoned > 0)
        finally:
            server.stop()
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    return event_loop.run(run(args.count, args.repeat))


if __name__ == "__main__":
    raise SystemExit(main())
