"""The service and its dialplan: a bad plan is refused with reasons, a reload is atomic."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ivr.loader import DEFAULT_PLAN
from tests.helpers.service import MakeHelpline, free_port

HELPLINE = str(Path(sys.executable).with_name("helpline"))


def _serve(tmp_path: Path, plan: Path, pg_url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    env["HELPLINE_DATABASE_URL"] = pg_url
    env["HELPLINE_RUN_AS_USER"] = ""  # stays root: dropping it is tests/test_privileges.py's
    env["HELPLINE_WEB_PORT"] = "none"  # 8080 may be taken on this machine; not under test here
    return subprocess.Popen(
        [
            HELPLINE, "serve", "--sip-host", "127.0.0.1", "--sip-port", str(free_port()),
            "--tls-port", "0", "--metrics-port", "0", "--state-dir", str(tmp_path / "state"),
            "--dialplan", str(plan),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_service_refuses_to_start_on_an_invalid_plan(tmp_path: Path, pg_url: str) -> None:
    plan = tmp_path / "dialplan.yaml"
    plan.write_text(
        DEFAULT_PLAN.read_text().replace("timezone: Europe/Amsterdam", "timezone: Mars/Olympus")
    )
    proc = _serve(tmp_path, plan, pg_url)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "the dialplan is invalid" in err
    line = next(i for i, t in enumerate(plan.read_text().splitlines(), 1) if "Mars/Olympus" in t)
    assert f"{plan}:{line}:" in err and "Mars/Olympus" in err


def test_reload_swaps_a_valid_plan_and_keeps_the_old_one_on_error(
    tmp_path: Path, pg_url: str
) -> None:
    plan = tmp_path / "dialplan.yaml"
    shutil.copy(DEFAULT_PLAN, plan)
    proc = _serve(tmp_path, plan, pg_url)
    state = tmp_path / "state"
    try:
        deadline = time.monotonic() + 60
        while not (state / "helpline.pid").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}

        def reload() -> None:
            done = subprocess.run(
                [HELPLINE, "reload", "--state-dir", str(state)], capture_output=True, text=True,
                timeout=30, env=env,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr

        plan.write_text(plan.read_text().replace("queues:", "queues:", 1) + "\n")  # valid edit
        reload()
        plan.write_text("nodes: [this is not a plan\n")  # broken
        reload()
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert "dialplan_loaded" in kinds and "dialplan_rejected" in kinds
    assert kinds.index("dialplan_loaded") < kinds.index("dialplan_rejected")
    rejected = next(e for e in events if e["event"] == "dialplan_rejected")
    assert rejected["problems"] >= 1 and str(plan) in rejected["first"][0]
    assert "service_stopped" in kinds  # it kept running on the old plan until told to stop


async def test_reload_in_process_swaps_or_refuses(make_helpline: MakeHelpline) -> None:
    async with make_helpline() as helpline:
        service = helpline.service
        before = service.plan
        assert service.reload_dialplan() and service.plan is not before
        service.settings.dialplan = helpline.settings.state_dir / "missing.yaml"
        assert not service.reload_dialplan()  # refused: the running plan stays
        assert service.plan is not None and service.plan.nodes
