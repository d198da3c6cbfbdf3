"""IvrRuntime walking a small dialplan over real RTP on 127.0.0.1.

The caller is a plain asyncio datagram socket (tests.helpers.rtp_peer.Peer). Every
prompt of the test library is a tone of its own frequency, so each talk-spurt the caller
receives is identified exactly: its audio must equal (after G.711) the PCM that
PromptLibrary.get(language, name) returns. That is how a language switch is proven.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pyrage import x25519

from ivr import model
from ivr.loader import load_dialplan_text
from ivr.runtime import BEEP, IvrOutcome, IvrRuntime, OutcomeKind
from ivr.simulate import simulate
from pbx.media import g711, tones
from pbx.media.g711 import Codec
from pbx.media.leg import MediaLeg
from pbx.media.ports import PortPool
from pbx.media.prompts import PromptLibrary
from pbx.media.rtp import RtpSender
from pbx.voicemail.desk import VoicemailDesk
from pbx.voicemail.store import VoicemailStore
from tests.helpers.audio import read_wav, write_wav
from tests.helpers.rtp_peer import HOST, Peer, media_for, send_digit, stream, wait_until

AMS = ZoneInfo("Europe/Amsterdam")
NAMES = (
    "welcome",
    "closed",
    "language_menu",
    "invalid_key",
    "no_input",
    "all_busy_hold",
    "transfer_info_line",
    "voicemail_instructions",
    "voicemail_saved",
    "voicemail_kept_intro",
    "digit_1",
    "day",
    "voicemail_kept_outro",
    "voicemail_unavailable",
)
# "your message is kept 1 day, then deleted": one talk-spurt before the beep
KEPT_NOTICE = ("voicemail_kept_intro", "digit_1", "day", "voicemail_kept_outro")
STAFF_KEY = x25519.Identity.generate()  # the info-line staff's; the service gets the public half
LANG_BASE_HZ = {"nl": 300.0, "tr": 1300.0}
CALLER_HZ = 700.0  # what the caller "says" into the voicemail


def prompt_pcm(lang: str, index: int) -> bytes:
    return tones.sine(LANG_BASE_HZ[lang] + 41 * index, 200 + 20 * index)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> PromptLibrary:
    root = tmp_path_factory.mktemp("recordings")
    for lang in LANG_BASE_HZ:
        (root / lang).mkdir()
        for index, name in enumerate(NAMES):
            write_wav(root / lang / f"{name}.wav", prompt_pcm(lang, index))
    return PromptLibrary(root)


def day_schedule() -> model.Schedule:
    hours = model.DayHours((model.TimeRange(9 * 60, 17 * 60),))
    return model.Schedule(name="day", timezone=AMS, week=(hours,) * 7)


def plan() -> model.Dialplan:
    nodes: list[model.Node] = [
        model.PlayNode(name="welcome", prompts=("welcome",), next="hours"),
        model.HoursNode(name="hours", schedule="day", open="lang_menu", closed="closed"),
        model.HangupNode(name="closed", prompts=("closed",)),
        model.MenuNode(
            name="lang_menu",
            prompts=("language_menu",),
            keys={"1": "nl_queue", "4": "to_tr", "9": "info"},
            timeout=0.6,
            retries=1,
            invalid_prompt="invalid_key",
            no_input_prompt="no_input",
            default="nl_queue",
        ),
        model.GotoNode(name="to_tr", language="tr", next="tr_menu"),
        model.MenuNode(
            name="tr_menu",
            prompts=("language_menu",),
            keys={"1": "tr_queue", "2": "vm"},
            timeout=1.0,
            retries=0,
            default="tr_queue",
        ),
        model.QueueNode(name="nl_queue", prompts=("all_busy_hold",), queue="nl"),
        model.QueueNode(name="tr_queue", prompts=("all_busy_hold",), queue="tr"),
        model.TransferNode(
            name="info",
            prompts=("transfer_info_line",),
            destination="info_line",
            on_failure="vm",
        ),
        model.VoicemailNode(
            name="vm",
            prompts=("voicemail_instructions",),
            mailbox="info_line",
            max_seconds=3,
            saved_prompts=("voicemail_saved",),
        ),
        model.GotoNode(name="loop_a", next="loop_b"),
        model.GotoNode(name="loop_b", next="loop_a"),
    ]
    return model.Dialplan(
        timezone=AMS,
        languages=("nl", "tr"),
        schedules={"day": day_schedule()},
        queues={
            "nl": model.Queue(name="nl", language="nl", schedule="day"),
            "tr": model.Queue(name="tr", language="tr", schedule="day"),
        },
        numbers={},
        default_entry="welcome",
        destinations={"info_line": model.Destination(name="info_line", uri="sip:info@127.0.0.1")},
        nodes={node.name: node for node in nodes},
    )


NOON = datetime(2026, 11, 23, 12, 0, tzinfo=AMS)
EVENING = datetime(2026, 11, 23, 20, 0, tzinfo=AMS)


@pytest.fixture
async def call() -> AsyncIterator[tuple[MediaLeg, Peer]]:
    peer = await Peer.open()
    leg = await MediaLeg.open(PortPool(HOST, 42200, 42399), media_for(peer.port))
    yield leg, peer
    leg.close()
    peer.close()


def runtime(
    leg: MediaLeg,
    library: PromptLibrary,
    tmp_path: Path,
    *,
    at: datetime = NOON,
    entry: str = "welcome",
    **kw: object,
) -> IvrRuntime:
    return IvrRuntime(
        leg,
        plan(),
        entry,
        language="nl",
        prompts=library,
        now=lambda: at,
        mailboxes=mailboxes(tmp_path),
        voicemail_silence=1.0,
        **kw,  # type: ignore[arg-type]
    )


def mailboxes(tmp_path: Path, *, keys: bool = True) -> VoicemailDesk:
    """The service's voicemail desk, encrypting to the staff key, messages kept one day."""
    store = VoicemailStore(tmp_path / "voicemail", [STAFF_KEY.to_public()] if keys else [])
    return VoicemailDesk(store, 86400.0)


