"""`helpline check`, `helpline simulate`, `helpline dialplan render`: the admin's dialplan tools."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from ivr.diagram import DiagramError, render
from ivr.loader import DEFAULT_PLAN, DialplanError, Problem, load_dialplan
from ivr.model import Dialplan
from ivr.simulate import simulate
from pbx.media.prompts import DEFAULT_RECORDINGS, PromptLibrary


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = subparsers.add_parser(
        "check",
        help="validate dialplan.yaml and list every problem with its line and column",
        description="Exit status 0 when the plan is valid (warnings are printed), 1 otherwise.",
    )
    check.add_argument("file", nargs="?", type=Path, default=DEFAULT_PLAN, metavar="FILE")
    check.add_argument("--recordings", type=Path, help="recordings directory to check prompts in")
    check.set_defaults(func=_check)

    sim = subparsers.add_parser(
        "simulate",
        help="follow a call through the dialplan: what the caller hears and where it ends",
        description='Example: helpline simulate --number 09000767 --at "2026-03-29 19:30" '
        "--keys 2. Keys: one character per key press, '-' lets a prompt time out.",
    )
    sim.add_argument("--number", required=True, help="the number the caller dialled")
    sim.add_argument(
        "--at",
        required=True,
        help='"YYYY-MM-DD HH:MM" in the plan\'s time zone (or ISO 8601 with an offset)',
    )
    sim.add_argument("--keys", default="", help="keys the caller presses, in order")
    sim.add_argument("--plan", type=Path, default=DEFAULT_PLAN, help="dialplan file")
    sim.set_defaults(func=_simulate)

    dialplan = subparsers.add_parser("dialplan", help="dialplan tools (render)")
    sub = dialplan.add_subparsers(dest="dialplan_command", required=True, metavar="ACTION")
    draw = sub.add_parser(
        "render",
        help="draw the call flow as SVG or PNG (Graphviz dot)",
        description="The format follows the output file's suffix: .svg or .png.",
    )
    draw.add_argument("--plan", type=Path, default=DEFAULT_PLAN, help="dialplan file")
    draw.add_argument("-o", "--output", type=Path, required=True, help="out.svg or out.png")
    draw.set_defaults(func=_render)


def _known_prompts(plan: Path, recordings: Path | None) -> PromptLibrary:
    """The recordings the plan's prompts are checked in (default: the repository's)."""
    try:
        return PromptLibrary(recordings or DEFAULT_RECORDINGS)
    except (FileNotFoundError, ValueError) as exc:
        raise DialplanError([Problem(str(plan), 1, 1, f"cannot check prompts: {exc}")]) from exc


def _load(path: Path, recordings: Path | None = None) -> Dialplan | None:
    try:
        plan = load_dialplan(path, prompts=_known_prompts(path, recordings))
    except DialplanError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
    for warning in plan.warnings:
        print(warning, file=sys.stderr)
    return plan


def _check(args: argparse.Namespace) -> int:
    try:
        plan = load_dialplan(args.file, prompts=_known_prompts(args.file, args.recordings))
    except DialplanError as exc:
        for problem in exc.problems:
            print(problem)
        errors = sum(1 for p in exc.problems if p.severity == "error")
        print(f"{args.file}: {errors} error(s); the plan was not loaded")
        return 1
    for warning in plan.warnings:
        print(warning)
    print(
        f"{args.file}: OK: {len(plan.nodes)} steps, {len(plan.numbers)} numbers, "
        f"{len(plan.queues)} queues, {len(plan.schedules)} schedules, "
        f"{len(plan.destinations)} destinations, {len(plan.warnings)} warning(s)"
    )
    return 0


def _parse_at(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _simulate(args: argparse.Namespace) -> int:
    at = _parse_at(args.at)
    if at is None:
        print(f'--at {args.at!r}: write the time as "YYYY-MM-DD HH:MM"', file=sys.stderr)
        return 2
    bad = [k for k in args.keys if k not in "0123456789*#-"]
    if bad:
        print(f"--keys: {bad[0]!r} is not a phone key (0-9, *, #, or - for none)", file=sys.stderr)
        return 2
    plan = _load(args.plan)
    if plan is None:
        return 1
    steps = simulate(plan, args.number, at, args.keys)
    for i, step in enumerate(steps, start=1):
        print(f"{i:2d}. {step.describe()}")
    return 0


def _render(args: argparse.Namespace) -> int:
    plan = _load(args.plan)
    if plan is None:
        return 1
    try:
        render(plan, args.output)
    except DiagramError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0
