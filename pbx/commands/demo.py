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

from pbx import collector, event_loop
from pbx.config import REPO_ROOT, ConfigError, Settings, load_settings
from pbx.demo.traffic import (
    BACKLINE_HOST,
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
    from pbx.web.server import WebServer


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="run the service with simulated callers and volunteers (loopback only)",
        description="Start the service on its embedded defaults, in its own state directory, "
        "with simulated callers and volunteers that place and answer real calls over loopback.",
    )
    p.add_argument("--minutes", type=float, help="stop after N minutes (default: until Ctrl-C)")
    p.add_argument("--callers-per-minute", type=float, help="default 4")
    p.add_argument("--volunteers", type=int, help="default 6")
    p.add_argument("--talk-seconds", type=float, help="mean conversation length (default 40)")
    p.add_argument("--patience-seconds", type=float,
                   help="mean time callers wait before hanging up (default 90)")  # fmt: skip
    p.add_argument("--state-dir", type=Path, default=REPO_ROOT / "var" / "demo",
                   help="the demo's own data directory (never the real one)")  # fmt: skip
    p.add_argument("--sip-port", type=int, default=5070)
    p.add_argument("--metrics-port", type=int, default=9170)
    p.add_argument("--handover-share", type=float, default=0.05,
                   help="share of answered calls handed over to the simulated 113")  # fmt: skip
    p.add_argument("--seed", type=int)
    p.add_argument("--peak", action="store_true",
                   help="the busiest hour at the helpline's scale (bench/SOAK.md): 36 volunteers,"
                   " 60 callers an hour, 48-minute conversations, every volunteer busy from the"
                   " start; the flags above, when given, override it")  # fmt: skip
    p.add_argument("--role", choices=["all", "service", "traffic"], default="all",
                   help="run both in one process (default), or only the service (with the demo"
                   " accounts and plan) or only the simulated phones, in two processes, so that"
                   " the service's own memory and CPU can be measured (bench/soak.py)")  # fmt: skip
    p.add_argument("--backline-port", type=int, default=0,
                   help="port of the simulated 113 on 127.0.0.3 (split roles: both must agree;"
                   f" default {SPLIT_BACKLINE_PORT} then)")  # fmt: skip
    p.set_defaults(func=run)


SPLIT_BACKLINE_PORT = 5079
DEFAULTS = {"volunteers": 6, "callers_per_minute": 4.0, "talk_seconds": 40.0,
            "patience_seconds": 90.0, "first_callers": 0}  # fmt: skip
# The busiest hour (bench/SOAK.md has the derivation from HELPLINE.md): overrides of the defaults
PEAK = {"volunteers": 36, "callers_per_minute": 1.0, "talk_seconds": 48 * 60.0,
        "patience_seconds": 240.0, "first_callers": 36}  # fmt: skip


def demo_settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(None, state_dir=args.state_dir, sip_host="127.0.0.1",
                             sip_port=args.sip_port, log_format="console")  # fmt: skip
    settings.tls_port = None
    settings.database_url = None  # the embedded database under the demo's state dir
    settings.metrics_host = "127.0.0.1"
    settings.metrics_port = args.metrics_port or None
    settings.log_level = "warning"
    return settings


def wallboard_address(settings: Settings, web: WebServer | None) -> str:
    """Where to watch the demo: the wallboard if it is listening, else the metrics endpoint."""
    if web is not None and web.serving:
        return f"open the wallboard at {web.url}/wallboard"
    why = (
        f"no wallboard (port {settings.web_port} could not be bound, see the log)"
        if settings.web_port is not None
        else "no wallboard configured"
    )
    if settings.metrics_port:
        return f"{why}; metrics at http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    return f"{why}, no metrics address either"