def heard(peer: Peer, library: PromptLibrary) -> list[str]:
    """Each talk-spurt the caller received, named "lang:prompt" (or "beep") by content:
    a spurt matches a prompt when its audio equals the start of that prompt after G.711
    (a prompt cut short by a key matches the part that was played)."""
    spurts: list[bytes] = []
    payloads: list[bytes] = []
    for packet in peer.audio():
        if packet.marker and payloads:
            spurts.append(b"".join(payloads))
            payloads = []
        payloads.append(packet.payload)
    if payloads:
        spurts.append(b"".join(payloads))
    candidates = {
        f"{lang}:{name}": library.get(lang, name) for lang in LANG_BASE_HZ for name in NAMES
    }
    candidates["beep"] = BEEP
    names = []
    for spurt in spurts:
        audio = g711.decode(Codec.PCMU, spurt)
        found = "?"
        for label, pcm in candidates.items():
            expected = g711.decode(Codec.PCMU, g711.encode(Codec.PCMU, pcm))
            n = min(len(audio), len(expected))
            if n >= 320 and audio[:n] == expected[:n]:
                found = label
                break
        names.append(found)
    return names


def frames(library: PromptLibrary, *names: str, lang: str = "nl") -> int:
    """RTP packets the caller receives for these prompts played in full (last one padded)."""
    return sum(-(-len(library.get(lang, name)) // 320) for name in names)


BEEP_FRAMES = -(-len(BEEP) // 320)


def notice_frames(library: PromptLibrary) -> int:
    """RTP packets of the retention notice, played as one playlist."""
    return -(-sum(len(library.get("nl", name)) for name in KEPT_NOTICE) // 320)


def voicemail_intro(library: PromptLibrary) -> int:
    """Packets before the recording starts: instructions, retention notice, beep."""
    return frames(library, "voicemail_instructions") + notice_frames(library) + BEEP_FRAMES


def decrypted(tmp_path: Path, message_id: str) -> bytes:
    wav = VoicemailStore(tmp_path / "voicemail", []).decrypt(message_id, [STAFF_KEY])
    (tmp_path / "message.wav").write_bytes(wav)
    return read_wav(tmp_path / "message.wav")[0]


INTRO_HEARD = ["nl:voicemail_instructions", "nl:voicemail_kept_intro", "beep"]


def start(rt: IvrRuntime) -> asyncio.Task[IvrOutcome]:
    return asyncio.create_task(rt.run())


async def test_closed_hours_play_closed_and_hang_up(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, peer = call
    outcome = await asyncio.wait_for(runtime(leg, library, tmp_path, at=EVENING).run(), 5)
    assert outcome.kind is OutcomeKind.HANGUP
    assert outcome.path == ("welcome", "hours", "closed")
    await wait_until(lambda: len(heard(peer, library)) == 2)
    assert heard(peer, library) == ["nl:welcome", "nl:closed"]


async def test_key_after_the_menu_goes_to_the_queue_with_context(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, peer = call
    task = start(runtime(leg, library, tmp_path, region="utrecht", partner=None))
    await wait_until(lambda: heard(peer, library) == ["nl:welcome", "nl:language_menu"])
    await wait_until(lambda: len(peer.audio()) >= frames(library, "welcome", "language_menu"))
    await send_digit(peer, leg.local_address, "1", RtpSender())
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.kind, outcome.queue, outcome.language) == (OutcomeKind.QUEUE, "nl", "nl")
    assert (outcome.region, outcome.partner) == ("utrecht", None)
    assert outcome.path == ("welcome", "hours", "lang_menu", "nl_queue")
    await wait_until(lambda: len(heard(peer, library)) == 3)
    assert heard(peer, library) == ["nl:welcome", "nl:language_menu", "nl:all_busy_hold"]


async def test_language_switch_changes_the_prompts_heard(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, peer = call
    task = start(runtime(leg, library, tmp_path))
    await wait_until(lambda: heard(peer, library)[1:2] == ["nl:language_menu"])
    await send_digit(peer, leg.local_address, "4", RtpSender())  # barge-in: Turkish
    await wait_until(lambda: heard(peer, library)[2:3] == ["tr:language_menu"])
    await send_digit(peer, leg.local_address, "1", RtpSender())
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.kind, outcome.queue, outcome.language) == (OutcomeKind.QUEUE, "tr", "tr")
    assert outcome.path == ("welcome", "hours", "lang_menu", "to_tr", "tr_menu", "tr_queue")
    await wait_until(lambda: len(heard(peer, library)) == 4)
    assert heard(peer, library) == [
        "nl:welcome",
        "nl:language_menu",
        "tr:language_menu",
        "tr:all_busy_hold",
    ]


async def test_invalid_key_then_silence_takes_the_default(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, peer = call
    task = start(runtime(leg, library, tmp_path, entry="lang_menu"))
    await wait_until(lambda: heard(peer, library)[:1] == ["nl:language_menu"])
    await send_digit(peer, leg.local_address, "7", RtpSender())
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.kind, outcome.queue, outcome.node) == (OutcomeKind.QUEUE, "nl", "nl_queue")
    assert outcome.path == ("lang_menu", "nl_queue")
    await wait_until(lambda: len(heard(peer, library)) == 5)
    assert heard(peer, library) == [
        "nl:language_menu",
        "nl:invalid_key",
        "nl:language_menu",
        "nl:no_input",
        "nl:all_busy_hold",
    ]


async def test_key_typed_during_welcome_skips_the_menu_prompt(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, peer = call
    task = start(runtime(leg, library, tmp_path))
    await wait_until(lambda: len(peer.audio()) >= 2)
    await send_digit(peer, leg.local_address, "9", RtpSender())
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.kind, outcome.destination, outcome.on_failure) == (
        OutcomeKind.TRANSFER,
        "info_line",
        "vm",
    )
    assert outcome.path == ("welcome", "hours", "lang_menu", "info")
    await wait_until(lambda: len(heard(peer, library)) == 2)
    assert heard(peer, library) == ["nl:welcome", "nl:transfer_info_line"]


async def test_caller_hanging_up_mid_menu_is_abandoned_there(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, peer = call
    task = start(runtime(leg, library, tmp_path))
    await wait_until(lambda: heard(peer, library)[1:2] == ["nl:language_menu"])
    leg.close()  # what the call handler does on the caller's BYE
    outcome = await asyncio.wait_for(task, 2)
    assert outcome.kind is OutcomeKind.ABANDONED
    assert outcome.describe() == "abandoned in IVR at node lang_menu"
    assert outcome.path == ("welcome", "hours", "lang_menu")


async def test_voicemail_records_what_the_caller_says(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, peer = call
    task = start(runtime(leg, library, tmp_path, entry="vm"))
    await wait_until(lambda: heard(peer, library) == INTRO_HEARD)
    await wait_until(lambda: len(peer.audio()) >= voicemail_intro(library))
    sender = RtpSender()
    await stream(peer, leg.local_address, tones.sine(CALLER_HZ, 600), Codec.PCMU, sender, 0.005)
    await send_digit(peer, leg.local_address, "#", sender)
    outcome = await asyncio.wait_for(task, 5)
    assert (outcome.kind, outcome.mailbox) == (OutcomeKind.VOICEMAIL, "info_line")
    assert outcome.voicemail is not None
    # kept encrypted in the line's folder; the staff key opens it
    sealed = tmp_path / "voicemail" / "info_line" / f"{outcome.voicemail}.age"
    assert sealed.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert outcome.voicemail_seconds == pytest.approx(0.6)
    pcm = decrypted(tmp_path, outcome.voicemail)
    assert len(pcm) == 9600
    assert tones.dominant_frequency(pcm, [CALLER_HZ, 1000.0, 400.0]) == CALLER_HZ
    await wait_until(lambda: len(heard(peer, library)) == 4)
    assert heard(peer, library)[3] == "nl:voicemail_saved"


async def test_voicemail_left_by_hanging_up_is_kept_and_silence_leaves_none(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, peer = call
    task = start(runtime(leg, library, tmp_path, entry="vm"))
    await wait_until(lambda: heard(peer, library) == INTRO_HEARD)
    await wait_until(lambda: len(peer.audio()) >= voicemail_intro(library))
    await stream(
        peer, leg.local_address, tones.sine(CALLER_HZ, 400), Codec.PCMU, RtpSender(), 0.005
    )
    await wait_until(lambda: leg.endpoint.stats.rx_packets >= 20)
    leg.close()
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.kind is OutcomeKind.VOICEMAIL
    assert outcome.voicemail is not None
    assert outcome.voicemail_seconds == pytest.approx(0.4)
    assert len(decrypted(tmp_path, outcome.voicemail)) == 6400


async def test_voicemail_with_nothing_said_keeps_no_file(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, peer = call
    outcome = await asyncio.wait_for(runtime(leg, library, tmp_path, entry="vm").run(), 5)
    assert (outcome.kind, outcome.voicemail, outcome.voicemail_seconds) == (
        OutcomeKind.VOICEMAIL,
        None,
        0.0,
    )
    assert VoicemailStore(tmp_path / "voicemail", []).messages() == []
    assert heard(peer, library) == INTRO_HEARD  # no "saved"


async def test_voicemail_without_a_key_takes_no_message(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    """No public key configured: a message could only be kept in plaintext, so none is taken
    and the caller is told so instead of speaking into nothing."""
    leg, peer = call
    rt = runtime(leg, library, tmp_path, entry="vm")
    rt.mailboxes = mailboxes(tmp_path, keys=False)
    outcome = await asyncio.wait_for(rt.run(), 5)
    assert (outcome.kind, outcome.voicemail) == (OutcomeKind.VOICEMAIL, None)
    assert heard(peer, library) == ["nl:voicemail_unavailable"]
    assert not (tmp_path / "voicemail").exists()


async def test_a_goto_loop_fails_without_hogging_the_event_loop(
    call: tuple[MediaLeg, Peer], library: PromptLibrary, tmp_path: Path
) -> None:
    leg, _ = call
    ticks = 0

    async def count() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    counter = asyncio.create_task(count())
    outcome = await asyncio.wait_for(runtime(leg, library, tmp_path, entry="loop_a").run(), 5)
    counter.cancel()
    assert (outcome.kind, outcome.detail) == (OutcomeKind.FAILED, "dialplan loop")
    assert ticks > 10
    outcome = await runtime(leg, library, tmp_path, entry="nowhere").run()
    assert (outcome.kind, outcome.detail) == (OutcomeKind.FAILED, "unknown node")


PLAN_YAML = """
timezone: Europe/Amsterdam
languages: [nl, tr]
schedules:
  day:
    weekly:
      every day: "09:00-17:00"
queues:
  dutch: {language: nl, schedule: day, max_wait: 900, overflow: closed}
  turkish: {language: tr, schedule: day, max_wait: 600, overflow: dutch}
destinations:
  info_line: {uri: "sip:info@127.0.0.1"}
numbers:
  - {number: "030-2333444", type: local, region: Utrecht, start: welcome}
  - {number: "088-1234500", type: partner, partner: Wijkteam Utrecht, start: welcome}
unknown_number: welcome
flow:
  welcome: {type: play, prompts: welcome, next: hours}
  hours: {type: hours, schedule: day, open: menu, closed: closed}
  closed: {type: hangup, prompts: closed}
  menu:
    type: menu
    prompts: language_menu
    keys: {1: dutch, 4: turkish}
    timeout: 1
    retries: 1
    invalid_key: invalid_key
    no_input: no_input
    default: dutch
  dutch: {type: queue, language: nl, queue: dutch, prompts: all_busy_hold}
  turkish: {type: queue, language: tr, queue: turkish, prompts: all_busy_hold}
"""


def menus_heard(peer: Peer, library: PromptLibrary, at_least: int) -> bool:
    return sum(label.endswith(":language_menu") for label in heard(peer, library)) >= at_least


@pytest.mark.parametrize(
    ("number", "at", "keys", "ending", "target", "language"),
    [
        ("088-1234500", NOON, "4", OutcomeKind.QUEUE, "turkish", "tr"),
        ("030-2333444", NOON, "7", OutcomeKind.QUEUE, "dutch", "nl"),
        ("030-2333444", EVENING, "", OutcomeKind.HANGUP, None, "nl"),
    ],
)
async def test_loaded_plan_runs_as_the_dry_run_predicts(
    call: tuple[MediaLeg, Peer],
    library: PromptLibrary,
    tmp_path: Path,
    number: str,
    at: datetime,
    keys: str,
    ending: OutcomeKind,
    target: str | None,
    language: str,
) -> None:
    leg, peer = call
    dialplan = load_dialplan_text(PLAN_YAML, "test.yaml", prompts=library)
    entry, dialled = dialplan.entry_for(number)
    assert dialled is not None
    rt = IvrRuntime(
        leg,
        dialplan,
        entry,
        language=dialplan.default_language,
        prompts=library,
        now=lambda: at,
        mailboxes=mailboxes(tmp_path),
        region=dialled.region,
        partner=dialled.partner,
    )
    task = start(rt)
    for index, key in enumerate(keys, start=1):  # each key barges into the next menu prompt
        await wait_until(functools.partial(menus_heard, peer, library, index))
        await send_digit(peer, leg.local_address, key, RtpSender())
    outcome = await asyncio.wait_for(task, 8)

    steps = simulate(dialplan, number, at, keys)
    assert outcome.path == tuple(step.node for step in steps)
    assert (outcome.kind.value, outcome.queue) == (steps[-1].ending, target)
    assert outcome.kind is ending and outcome.language == language
    assert (outcome.region, outcome.partner) == (dialled.region, dialled.partner)
    predicted = [f"{h.language}:{h.prompt}" for step in steps for h in step.heard]
    await wait_until(lambda: len(heard(peer, library)) >= len(predicted))
    assert heard(peer, library) == predicted
