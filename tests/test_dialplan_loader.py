"""dialplan.yaml validation: every mistake an admin can make is named with its line and column,
and a plan with an error never loads (no half-loaded plan)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.loader import DEFAULT_PLAN, DialplanError, Problem, load_dialplan, load_dialplan_text
from ivr.model import HoursNode, MenuNode, NumberKind, TransferNode
from pbx.media.prompts import DEFAULT_RECORDINGS, PromptLibrary

RECORDINGS = PromptLibrary(DEFAULT_RECORDINGS)  # the prompts every plan here is checked in

BASE = """\
timezone: Europe/Amsterdam
languages: [nl, ar]
schedules:
  always:
    weekly:
      every day: "00:00-24:00"
  evenings:
    weekly:
      every day: "18:00-22:00"
queues:
  dutch:
    language: nl
    schedule: always
    max_wait: 900
    overflow: full
  arabic:
    language: ar
    schedule: evenings
    max_wait: 600
    overflow: dutch
numbers:
  - number: "0900-0767"
    type: national
    start: welcome
unknown_number: welcome
destinations:
  backline_113:
    uri: "sip:0800113@trunk.example.nl"
flow:
  welcome:
    type: play
    prompts: welcome
    next: menu
  menu:
    type: menu
    prompts: language_menu
    keys:
      1: dutch
      2: arabic
    invalid_key: invalid_key
    no_input: no_input
    default: dutch
  dutch:
    type: queue
    queue: dutch
  arabic:
    type: hours
    language: ar
    queue: arabic
    open: arabic_queue
    closed: closed
  arabic_queue:
    type: queue
    queue: arabic
  closed:
    type: menu
    prompts: closed
    keys:
      1: dutch
    retries: 0
    default: dutch
  full:
    type: hangup
    prompts: max_wait_message
"""


def where(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of `needle` in `text`."""
    index = -1
    for _ in range(nth + 1):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def problems(text: str, **kwargs: object) -> list[Problem]:
    with pytest.raises(DialplanError) as info:
        load_dialplan_text(text, "plan.yaml", **{"prompts": RECORDINGS, **kwargs})  # type: ignore[arg-type]
    return info.value.problems


def only_error(text: str, **kwargs: object) -> Problem:
    found = [p for p in problems(text, **kwargs) if p.severity == "error"]
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_base_plan_loads() -> None:
    plan = load_dialplan_text(BASE, "plan.yaml", prompts=RECORDINGS)
    assert plan.languages == ("nl", "ar")
    assert plan.entry_for("0900 0767")[0] == "welcome"
    assert plan.entry_for("+31 900 0767")[1] is not None
    assert plan.entry_for("0612345678") == ("welcome", None)
    node = plan.nodes["arabic"]
    assert isinstance(node, HoursNode) and node.schedule == "evenings"
    assert plan.warnings == ()


