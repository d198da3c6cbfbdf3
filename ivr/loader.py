"""Load and validate dialplan.yaml into an `ivr.model.Dialplan`, all or nothing.

Every problem found is collected (not just the first) and raised together in one
`DialplanError`, each with file, line and column, so an admin can fix them in one go.

The steps, each in its own module:
- `ivr.yaml_reader`: the YAML tree with the position of every key and value, and typed reading
  of settings (each wrong value is a `Problem` at its position);
- `ivr.build` (with `build_schedules`, `build_flow`, `references`): building the model, and
  checking that every name used is defined;
- the checks on the built plan: `ivr.check_graph` (endless loops, unreachable steps),
  `ivr.check_prompts` (every prompt recorded in every language callers hear it in),
  `ivr.check_hours` (overlapping opening hours, while the hours are read).

Errors stop the plan from loading. Warnings do not (they are in `Dialplan.warnings`):
- a node no number, queue overflow or `unknown_number` can reach (a draft, harmless);
- a loop a caller who presses nothing goes round forever, but with menu waits in it.
A loop with no key press and no wait at all (play/goto/hours only) is an error.

The caller hands in the recorded prompts to check against (`KnownPrompts`; the service and
`helpline check` pass a `pbx.media.prompts.PromptLibrary` of their recordings).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ivr.build import PlanBuilder
from ivr.check_graph import check_graph
from ivr.check_prompts import check_prompts
from ivr.model import Dialplan
from ivr.problems import DialplanError, Problem, Severity
from ivr.prompts import KnownPrompts
from ivr.yaml_reader import Reader, parse_yaml

__all__ = [
    "DEFAULT_PLAN",
    "DialplanError",
    "KnownPrompts",
    "Problem",
    "Severity",
    "load_dialplan",
    "load_dialplan_text",
]

DEFAULT_PLAN = Path(__file__).parents[1] / "dialplan.yaml"


def load_dialplan(path: Path | str, *, prompts: KnownPrompts) -> Dialplan:
    """Load and validate `path`; raise DialplanError listing every problem. Prompts are
    checked against `prompts`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DialplanError([Problem(str(path), 1, 1, f"cannot read the file: {exc}")]) from exc
    return load_dialplan_text(text, str(path), prompts=prompts)


def load_dialplan_text(
    text: str, filename: str = "<dialplan>", *, prompts: KnownPrompts
) -> Dialplan:
    """As load_dialplan, from the text of a plan (`filename` is used in messages)."""
    doc = parse_yaml(text, filename)
    reader = Reader(filename)
    builder = PlanBuilder(reader)
    plan = builder.build(doc)
    if plan is not None:
        positions = {name: info.pos for name, info in builder.flow.node_info.items()}
        check_graph(reader, plan, positions)
        check_prompts(reader, plan, prompts, builder.flow.node_info)
    ordered = sorted(reader.problems, key=lambda p: (p.line, p.column))
    if plan is None or reader.has_errors():
        raise DialplanError(ordered)
    return replace(plan, warnings=tuple(str(p) for p in ordered))
