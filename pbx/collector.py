"""How often the cyclic garbage collector runs in the service (set once at start-up).

CPython's default (700 net new container objects per young collection, a middle collection
every 10, a full one every 10 of those) suits short scripts, not a service whose calls each
allocate a few hundred objects that live for the length of the call: at 150 setups/s the young
collections ran ~3 times a second and moved every live call's objects up, so the full
collections (each walking the whole heap: ~170k objects of settings, dialplan, prompts,
volunteers, imports; 70-80 ms apiece) came every few seconds. Measured under
`bench/bench_sip_calls.py --no-whisper --service-cpu 0 --rates 150`, three runs each: 3.65 ->
3.27 CPU ms per call, setup p95 60-128 ms -> 4-12 ms. Garbage is still collected: objects freed
by reference counting (almost all) go at once; only garbage in reference cycles waits longer,
bounded by the thresholds as before.

Raised again once a call's media no longer formed reference cycles (so almost nothing a call
leaves behind needs the collector): what a young collection costs is the objects still alive
in the young generation (the calls up and the transactions lingering 32 s after they end), not
the threshold, so a higher threshold means fewer passes over the same live objects. At 400
setups/s (`bench/bench_sip_calls.py --no-whisper --service-cpu 0`, 20 s, the collector's own
time from `gc.callbacks`): 50000 -> 200000 took the collector from 0.2 to 0.06 CPU ms per call
(15 young, one middle and one full collection of up to 0.4 s -> 3 young ones of ~0.15 s), the
setup p95 from 264 to 84 ms; at 500/s offered, three alternating runs each, 324-384 -> 432-473
setups/s achieved. The price is memory: garbage in cycles may reach 200000 objects (tens of
MB) before it is collected.
"""

from __future__ import annotations

import gc

__all__ = ["MIDDLE", "OLD", "YOUNG", "settle", "tune"]

YOUNG = 200_000  # net new container objects before a young collection (CPython: 700)
MIDDLE = 20  # young collections per middle one (CPython: 10)
OLD = 10  # middle collections per full one (CPython: 10; a full one also waits for 25% growth)


def tune() -> None:
    """Collect less often: young objects get the time to die by reference counting."""
    gc.set_threshold(YOUNG, MIDDLE, OLD)


def settle() -> None:
    """Once the service has started: what start-up built (dialplan, prompts, restored
    registrations) is still young at this threshold, and the first young collection would
    walk all of it in the middle of the first calls (a pause of ~0.1 s, seen as the max setup
    time of every bench run). Collected now, it moves to the oldest generation up front."""
    gc.collect()