def run(args: argparse.Namespace) -> int:
    try:
        settings = demo_settings(args)
    except ConfigError as exc:
        print(f"helpline: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    config = traffic_config(args)
    seconds = args.minutes * 60 if args.minutes is not None else None
    # The service runs as `helpline serve` runs it: its event loop, its collector thresholds.
    collector.tune()
    loop = settings.event_loop
    if args.role == "service":
        event_loop.run(run_service(settings, config, seconds), choice=loop)
        return 0
    if args.role == "traffic":
        address = (settings.sip_host, settings.sip_port)
        summary = event_loop.run(run_traffic(address, config, seconds), choice=loop)
    else:
        summary = event_loop.run(run_demo(settings, config, seconds), choice=loop)
    print(summary.render(), flush=True)
    return 0


def traffic_config(args: argparse.Namespace) -> TrafficConfig:
    """The flags given, over the peak preset (with --peak), over the defaults."""
    values = {**DEFAULTS, **(PEAK if args.peak else {})}
    for name in ("callers_per_minute", "volunteers", "talk_seconds", "patience_seconds"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    backline = args.backline_port or (SPLIT_BACKLINE_PORT if args.role != "all" else 0)
    return TrafficConfig(
        callers_per_minute=float(values["callers_per_minute"]),
        volunteers=int(values["volunteers"]),
        talk_seconds=float(values["talk_seconds"]),
        patience_seconds=float(values["patience_seconds"]),
        first_callers=int(values.get("first_callers", 0)), seed=args.seed,
        handover_share=args.handover_share, backline_port=backline,
    )  # fmt: skip


async def run_service(settings: Settings, config: TrafficConfig, seconds: float | None) -> None:
    """Only the service, with the demo's plan (113 at the simulated 113's fixed address) and
    accounts, until stopped or for `seconds`; `--role traffic` brings the phones."""
    from pbx.app import build_service

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.dialplan = demo_plan(settings.dialplan, settings.state_dir / "dialplan.yaml",
                                  (BACKLINE_HOST, config.backline_port))  # fmt: skip
    service = build_service(settings)
    try:
        await service.start()
        await add_demo_volunteers(service, settings, config.volunteers)
        port = service.stack.port(TransportKind.UDP)
        print(f"helpline demo: service ready on sip:{settings.sip_host}:{port}", flush=True)
        await _until_stopped(seconds)
    finally:
        await service.stop()


async def run_traffic(
    server: tuple[str, int], config: TrafficConfig, seconds: float | None
) -> Summary:
    """Only the simulated phones, against a service started with `--role service`."""
    traffic = Traffic(config)
    await traffic.start_backline()
    try:
        await traffic.start_volunteers(server)
        print(f"helpline demo: {config.volunteers} volunteers on shift, callers arriving at "
              f"{config.callers_per_minute:g}/minute on sip:{server[0]}:{server[1]}",
              flush=True)  # fmt: skip
        await _callers_until_stopped(traffic, seconds)
        print("helpline demo: no new callers; letting the calls in progress end", flush=True)
        await traffic.finish(grace=60.0)
    finally:
        await traffic.backline.close()
    return traffic.summary


async def _until_stopped(seconds: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)


async def _callers_until_stopped(traffic: Traffic, seconds: float | None) -> None:
    callers = asyncio.ensure_future(traffic.run_callers(seconds if seconds else 10**9))
    stopper = asyncio.ensure_future(_until_stopped(None))
    await asyncio.wait({callers, stopper}, return_when=asyncio.FIRST_COMPLETED)
    callers.cancel()
    stopper.cancel()
    await asyncio.gather(stopper, return_exceptions=True)


async def add_demo_volunteers(service: HelplineService, settings: Settings, count: int) -> None:
    """Demo accounts in the demo's own database (kept when they exist from an earlier run)."""
    from pbx.db.volunteers import DuplicateUser, VolunteerRepository

    db = service.db
    if db is None:
        raise RuntimeError("the demo needs the service's database for its volunteer accounts")
    repo = VolunteerRepository(db.pool)
    for index, name in enumerate(volunteer_names(count)):
        with contextlib.suppress(DuplicateUser):  # already there from an earlier demo run
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
        print(f"helpline demo: {wallboard_address(settings, service.web)}")
        print("helpline demo: Ctrl-C stops it and prints a summary", flush=True)
    await _callers_until_stopped(traffic, seconds)
    if not quiet:
        print("helpline demo: no new callers; letting the calls in progress end", flush=True)
    await traffic.finish(grace=grace if grace is not None else 60.0)
    return traffic.summary
