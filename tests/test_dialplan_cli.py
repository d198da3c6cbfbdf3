"""`helpline check`, `helpline simulate` and `helpline dialplan render` as an admin runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ivr.diagram import to_dot
from ivr.loader import DEFAULT_PLAN, load_dialplan
from pbx.media.prompts import PromptLibrary

ROOT = Path(__file__).parents[1]


def helpline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from pbx.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_check_default_plan_is_ok() -> None:
    result = helpline("check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("0 warning(s)")
    assert ": OK: 19 steps, 9 numbers" in result.stdout


def test_check_lists_every_problem_with_position(tmp_path: Path) -> None:
    text = DEFAULT_PLAN.read_text()
    text = text.replace("timezone: Europe/Amsterdam", "timezone: Europe/Amsterdan", 1)
    text = text.replace("    next: language_menu", "    next: languag_menu", 1)
    bad = tmp_path / "dialplan.yaml"
    bad.write_text(text)
    result = helpline("check", str(bad))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    tz_line = text.splitlines().index("timezone: Europe/Amsterdan") + 1
    assert (
        lines[0] == f"{bad}:{tz_line}:11: unknown time zone 'Europe/Amsterdan'; use a name "
        "like 'Europe/Amsterdam'"
    )
    assert "names node 'languag_menu'" in lines[1] and "did you mean 'language_menu'" in lines[1]
    assert lines[-1] == f"{bad}: 2 error(s); the plan was not loaded"


def test_simulate_prints_the_path() -> None:
    result = helpline("simulate", "--number", "09000767", "--at", "2026-03-29 19:30", "--keys", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(" 1. welcome (play, nl); hears welcome [nl]")
    assert "queue arabic open at Sun 19:30 CEST" in lines[2]
    assert lines[-1].endswith("=> queue arabic")
    bad = helpline("simulate", "--number", "1", "--at", "tomorrow")
    assert bad.returncode == 2 and "YYYY-MM-DD HH:MM" in bad.stderr


def test_render_svg_names_every_step(tmp_path: Path) -> None:
    out = tmp_path / "plan.svg"
    result = helpline("dialplan", "render", "-o", str(out))
    assert result.returncode == 0, result.stderr
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    plan = load_dialplan(DEFAULT_PLAN, prompts=PromptLibrary())
    for name in plan.nodes:
        assert f">{name}</text>" in svg, name
    dot = to_dot(plan)
    assert '"step:language_menu" -> "step:arabic" [label="key 2"]' in dot


def test_simulate_takes_the_holiday_path_on_christmas_and_kings_day_2027() -> None:
    """No date of 2027 is in the plan: the holidays come from the `holidays` library."""
    assert "2027-" not in DEFAULT_PLAN.read_text()
    for at, holiday in (("2027-12-25 11:00", "Christmas Day"), ("2027-04-27 11:00", "King's Day")):
        result = helpline("simulate", "--number", "0900-1234567", "--at", at)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert "schedule info_line closed at" in lines[0] and lines[0].endswith(f"({holiday})")
        assert lines[-1].endswith("=> voicemail info_line")
