"""Long run of the request-path fuzzer against the real service (tests/helpers/fuzz_requests.py).

Run: .venv/bin/python bench/fuzz_request_path.py [--count 1000000] [--batch 2000] [--udp]
It starts the service (IVR flow, embedded PostgreSQL, loopback, short SIP timers), then sends
mutated real requests in batches: by default straight into the service's UDP receive path (fast;
the answers still go out over UDP to the fuzzing peers), with --udp over a real socket. After each
batch it lets the timers run until no transaction and no call leg is left, and prints a line:

  requests  req/s  exceptions  unanswered  server-transactions-left  legs-left  rss-MB

exceptions: errors logged, exceptions that reached the event loop, requests whose handling
raised. unanswered: server transactions the service never answered (ended by the answer limit)
plus transactions created but not answered once the table is empty. The first problems of each
kind are printed in full. Exit status 1 if there was any.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbx import event_loop  # noqa: E402
from pbx.db.embedded import start_embedded  # noqa: E402
from tests.helpers.fuzz_mutations import PASSWORD, VOLUNTEERS  # noqa: E402
from tests.helpers.fuzz_requests import FUZZ_SETTINGS, Fuzzer, RequestPathWatch  # noqa: E402
from tests.helpers.pg_state import pg_state_dir  # noqa: E402
from tests.helpers.service import running_service  # noqa: E402


def rss_mb() -> float:
    """Resident memory now (not the peak), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


async def run(count: int, batch: int, udp: bool, seed: int) -> int:
    problems_seen: set[str] = set()
    failures = 0
    with pg_state_dir() as pg_dir:
        server = start_embedded(pg_dir)
        try:
            async with running_service(pg_dir / "state", server.url, **FUZZ_SETTINGS) as helpline:
                for name in VOLUNTEERS:
                    await helpline.add_volunteer(name, PASSWORD, languages=["nl"])
                service = helpline.service
                watch = RequestPathWatch(service)
                with watch.watching():
                    fuzzer = await Fuzzer(
                        service, (helpline.host, helpline.port), seed=seed, direct=not udp
                    ).open()
                    print(
                        f"{'requests':>9} {'req/s':>7} {'exceptions':>10} {'unanswered':>10} "
                        f"{'server-txns':>11} {'legs-left':>9} {'rss-MB':>7}",
                        flush=True,
                    )
                    started = time.monotonic()
                    try:
                        while fuzzer.sent < count:
                            t0 = time.monotonic()
                            before = fuzzer.sent
                            await fuzzer.batch(min(batch, count - fuzzer.sent))
                            rate = (fuzzer.sent - before) / max(time.monotonic() - t0, 1e-6)
                            await watch.settle(30)
                            found = watch.check(fuzzer.peers)
                            stats = service.stack.layer.stats
                            exceptions = (
                                len(watch.error_lines()) + len(watch.loop_errors)
                                + service.stack.request_failures
                            )  # fmt: skip
                            live = service.stack.layer.server_count()
                            unanswered = stats.abandoned + max(
                                0, stats.server_created - stats.server_answered - live
                            )
                            print(
                                f"{fuzzer.sent:>9} {rate:>7.0f} {exceptions:>10} {unanswered:>10} "
                                f"{live:>11} {len(service.switchboard.legs):>9} "
                                f"{rss_mb():>7.1f}",
                                flush=True,
                            )
                            for problem in found.problems:
                                key = problem.split('"timestamp"')[0][:200]
                                if key not in problems_seen:
                                    problems_seen.add(key)
                                    print("  PROBLEM:", problem[:700], flush=True)
                            failures += bool(found)
                    finally:
                        fuzzer.close()
                    elapsed = time.monotonic() - started
                    stats = service.stack.layer.stats
                    print(
                        f"done: {fuzzer.sent} requests in {elapsed:.0f} s "
                        f"({fuzzer.sent / elapsed:.0f}/s overall incl. settling), "
                        f"{stats.server_created} server transactions, {stats.server_answered} "
                        f"answered, {stats.abandoned} by the answer limit, "
                        f"{service.stack.requests_malformed} answered 400 for a bad header, "
                        f"{sum(p.stats.calls_answered for p in fuzzer.peers)} calls answered, "
                        f"batches with problems: {failures}",
                        flush=True,
                    )
        finally:
            server.stop()
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--udp", action="store_true", help="send over a real UDP socket")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return event_loop.run(run(args.count, args.batch, args.udp, args.seed))


if __name__ == "__main__":
    raise SystemExit(main())