def test_default_dialplan_is_valid_and_models_the_helpline() -> None:
    plan = load_dialplan(DEFAULT_PLAN, prompts=RECORDINGS)
    assert plan.warnings == ()
    assert str(plan.timezone) == "Europe/Amsterdam"
    assert plan.languages == ("nl", "ar", "fa", "tr")
    assert plan.numbers["09000767"].kind is NumberKind.NATIONAL
    kinds = {n.kind for n in plan.numbers.values()}
    assert kinds == set(NumberKind)
    assert all(n.region for n in plan.numbers.values() if n.kind is NumberKind.LOCAL)
    assert all(n.partner for n in plan.numbers.values() if n.kind is NumberKind.PARTNER)
    assert plan.queues["night_113"].skill == "113"
    menu = plan.nodes["language_menu"]
    assert isinstance(menu, MenuNode) and menu.default == "dutch"
    assert set(menu.keys) == {"1", "2", "3", "4"}
    transfers = [n for n in plan.nodes.values() if isinstance(n, TransferNode)]
    assert transfers and all(t.destination in plan.destinations for t in transfers)


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        # unknown keys, with a suggestion
        (
            "timezone:",
            "timezon:",
            "timezon",
            "unknown setting 'timezon' in the dialplan (did you mean 'timezone'?)",
        ),
        ("    schedule: always", "    schedual: always", "schedual", "did you mean 'schedule'?"),
        (
            "    next: menu",
            "    nxt: menu",
            "nxt",
            "unknown setting 'nxt' in step 'welcome' (did you mean 'next'?)",
        ),
        # wrong types
        (
            "    default: dutch\n  dutch:",
            "    timeout: soon\n    default: dutch\n  dutch:",
            "soon",
            "`timeout` in step 'menu' must be a number of seconds, not text",
        ),
        (
            "    default: dutch\n  dutch:",
            "    retries: 1.5\n    default: dutch\n  dutch:",
            "1.5",
            "`retries` in step 'menu' must be a whole number",
        ),
        (
            "    default: dutch\n  dutch:",
            "    timeout: 500\n    default: dutch\n  dutch:",
            "500",
            "between 1 and 60 seconds",
        ),
        ("type: play", "type: ply", "ply", "unknown step type 'ply' (did you mean 'play'?)"),
        ('"0900-0767"', "09000767", "09000767", "write the phone number in quotes"),
        # unknown references
        (
            "    schedule: always",
            "    schedule: allways",
            "allways",
            "names schedule 'allways', which is not defined under `schedules:` (did you mean "
            "'always'?)",
        ),
        (
            "    queue: dutch\n  arabic:",
            "    queue: dutsch\n  arabic:",
            "dutsch",
            "names queue 'dutsch'",
        ),
        (
            "    next: menu",
            "    next: meny",
            "meny",
            "names node 'meny', which is not defined under `flow:` (did you mean 'menu'?)",
        ),
        ("      2: arabic", "      2: arabik", "arabik", "key 2 of step 'menu' names node"),
        ("start: welcome", "start: hello", "hello", "`start` in number 0900-0767 names node"),
        (
            "language: ar\n    queue: arabic",
            "language: fa\n    queue: arabic",
            "fa\n",
            "language 'fa' in step 'arabic' is not one of the plan's languages (nl, ar)",
        ),
        # menu keys
        (
            "      1: dutch\n      2",
            "      x: dutch\n      2",
            "x:",
            "'x' in step 'menu' is not a phone key",
        ),
        # hours
        (
            '"18:00-22:00"',
            '"18:00-25:00"',
            '"18:00-25:00"',
            "25:00 in schedule 'evenings' is not a time of day",
        ),
        ('"18:00-22:00"', '"10:00-10:00"', '"10:00-10:00"', "starts and ends at the same time"),
        ('"18:00-22:00"', '"6pm-10pm"', '"6pm-10pm"', "is not a time range"),
        (
            '"18:00-22:00"',
            '["18:00-22:00", "21:00-23:00"]',
            "every day: [",
            "on monday, tuesday, "
            "wednesday, thursday, friday, saturday, sunday in schedule 'evenings', 18:00-22:00 "
            "overlaps 21:00-23:00",
        ),
        (
            '      every day: "18:00-22:00"',
            '      monday: "22:00-03:00"\n      tuesday: "02:00-04:00"',
            "tuesday",
            "on tuesday in schedule 'evenings', 22:00-03:00 (from the day "
            "before) overlaps 02:00-04:00",
        ),
        (
            '      every day: "18:00-22:00"',
            '      weekdays: "18:00-22:00"\n      friday: "18:00-20:00"',
            "friday",
            "friday in schedule 'evenings' is already given by 'weekdays' on line 9",
        ),
        (
            '      every day: "18:00-22:00"',
            '      evry day: "18:00-22:00"',
            "evry day",
            "(did you mean 'every day'?)",
        ),
        (
            '      every day: "18:00-22:00"',
            '      every day: "18:00-22:00"\n    exceptions:\n      2026-13-01: closed',
            "2026-13-01",
            "is not a date; write it as YYYY-MM-DD",
        ),
        # time zone
        (
            "Europe/Amsterdam",
            "Europe/Amsterdamm",
            "Europe/Amsterdamm",
            "unknown time zone 'Europe/Amsterdamm'",
        ),
        # destinations and toll fraud
        ('"sip:0800113@trunk.example.nl"', '"0800113"', '"0800113"', "is not a SIP address"),
        (
            "    queue: arabic\n  closed:",
            "    queue: arabic\n  t:\n    type: transfer\n"
            '    destination: "sip:0031201234@evil.example"\n  closed:',
            '"sip:0031201234',
            "a transfer may only go to a destination listed under `destinations:`",
        ),
        # numbers
        (
            "unknown_number:",
            '  - number: "090-00767"\n    type: local\n    region: Noord\n'
            "    start: welcome\nunknown_number:",
            '"090-00767"',
            "number 090-00767 is listed twice (also on line 22)",
        ),
        (
            "    type: national",
            "    type: nationaal",
            "nationaal",
            "unknown number type 'nationaal' (did you mean 'national'?)",
        ),
        (
            "unknown_number:",
            '  - number: "020-1234567"\n    type: local\n    start: welcome\nunknown_number:',
            'number: "020',
            "is a local number and needs a `region:`",
        ),
        (
            "unknown_number:",
            '  - number: "088-1234567"\n    type: partner\n    start: welcome\nunknown_number:',
            'number: "088',
            "needs a `partner:` name",
        ),
        (
            "    queue: arabic\n    open:",
            "    open:",
            "  arabic:\n    type: hours",
            "needs either `schedule:` or `queue:`",
        ),
    ],
)
def test_broken_plan_names_the_problem_and_its_place(
    old: str, new: str, needle: str, message: str
) -> None:
    text = edit(old, new)
    problem = only_error(text)
    assert message in problem.message
    line, column = where(text, needle)
    if needle.startswith("  arabic:"):
        line, column = line, column + 2  # the step's name
    assert (problem.line, problem.column) == (line, column), str(problem)
    assert problem.file == "plan.yaml"
    assert str(problem).startswith(f"plan.yaml:{line}:{column}: ")


