"""The dialplan in force: loaded at start, swapped atomically on reload (SIGHUP).

A plan that does not load is refused with every problem and the running one stays; a call keeps
the plan it began with (it holds that object), new calls take the one in force.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from ivr.loader import DialplanError, load_dialplan
from ivr.model import Dialplan
from ivr.problems import Problem
from ivr.prompts import KnownPrompts
from pbx.calls.queue_settings import engine_settings
from pbx.calls.transfers import key_clashes
from pbx.config import Settings
from pbx.metrics import Metrics
from queues.dispatcher import Dispatcher

log = structlog.get_logger("pbx.plan_in_force")


class PlanInForce:
    def __init__(
        self, settings: Settings, prompts: KnownPrompts, dispatcher: Dispatcher, metrics: Metrics
    ) -> None:
        self.settings = settings  # names the file, read at every (re)load
        self.prompts = prompts  # the recordings the service plays: the plan is checked against them
        self.dispatcher = dispatcher  # its queues follow the plan's
        self.metrics = metrics
        self.plan: Dialplan | None = None

    def current(self) -> Dialplan:
        assert self.plan is not None, "the service loads its dialplan before taking calls"
        return self.plan

    @property
    def path(self) -> Path:
        return self.settings.dialplan

    def load(self) -> Dialplan:
        """At start; raises DialplanError (with every problem) for an invalid plan."""
        self._swap_in(self._load())
        return self.current()

    def reload(self) -> bool:
        try:
            plan = self._load()
        except DialplanError as exc:
            self.metrics.dialplan_reloads.labels(result="rejected").inc()
            log.error(
                "dialplan_rejected",
                file=str(self.path),
                problems=len(exc.problems),
                first=[str(p) for p in exc.problems[:5]],
            )
            return False
        self._swap_in(plan)
        self.metrics.dialplan_reloads.labels(result="loaded").inc()
        log.info("dialplan_loaded", file=str(self.path), nodes=len(plan.nodes))
        return True

    def _load(self) -> Dialplan:
        plan = load_dialplan(self.path, prompts=self.prompts)
        s = self.settings
        in_call = {  # a destination's keys must not mean something else in a call
            s.handover_complete_keys: "handover_complete_keys",
            s.handover_cancel_keys: "handover_cancel_keys",
            s.backline_keys: "backline_keys",
        }
        if clashes := key_clashes(plan, in_call):
            raise DialplanError([Problem(str(self.path), 1, 1, c) for c in clashes])
        return plan

    def _swap_in(self, plan: Dialplan) -> None:
        self.plan = plan
        self.dispatcher.configure(engine_settings(plan.queues))
