"""How long the queue engine takes to match callers to volunteers at helpline scale.

A roster of N volunteers on shift (languages mixed as at a Dutch helpline: all Dutch, some
Arabic, Farsi or Turkish, a few trained for 113) and M callers spread over the five queues.
Measures, per size: one dispatch over a full queue with every volunteer free (the worst
case: all are matched in one step), a dispatch tick with nobody free (the steady state of a
busy evening: callers waiting, volunteers talking), and position + estimated-wait lookups
(what announcements cost). The dispatcher runs one step per event and at least every 0.5 s.

    .venv/bin/python bench/bench_queue_engine.py [--volunteers 250 900] [--callers 50 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from queues.engine import QueueConfig, QueueEngine
from queues.roster import Roster, Volunteer

QUEUES = {
    "dutch": QueueConfig(name="dutch", language="nl", priority=10, max_wait=900.0),
    "arabic": QueueConfig(name="arabic", language="ar", priority=10),
    "farsi": QueueConfig(name="farsi", language="fa", priority=10),
    "turkish": QueueConfig(name="turkish", language="tr", priority=10),
    "night_113": QueueConfig(name="night_113", language="nl", skill="113", priority=20),
}
SHARE = {"dutch": 0.8, "arabic": 0.06, "farsi": 0.04, "turkish": 0.06, "night_113": 0.04}


def roster_of(n: int, rng: random.Random) -> Roster:
    roster = Roster()
    for i in range(n):
        langs = {"nl"} | ({rng.choice(["ar", "fa", "tr"])} if rng.random() < 0.15 else set())
        skills = frozenset({"113"}) if rng.random() < 0.1 else frozenset()
        roster.login(Volunteer(f"v{i}", frozenset(langs), skills, f"r{i % 25}"), float(i))
    return roster


def engine_with(volunteers: int, callers: int, seed: int = 1) -> QueueEngine:
    rng = random.Random(seed)
    engine = QueueEngine(QUEUES, roster_of(volunteers, rng))
    names, weights = zip(*SHARE.items(), strict=True)
    for c in range(callers):
        queue = rng.choices(names, weights)[0]
        engine.enqueue(f"c{c}", queue, f"r{c % 25}" if rng.random() < 0.3 else None, 1000.0 + c)
    return engine


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volunteers", type=int, nargs="+", default=[50, 250, 900])
    parser.add_argument("--callers", type=int, nargs="+", default=[20, 100, 300])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'volunteers':>10} {'callers':>8} {'full dispatch ms':>17} {'offers':>7} "
          f"{'idle tick ms':>13} {'announce us':>12}")  # fmt: skip
    for n in args.volunteers:
        for m in args.callers:
            fulls, offers = [], 0
            for r in range(args.repeat):
                engine = engine_with(n, m, seed=r)
                start = time.perf_counter()
                offers = len(engine.dispatch(2000.0))
                fulls.append(time.perf_counter() - start)
            # now every free volunteer is ringing: a tick offers nothing
            idle = timed(lambda e=engine: e.dispatch(2001.0), args.repeat)  # type: ignore[misc]
            waiting = [f"c{c}" for c in range(m) if engine.is_waiting(f"c{c}")][:50]
            announce = timed(
                lambda e=engine, w=waiting: [  # type: ignore[misc]
                    (e.position(c), e.estimated_wait(c, 2001.0)) for c in w
                ],
                args.repeat,
            )
            per_announce = statistics.median(announce) / max(1, len(waiting)) * 1e6
            print(f"{n:>10} {m:>8} {statistics.median(fulls) * 1e3:>17.2f} {offers:>7} "
                  f"{statistics.median(idle) * 1e3:>13.2f} {per_announce:>12.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
