"""Builds the web server from the service's parts (called by the composition root)."""

from __future__ import annotations

import ssl

from pbx.config import Settings
from pbx.db.persistence import Persistence
from pbx.directory import Directory
from pbx.plan_in_force import PlanInForce
from pbx.sip.registrar import Registrar
from pbx.web.console import Console
from pbx.web.dialplan_view import DialplanView
from pbx.web.guard import LoginThrottle, Sessions
from pbx.web.server import WebServer
from pbx.web.tally import DayTally
from queues.dispatcher import Dispatcher
from queues.roster import Roster


def build_web(
    s: Settings,
    *,
    roster: Roster,
    dispatcher: Dispatcher,
    registrar: Registrar,
    directory: Directory,
    persistence: Persistence,
    plans: PlanInForce,
    tally: DayTally,
) -> WebServer:
    tls = None
    if s.web_tls_cert is not None and s.web_tls_key is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.load_cert_chain(s.web_tls_cert, s.web_tls_key)
    console = Console(
        roster=roster,
        dispatcher=dispatcher,
        registrar=registrar,
        directory=directory,
        persistence=persistence,
        dialplan=DialplanView(plans),
        sessions=Sessions(),
        throttle=LoginThrottle(),
        secure_cookies=tls is not None,
    )
    return WebServer(
        s.web_host,
        s.web_port,
        roster=roster,
        dispatcher=dispatcher,
        tally=tally,
        console=console,
        tls=tls,
    )