def test_every_error_is_reported_at_once() -> None:
    text = edit("timezone: Europe/Amsterdam", "timezone: Mars/Olympus")
    text = edit("    next: menu", "    next: nowhere", text)
    text = edit("      2: arabic", "      7: arabic\n      7: dutch", text)
    found = problems(text)
    # The duplicate YAML key is a syntax error on its own line; fix it and both others show.
    assert [(p.line, p.column) for p in found] == [where(text, "7: dutch")]
    assert "duplicate key" in found[0].message
    text = edit("      7: arabic\n      7: dutch", "      2: arabic", text)
    found = problems(text)
    assert [(p.line, p.column) for p in found] == [where(text, "Mars"), where(text, "nowhere")]


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = edit("languages: [nl, ar]", "languages: [nl, ar")
    problem = only_error(text)
    assert problem.message.startswith("YAML syntax:")
    assert problem.line in (2, 3)


def test_silent_loop_is_an_error() -> None:
    text = edit("    next: menu", "    next: again") + (
        "  again:\n    type: goto\n    next: welcome\n"
    )
    problem = only_error(text)
    assert "endless loop: welcome -> again -> welcome" in problem.message
    assert (problem.line, problem.column) == where(text, "welcome:")


def test_menu_loop_without_keys_is_only_a_warning() -> None:
    text = edit("    default: dutch\n  dutch:", "    default: welcome\n  dutch:")
    plan = load_dialplan_text(text, "plan.yaml", prompts=RECORDINGS)
    assert len(plan.warnings) == 1
    assert "presses nothing goes round welcome -> menu -> welcome" in plan.warnings[0]
    assert plan.warnings[0].startswith(f"plan.yaml:{where(text, 'welcome:')[0]}:3: warning: ")


def test_unreachable_step_is_a_warning() -> None:
    text = BASE + "  orphan:\n    type: hangup\n    prompts: goodbye\n"
    plan = load_dialplan_text(text, "plan.yaml", prompts=RECORDINGS)
    line, _ = where(text, "orphan:")
    assert plan.warnings == (
        f"plan.yaml:{line}:3: warning: step 'orphan' is never reached (no number, menu or "
        "other step leads to it)",
    )


def test_unknown_prompt_is_an_error() -> None:
    text = edit("    prompts: welcome", "    prompts: [welcome, welkom]")
    problem = only_error(text)
    assert "prompt 'welkom' does not exist" in problem.message
    assert "did you mean 'welcome'?" in problem.message
    assert (problem.line, problem.column) == where(text, "welkom")


