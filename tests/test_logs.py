"""The service's log lines (pbx/logs.py): what the number scrubber redacts, and the timestamp."""

from __future__ import annotations

import datetime
import io
import json
import random
from typing import Any

import structlog

from pbx.logs import _LevelAndTimestamp, configure_logging


def logged(event: str = "event_name", **fields: Any) -> dict[str, Any]:
    """The line one log call writes, as the service's JSON log would hold it."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        structlog.get_logger("test").info(event, **fields)
    finally:
        configure_logging("warning", "console")
    line: dict[str, Any] = json.loads(out.getvalue())
    return line


def test_a_phone_number_in_any_field_is_redacted_and_the_rest_of_the_line_kept() -> None:
    line = logged(call="c1", note="from +31 6 12345678 today", dialed="0612345678", n=3)
    assert line["note"] == "from [redacted] today"
    assert line["dialed"] == "[redacted]"
    assert line["call"] == "c1" and line["n"] == 3


def test_a_line_without_a_number_is_left_as_it_is() -> None:
    line = logged(call="d7d94bc5a5984828", reason="remote_bye", port="5060")
    assert line["call"] == "d7d94bc5a5984828" and line["reason"] == "remote_bye"


def test_digits_in_separate_fields_are_not_joined_into_a_number() -> None:
    line = logged(a="call 0612", b="34567 x", c="12345")  # six digits make a number
    assert (line["a"], line["b"], line["c"]) == ("call 0612", "34567 x", "12345")


def test_the_event_name_is_scrubbed_too() -> None:
    assert logged("called 0612345678")["event"] == "called [redacted]"


def test_the_timestamp_is_iso_utc_with_microseconds_across_second_boundaries() -> None:
    times = iter([1_700_000_000.999999, 1_700_000_001.000001, 1_700_000_001.5, 1_700_000_060.25])
    # (each as datetime.fromtimestamp rounds it: to the nearest microsecond)
    stamp = _LevelAndTimestamp(clock=lambda: next(times))
    for expected in (
        "2023-11-14T22:13:20.999999Z",
        "2023-11-14T22:13:21.000001Z",
        "2023-11-14T22:13:21.500000Z",
        "2023-11-14T22:14:20.250000Z",
    ):
        assert stamp(None, "info", {})["timestamp"] == expected


def test_a_logged_line_carries_the_time_it_was_written() -> None:
    before = datetime.datetime.now(datetime.UTC)
    line = logged(call="c1")
    after = datetime.datetime.now(datetime.UTC)
    written = datetime.datetime.fromisoformat(line["timestamp"])
    assert before - datetime.timedelta(microseconds=1) <= written <= after


def test_the_timestamp_is_the_text_datetime_gives_for_the_same_instant() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        now = rng.uniform(1.6e9, 2.0e9)
        if rng.random() < 0.1:
            now = int(now) + 0.9999996  # rounds up into the next second
        expected = datetime.datetime.fromtimestamp(now, datetime.UTC)
        assert _LevelAndTimestamp(clock=lambda t=now: t)(None, "info", {})["timestamp"] == (
            expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        )


def test_a_number_inside_a_list_tuple_set_or_dict_value_is_redacted_too() -> None:
    from collections import namedtuple

    pair = namedtuple("pair", "a b")
    line = logged(
        statuses=[486, "from 0612345678"], route=("a", "+31 6 12345678"), tags={"0612345678"},
        extra={"0201234567": {"deep": ["x 0612345678"]}, "ok": 5}, p=pair("0612345678", 1),
    )  # fmt: skip
    assert line["statuses"] == [486, "from [redacted]"]
    assert line["route"] == ["a", "[redacted]"]
    assert line["tags"] == "{'[redacted]'}"  # a set is no JSON type: its repr, scrubbed
    assert line["extra"] == {"[redacted]": {"deep": ["x [redacted]"]}, "ok": 5}
    assert line["p"] == ["[redacted]", 1]
    assert "0612345678" not in json.dumps(line) and "0201234567" not in json.dumps(line)


def test_an_object_json_has_no_type_for_is_written_scrubbed() -> None:
    class Holder:
        def __repr__(self) -> str:
            return "Holder(number=0612345678)"

    class Custom:
        def __structlog__(self) -> dict[str, object]:
            return {"n": "tel 0612345678", "k": 1}

    line = logged(held=Holder(), custom=Custom(), size=1234567)
    assert line["held"] == "Holder(number=[redacted])"
    assert line["custom"] == {"n": "tel [redacted]", "k": 1}
    assert line["size"] == 1234567  # integers are left alone: byte counts, durations


def test_a_value_nested_past_the_bound_is_not_written() -> None:
    value: list[object] = ["0612345678"]
    for _ in range(20):
        value = [value]
    assert "0612345678" not in json.dumps(logged(deep=value))


def test_the_console_format_writes_no_number_from_an_object_either() -> None:
    """ConsoleRenderer writes an object's repr after the processors ran, so the scrubber turns
    objects into their scrubbed text first, nested ones too."""

    class Uri:
        def __repr__(self) -> str:
            return "<sip:0612345678@carrier.example>"

    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    try:
        structlog.get_logger("test").info(
            "routed", who=Uri(), hops=[Uri()], by={"k": (Uri(),)}, raw=b"0201234567", n=3
        )
    finally:
        configure_logging("warning", "console")
    line = out.getvalue()
    assert "0612345678" not in line and "0201234567" not in line
    assert "who=<sip:[redacted]@carrier.example>" in line
    assert "hops=['<sip:[redacted]@carrier.example>']" in line and "n=3" in line
