"""`helpline demo`: the service on its embedded defaults with simulated callers and volunteers
talking real SIP and RTP to it over loopback, in a state directory of its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pbx.config import REPO_ROOT, ConfigError, Settings, load_settings
from pbx.demo.traffic import (
    DEMO_PASSWORD,
    Summary,
    Traffic,
    TrafficConfig,
    demo_plan,
    volunteer_names,
    volunteer_profile,
)
from pbx.logs import configure_logging
from pbx.sip.peer import TransportKind

if TYPE_CHECKING:
    from pbx.service import HelplineService


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the service with simulated callers and volunteers (loopback only)",
        description="Start the service on its embedded defaults, in its own state directory, "
        "with simulated callers and volunteers that place and answer real calls over loopback.",
    )
    p.add_argument("--minutes", type=float, help="stop after N minutes (default: until Ctrl-C)")
    p.add_argument("--callers-per-minute", type=float, default=4.0)
    p.add_argument("--volunteers", type=int, default=6)
    p.add_argument("--talk-seconds", type=float, default=40.0, help="mean conversation length")
    p.add_argument("--patience-seconds", type=float, default=90.0, help="mean time callers wait")
    p.add_argument("--state-dir", type=Path, default=REPO_ROOT / "var" / "demo",
                   help="the demo's own data directory (never the real one)")  # fmt: skip
    p.add_argument("--sip-port", type=int, default=5070)
    p.add_argument("--metrics-port", type=int, default=9170)
    p.add_argument("--handover-share", type=float, default=0.05,
                   help="share of answered calls handed over to the simulated 113")  # fmt: skip
    p.add_argument("--seed", type=int)
    p.set_defaults(func=run)


def demo_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(None, state_dir=args.state_dir, sip_host="127.0.0.1",
                             sip_port=args.sip_port, log_format="console")  # fmt: skip
    settings.tls_port = None
    settings.database_url = None  # the embedded database under the demo's state dir
    settings.metrics_host = "127.0.0.1"
    settings.metrics_port = args.metrics_port or None
    settings.log_level = "warning"
    return settings


def wallboard_address(settings: Settings) -> str:
    """The web wallboard's address when the service has one, else the metrics endpoint."""
    if settings.web_port:
        return f"http://{settings.web_host}:{settings.web_port}/wallboard"
    if settings.metrics_port:
        return f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    return "(no web or metrics address configured)"


def run(args: argparse.Namespace) -> int:
    try:
        settings = demo_settings(args)
    except ConfigError as exc:
        print(f"helpline: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    config = TrafficConfig(
        callers_per_minute=args.callers_per_minute, volunteers=args.volunteers,
        talk_seconds=args.talk_seconds, patience_seconds=args.patience_seconds, seed=args.seed,
        handover_share=args.handover_share,
    )  # fmt: skip
    seconds = args.minutes * 60 if args.minutes is not None else None
    summary = asyncio.run(run_demo(settings, config, seconds))
    print(summary.render(), flush=True)
    return 0


async def add_demo_volunteers(service: HelplineService, settings: Settings, count: int) -> None:
    """Demo accounts in the demo's own database (kept when they exist from an earlier run)."""
    from pbx.db.volunteers import VolunteerRepository

    db = service.db
    if db is None:
        raise RuntimeError("the demo needs the service's database for its volunteer accounts")
    repo = VolunteerRepository(db.pool)
    for index, name in enumerate(volunteer_names(count)):
        with contextlib.suppress(Exception):  # already there from an earlier demo run
            await repo.create(name, DEMO_PASSWORD, settings.realm, **volunteer_profile(index))  # type: ignore[arg-type]
    await service.reload_credentials()


async def run_demo(
    settings: Settings, config: TrafficConfig, seconds: float | None, quiet: bool = False
) -> Summary:
    from pbx.app import build_service

    traffic = Traffic(config)
    backline = await traffic.start_backline()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # the plan in force, its 113 destination pointed at the simulated 113 on loopback
    settings.dialplan = demo_plan(settings.dialplan, settings.state_dir / "dialplan.yaml", backline)
    service = build_service(settings)
    try:
        await service.start()
        return await drive(service, settings, traffic, seconds, quiet=quiet)
    finally:
        await traffic.backline.close()
        await service.stop()


async def drive(
    service: HelplineService,
    settings: Settings,
    traffic: Traffic,
    seconds: float | None,
    *,
    quiet: bool = False,
    grace: float | None = None,
) -> Summary:
    """Volunteers log in, callers arrive for `seconds` (None: until SIGINT/SIGTERM), then the
    calls in progress end (for at most `grace` seconds) and the summary is returned."""
    config = traffic.config
    await add_demo_volunteers(service, settings, config.volunteers)
    server = (settings.sip_host, service.stack.port(TransportKind.UDP))
    await traffic.start_volunteers(server)
    if not quiet:
        rate = f"{config.callers_per_minute:g}/minute"
        print(f"helpline demo: {config.volunteers} volunteers on shift, callers arriving at "
              f"{rate} on sip:{server[0]}:{server[1]}")  # fmt: skip
        print(f"helpline demo: open the wallboard at {wallboard_address(settings)}")
        print("helpline demo: Ctrl-C stops it and prints a summary", flush=True)
    callers = asyncio.ensure_future(traffic.run_callers(seconds if seconds else 10**9))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({callers, stopper}, return_when=asyncio.FIRST_COMPLETED)
    callers.cancel()
    stopper.cancel()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    if not quiet:
        print("helpline demo: no new callers; letting the calls in progress end", flush=True)
    await traffic.finish(grace=grace if grace is not None else 60.0)
    return traffic.summary
