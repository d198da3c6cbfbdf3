"""`helpline demo`'s simulator against the real service: simulated callers on the trunk address
and volunteers' handsets on 127.0.0.2 place and answer real SIP/RTP calls for a bounded time;
the summary the demo prints must agree with the service's metrics and its call records.

The load is high for four volunteers and callers are impatient, so that callers give up while
waiting, while a volunteer's handset rings and (the race this guards) while a volunteer is
being connected to them (whisper on, as in the demo); the run then closes with calls still
waiting and talking, which are hung up and must be counted as the service counts them."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import asyncpg

from ivr.loader import DEFAULT_PLAN
from pbx.cli import build_parser
from pbx.commands.demo import SPLIT_BACKLINE_PORT, drive, traffic_config
from pbx.demo.traffic import Traffic, TrafficConfig, demo_plan
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.polling import until
from tests.helpers.service import MakeHelpline

RUN_SECONDS = 35
GRACE_SECONDS = 8  # then the callers still waiting hang up, conversations are ended


def _histogram_count(helpline_metrics: object, name: str) -> int:
    total = 0.0
    for family in helpline_metrics.registry.collect():  # type: ignore[attr-defined]
        for sample in family.samples:
            if sample.name == f"{name}_count":
                total += sample.value
    return int(total)


def _counter(helpline_metrics: object, name: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for family in helpline_metrics.registry.collect():  # type: ignore[attr-defined]
        for sample in family.samples:
            if sample.name == f"{name}_total":
                out[next(iter(sample.labels.values()))] += int(sample.value)
    return out


async def test_demo_summary_agrees_with_metrics_and_call_records(
    make_helpline: MakeHelpline, pg_url: str, tmp_path: Path
) -> None:
    config = TrafficConfig(
        callers_per_minute=40, volunteers=4, talk_seconds=5, patience_seconds=10,
        miss_share=0.25, handover_share=0.4, seed=14,
    )  # fmt: skip
    traffic = Traffic(config)
    plan = demo_plan(DEFAULT_PLAN, tmp_path / "dialplan.yaml", await traffic.start_backline())
    async with ivr_helpline(make_helpline, plan, volunteer_whisper="queue_announce") as helpline:
        summary = await drive(
            helpline.service, helpline.settings, traffic, RUN_SECONDS, quiet=True,
            grace=GRACE_SECONDS,
        )  # fmt: skip
        metrics = helpline.service.metrics
        # every call the demo placed ended (none left hanging when the grace ran out)
        await until(lambda: sum(_counter(metrics, "helpline_calls").values()) >= summary.offered)
        outcomes = _counter(metrics, "helpline_calls")
        answered = _histogram_count(metrics, "helpline_queue_answered_wait_seconds")
        abandoned = _histogram_count(metrics, "helpline_queue_abandoned_wait_seconds")
        conn = await asyncpg.connect(pg_url)
        try:
            for _ in range(100):  # the records are written behind
                rows = await conn.fetch("SELECT * FROM call_records")
                if len(rows) >= summary.offered:
                    break
                await asyncio.sleep(0.1)
        finally:
            await conn.close()
    print(summary.render(), outcomes, answered, abandoned, sep="\n")
    # traffic of every kind flowed
    assert summary.offered >= 15 and summary.refused == 0 and summary.unfinished == 0
    assert summary.answered >= 3 and summary.abandoned >= 1
    assert summary.volunteer_misses >= 1
    assert set(summary.by_entry) >= {"national", "local", "partner"}
    # the demo's figures are the service's figures
    assert sum(outcomes.values()) == summary.offered
    assert answered == summary.answered
    assert outcomes["answered"] + outcomes["handed_over"] == summary.answered
    assert outcomes["handed_over"] == summary.handed_over == summary.backline_answered >= 1
    assert outcomes["abandoned"] == summary.abandoned
    assert abandoned <= summary.abandoned  # the others hung up in the menu, before a queue
    assert len(rows) == summary.offered
    assert sum(1 for r in rows if r["answered_by"] is not None) == summary.answered
    assert Counter(r["entry_kind"] for r in rows) == summary.by_entry
    to_113 = [r for r in rows if r["transfer_to"] == "backline_113"]
    assert [r["transfer_result"] for r in to_113] == ["answered"] * summary.backline_answered


def test_demo_command_takes_its_scale_flags() -> None:
    args = build_parser().parse_args(
        ["demo", "--minutes", "3", "--callers-per-minute", "12", "--volunteers", "9"]
    )
    assert (args.minutes, args.callers_per_minute, args.volunteers) == (3, 12, 9)
    assert args.state_dir.name == "demo"  # never the real state directory


def test_peak_preset_with_overrides_and_split_roles() -> None:
    args = build_parser().parse_args(["demo", "--peak", "--volunteers", "40", "--role", "traffic"])
    config = traffic_config(args)
    # the busiest hour (bench/SOAK.md), with the flag given winning over the preset
    assert (config.volunteers, config.callers_per_minute, config.first_callers) == (40, 1.0, 36)
    assert config.talk_seconds == 48 * 60
    # split into two processes, the service's plan and the phones agree on where 113 is
    assert config.backline_port == SPLIT_BACKLINE_PORT
    plain = traffic_config(build_parser().parse_args(["demo"]))
    assert (plain.volunteers, plain.callers_per_minute, plain.first_callers) == (6, 4.0, 0)
    assert plain.backline_port == 0
