"""`helpline serve`: run the service until SIGINT, or SIGTERM and the drain that follows."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import structlog

from ivr.loader import DialplanError
from pbx import collector, event_loop
from pbx.config import ConfigError, Settings, load_settings
from pbx.logs import configure_logging
from pbx.privileges import PrivilegeError, drop_root
from pbx.realtime import request_realtime


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the helpline service",
        description="Run the SIP service. Settings: --config FILE (TOML), HELPLINE_* variables, "
        "then these flags.",
    )
    p.add_argument("--config", type=Path, help="TOML settings file")
    p.add_argument("--sip-host", help="bind address for SIP (default 0.0.0.0)")
    p.add_argument("--sip-port", type=int, help="UDP and TCP port (default 5060)")
    p.add_argument("--tls-port", type=int, help="TLS port (default 5061; 0 disables TLS)")
    p.add_argument("--advertise-host", help="address put in Via/Contact/SDP")
    p.add_argument("--database-url", help="PostgreSQL URL (default: embedded server)")
    p.add_argument("--state-dir", type=Path, help="data directory (default ./var)")
    p.add_argument("--dialplan", type=Path, help="dialplan file (default ./dialplan.yaml)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port (default 9160; 0 disables)")
    p.add_argument("--log-format", choices=["json", "console"])
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        "sip_host": args.sip_host,
        "sip_port": args.sip_port,
        "advertise_host": args.advertise_host,
        "database_url": args.database_url,
        "state_dir": args.state_dir,
        "dialplan": args.dialplan,
        "log_format": args.log_format,
    }
    settings = load_settings(args.config, **overrides)
    if args.tls_port is not None:
        settings.tls_port = args.tls_port or None
    if args.metrics_port is not None:
        settings.metrics_port = args.metrics_port or None
    return settings


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"helpline: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    collector.tune()
    try:
        return event_loop.run(_serve(settings), choice=settings.event_loop)
    except event_loop.EventLoopError as exc:
        print(f"helpline: configuration error: {exc}", file=sys.stderr)
        return 2


async def _serve(settings: Settings) -> int:
    from pbx.app import build_service

    os.umask(0o077)  # whatever else gets written (logs of child processes, ...) stays private
    log = structlog.get_logger("pbx.serve")
    log.info("event_loop", loop=event_loop.loop_name())
    # Before anything starts a thread or a process: they get normal priority (reset on fork).
    realtime = request_realtime(settings.realtime_priority)
    if realtime.granted:
        log.info("realtime_priority", priority=realtime.priority, policy="SCHED_RR")
    elif settings.realtime_priority:
        log.warning("realtime_priority_refused", priority=realtime.priority, why=realtime.reason)
    try:
        service = build_service(settings)
    except (ValueError, FileNotFoundError) as exc:  # a bad recording, a missing hold music file
        print(f"helpline: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        await service.start()
    except DialplanError as exc:
        print(f"helpline: not starting, the dialplan is invalid:\n{exc}", file=sys.stderr)
        await service.stop()
        return 1
    except OSError as exc:
        print(f"helpline: cannot start: {exc}", file=sys.stderr)
        await service.stop()
        return 1
    try:  # sockets are bound and the database is open: root is no longer needed
        embedded = service.db.embedded if service.db is not None else None
        drop_root(
            settings.run_as_user, settings.state_dir, [settings.dialplan, settings.recordings],
            embedded.pgdata if embedded is not None else None,
        )  # fmt: skip
    except (PrivilegeError, OSError) as exc:
        print(f"helpline: not starting as root: {exc}", file=sys.stderr)
        await service.stop()
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[bool]] = []

    def drain() -> None:
        """SIGTERM (`helpline drain`): a planned stop; a second SIGTERM stops at once."""
        if draining:
            stop.set()
            return
        task = asyncio.create_task(service.drain.run())
        task.add_done_callback(lambda _: stop.set())
        draining.append(task)

    loop.add_signal_handler(signal.SIGTERM, drain)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, service.reload_dialplan)
    collector.settle()
    await stop.wait()
    for task in draining:
        task.cancel()
    await service.stop()
    return 0
