"""The console's dialplan page: the plan in force's fingerprint, its diagram, check and reload.

Checking reads the file named by the settings, as `helpline check` does, and reports the same
messages (file:line:column); only a plan that loads is swapped in.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from dataclasses import dataclass

from ivr.diagram import to_dot
from ivr.loader import DialplanError, load_dialplan
from ivr.model import Dialplan
from pbx.plan_in_force import PlanInForce


def fingerprint(plan: Dialplan) -> str:
    """A version for the plan in force: a digest of what it does (its diagram's source)."""
    return hashlib.sha256(to_dot(plan).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class CheckResult:
    loaded: bool
    messages: list[str]


class DialplanView:
    def __init__(self, plans: PlanInForce) -> None:
        self.plans = plans
        self._svg: tuple[str, bytes] | None = None  # (fingerprint, drawing)

    def version(self) -> str:
        return fingerprint(self.plans.current())

    async def diagram(self) -> bytes:
        version = self.version()
        if self._svg is None or self._svg[0] != version:
            self._svg = (version, await asyncio.to_thread(_draw, self.plans.current()))
        return self._svg[1]

    async def check_and_reload(self) -> CheckResult:
        path = self.plans.path
        try:
            plan = await asyncio.to_thread(load_dialplan, path, prompts=self.plans.prompts)
        except DialplanError as exc:
            errors = sum(1 for p in exc.problems if p.severity == "error")
            lines = [str(p) for p in exc.problems]
            return CheckResult(
                False, [*lines, f"{path}: {errors} error(s); the plan was not loaded"]
            )
        summary = [str(w) for w in plan.warnings] + [
            f"{path}: OK: {len(plan.nodes)} steps, {len(plan.numbers)} numbers, "
            f"{len(plan.queues)} queues, {len(plan.schedules)} schedules, "
            f"{len(plan.destinations)} destinations, {len(plan.warnings)} warning(s)"
        ]
        if not self.plans.reload():  # changed again between the check and the reload
            return CheckResult(False, [*summary, f"{path}: changed meanwhile; not loaded"])
        return CheckResult(True, [*summary, f"loaded: version {self.version()}"])


def _draw(plan: Dialplan) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        return b'<svg xmlns="http://www.w3.org/2000/svg"><text y="20">graphviz missing</text></svg>'
    done = subprocess.run(
        [dot, "-Tsvg"], input=to_dot(plan).encode(), capture_output=True, timeout=60, check=False
    )
    return done.stdout
