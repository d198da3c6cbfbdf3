"""Fuzzing through the whole request path of the running service: mutated real requests (seeds
captured from sipp and PJSIP) reach the switchboard, registrar, digest checks, trunk policy, SDP
answering, feature codes and the dialplan, over real UDP on loopback. After each batch: nothing
raised, nothing was left unanswered, and once the timers ran no transaction or call leg is left.
Bounded: a few thousand requests; the long run is bench/fuzz_request_path.py."""

from __future__ import annotations

import pytest

from tests.helpers.fuzz_mutations import PASSWORD, VOLUNTEERS
from tests.helpers.fuzz_requests import FUZZ_SETTINGS, Fuzzer, RequestPathWatch
from tests.helpers.service import MakeHelpline

BATCHES, PER_BATCH = 6, 500


@pytest.mark.timeout(120)
async def test_mutated_requests_are_each_answered_once_and_leave_nothing_behind(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline(**FUZZ_SETTINGS) as helpline:
        for name in VOLUNTEERS:
            await helpline.add_volunteer(name, PASSWORD, languages=["nl"])
        watch = RequestPathWatch(helpline.service)
        with watch.watching():
            fuzzer = await Fuzzer(helpline.service, (helpline.host, helpline.port), seed=7).open()
            try:
                for batch in range(BATCHES):
                    await fuzzer.batch(PER_BATCH)
                    await watch.settle(20)
                    problems = watch.check(fuzzer.peers)
                    assert not problems, f"after batch {batch}:\n{problems}"
            finally:
                fuzzer.close()
        stats = helpline.service.stack.layer.stats
        assert fuzzer.sent >= BATCHES * PER_BATCH
        # the mutated requests reached the application, not only the parser
        assert stats.server_created > BATCHES * PER_BATCH // 2
        assert sum(p.stats.calls_answered for p in fuzzer.peers) > 20
