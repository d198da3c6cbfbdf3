"""Which destinations a volunteer may hand a caller over to, and how they are named: the
dialplan's `volunteer_keys` (checked by the loader, as `helpline check` does), the keys and
REFER targets derived from it, and the Replaces of an attended transfer. Pure, no IO."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.loader import DEFAULT_PLAN, DialplanError, load_dialplan, load_dialplan_text
from ivr.model import Dialplan
from pbx.calls.consult_calls import ConsultCalls
from pbx.calls.transfers import VolunteerTransfers, key_clashes
from pbx.media.prompts import DEFAULT_RECORDINGS, PromptLibrary

PROMPTS = PromptLibrary(DEFAULT_RECORDINGS)


def plan(text: str | None = None) -> Dialplan:
    if text is None:
        return load_dialplan(DEFAULT_PLAN, prompts=PROMPTS)
    return load_dialplan_text(text, "plan.yaml", prompts=PROMPTS)


def messages(text: str) -> list[str]:
    with pytest.raises(DialplanError) as caught:
        plan(text)
    return [p.message for p in caught.value.problems]


def test_the_default_plan_lets_volunteers_reach_the_info_line_and_crisis_service() -> None:
    transfers = VolunteerTransfers(lambda: plan(), "backline_113", "*9")
    assert transfers.by_keys() == {"*7": "info_line", "*8": "crisis_service", "*9": "backline_113"}


@pytest.mark.parametrize("keys", ["7", "*", "*7x", "*1234", "**#9x"])
def test_volunteer_keys_must_be_star_or_hash_and_keys(keys: str) -> None:
    text = DEFAULT_PLAN.read_text().replace('volunteer_keys: "*7"', f'volunteer_keys: "{keys}"')
    assert any("`volunteer_keys` in destination 'info_line' must be" in m for m in messages(text))


def test_two_destinations_cannot_share_keys() -> None:
    text = DEFAULT_PLAN.read_text().replace('volunteer_keys: "*8"', 'volunteer_keys: "*7"')
    assert any("already destination 'info_line'" in m for m in messages(text))


def test_refer_targets_are_allowed_destinations_only() -> None:
    transfers = VolunteerTransfers(lambda: plan(), "backline_113", "*9")
    assert transfers.for_refer("<sip:info-line@pbx.test>") == "info_line"  # URI user part
    assert transfers.for_refer("sip:info_line@pbx.test") == "info_line"  # name
    assert transfers.for_refer("<sip:*8@pbx.test>") == "crisis_service"  # keys
    assert transfers.for_refer("<sip:0800-0113@pbx.test>") == "backline_113"
    for forbidden in ("<sip:0612345678@pbx.test>", "<sip:pbx.test>", "<tel:+31612345678>", "x"):
        assert transfers.for_refer(forbidden) is None


def test_a_destination_without_keys_is_not_for_volunteers(tmp_path: Path) -> None:
    text = DEFAULT_PLAN.read_text().replace('    volunteer_keys: "*7"\n', "")
    transfers = VolunteerTransfers(lambda: plan(text), "backline_113", "*9")
    assert transfers.for_refer("<sip:info-line@pbx.test>") is None
    assert "*7" not in transfers.by_keys()


def test_replaces_names_a_consult_call_by_call_id_and_both_tags() -> None:
    transfers = VolunteerTransfers(lambda: plan(), "backline_113", "*9")

    async def nowhere(uri: object) -> object:
        raise AssertionError("not called")

    calls = ConsultCalls(None, None, transfers, nowhere)  # type: ignore[arg-type]
    known = object()
    calls.calls[("abc@h", frozenset({"ours", "theirs"}))] = known  # type: ignore[assignment]
    refer_to = "<sip:info-line@pbx.test?Replaces=abc%40h%3Bto-tag%3Dours%3Bfrom-tag%3Dtheirs>"
    assert calls.replaced(refer_to) is known
    assert calls.replaced(refer_to.replace("theirs", "other")) is None
    assert calls.replaced("<sip:info-line@pbx.test>") is None
    assert calls.destination("info-line") == "info_line"
    assert calls.destination("*7") is None  # keys are for in-call use, not for dialling


def test_a_destination_cannot_use_the_in_call_keys_of_the_settings() -> None:
    text = DEFAULT_PLAN.read_text().replace('volunteer_keys: "*7"', 'volunteer_keys: "*1"')
    clashes = key_clashes(plan(text), {"*1": "handover_complete_keys", "*9": "backline_keys"})
    assert clashes == [
        "`volunteer_keys` '*1' of destination 'info_line' are the setting "
        "handover_complete_keys's keys; choose others"
    ]
    assert key_clashes(plan(), {"*1": "handover_complete_keys"}) == []