@pytest.fixture
def thin_recordings(tmp_path: Path) -> Path:
    """nl has every prompt the base plan uses; ar lacks `closed`."""
    for lang, names in {
        "nl": ("welcome", "language_menu", "invalid_key", "no_input", "closed", "max_wait_message"),
        "ar": ("welcome", "language_menu", "invalid_key", "no_input", "max_wait_message"),
    }.items():
        (tmp_path / lang).mkdir()
        for name in names:
            shutil.copy(DEFAULT_RECORDINGS / lang / f"{name}.wav", tmp_path / lang / f"{name}.wav")
    return tmp_path


def test_prompt_missing_in_a_language_callers_reach_it_in(thin_recordings: Path) -> None:
    problem = only_error(BASE, prompts=PromptLibrary(thin_recordings))
    # `closed` is heard after `language: ar`, so the Arabic recording is required...
    assert problem.message.startswith("prompt 'closed' has no recording in ar")
    assert (problem.line, problem.column) == where(BASE, "closed", 3)
    # ...but a prompt only ever heard in Dutch need not exist in Arabic.
    dutch_only = edit("    language: ar\n    queue: arabic\n", "    queue: arabic\n")
    assert load_dialplan_text(dutch_only, "plan.yaml", prompts=PromptLibrary(thin_recordings))


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DialplanError) as info:
        load_dialplan(tmp_path / "nope.yaml", prompts=RECORDINGS)
    assert "cannot read the file" in info.value.problems[0].message
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(DialplanError) as info:
        load_dialplan(empty, prompts=RECORDINGS)
    assert info.value.problems[0].message == "the dialplan is empty"


@pytest.mark.parametrize(
    ("old", "new", "key", "where"),
    [
        ("    type: hours\n", "    type:\n", "type", "step 'arabic'"),  # was a KeyError
        ("    start: welcome\n", "    start:\n", "start", "number 0900-0767"),  # was dropped
        ("    schedule: evenings\n", "    schedule:\n", "schedule", "queue 'arabic'"),
        ("    open: arabic_queue\n", "    open: null\n", "open", "step 'arabic'"),
    ],
)
def test_required_setting_left_empty_is_an_error_at_its_line(
    old: str, new: str, key: str, where: str
) -> None:
    text = edit(old, new)
    problem = [p for p in problems(text) if p.severity == "error"][0]
    assert problem.message == f"`{key}` in {where} is empty; give it a value"
    assert (problem.line, problem.column) == where_(text, new)


def where_(text: str, line_text: str) -> tuple[int, int]:
    """Position of the setting on the line `line_text` (its first non-blank character)."""
    line, _ = where(text, line_text)
    return line, len(line_text) - len(line_text.lstrip()) + 1


def test_missing_required_sections() -> None:
    found = problems("timezone: Europe/Amsterdam\n")
    messages = [p.message for p in found]
    for section in ("schedules", "queues", "numbers", "unknown_number", "flow"):
        assert f"the dialplan needs a `{section}:` setting" in messages


@pytest.mark.parametrize("missing", ["max_wait", "overflow"])
def test_every_queue_needs_a_way_out(missing: str) -> None:
    """A queue without max_wait or overflow would let a caller wait forever: refused, at the
    queue's line, saying why."""
    lines = {"max_wait": "    max_wait: 600\n", "overflow": "    overflow: dutch\n"}
    text = edit(lines[missing], "")
    problem = only_error(text)
    assert (problem.line, problem.column) == where(text, "arabic:")
    assert problem.message.startswith(f"queue 'arabic' needs `{missing}:`: every queue needs")


def test_the_default_plan_gives_every_queue_a_way_out() -> None:
    plan = load_dialplan(DEFAULT_PLAN, prompts=RECORDINGS)
    assert all(q.max_wait and q.overflow for q in plan.queues.values())
    for name in ("arabic", "farsi", "turkish"):  # to a Dutch volunteer, told so in their language
        overflow = plan.nodes[plan.queues[name].overflow or ""]
        assert overflow.prompts == ("overflow_to_dutch",)
        assert plan.nodes[overflow.next].queue == "dutch"  # type: ignore[attr-defined]
    backline = plan.nodes[plan.queues["night_113"].overflow or ""]
    assert isinstance(backline, TransferNode) and backline.destination == "backline_113"
    night = plan.queues["night_113"]  # nobody trained on shift: to 113 sooner than max_wait
    assert night.unstaffed_wait is not None and night.max_wait is not None
    assert night.unstaffed_wait < night.max_wait
