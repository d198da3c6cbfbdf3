"""The real-peer harness proves itself: sipp, pjsua2 and pyVoIP talking to each other.

Every end-to-end test of the service trusts these peers to report what really happened, so
here each peer meets another real peer over loopback and the harness's verdicts are checked
in both directions (a good call reads as success, a wrong one as failure).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.audio import active_part, dominant_frequency, read_wav, tone_share
from tests.helpers.ports import free_port
from tests.peers.pjsua_phone import PjsuaPhone
from tests.peers.pyvoip_phone import PyVoipPhone
from tests.peers.rtp_pcap import media_pcap, pcap_duration_ms, tone_samples, write_ulaw
from tests.peers.sipp import run_sipp, start_sipp

pytestmark = [pytest.mark.peers, pytest.mark.timeout(60)]

CANDIDATES = (440.0, 600.0, 700.0, 800.0, 1000.0, 1400.0)
needs_raw_socket = pytest.mark.skipif(
    os.geteuid() != 0, reason="sipp play_pcap_audio needs a raw socket (root/CAP_NET_RAW)"
)


def heard(path: Path) -> bytes:
    pcm, rate = read_wav(path)
    assert rate == 8000
    return active_part(pcm)


# -- sipp against sipp ---------------------------------------------------------------------------


def test_sipp_call_to_sipp_callee_is_reported_successful() -> None:
    uas = start_sipp("uas_answer")
    uac = run_sipp("uac_call", uas.address, service="helpline", pause_ms=200, timeout_s=10)
    callee = uas.wait()
    uac.assert_ok()
    callee.assert_ok()
    assert (uac.successful, uac.failed) == (1, 0)
    answer = uac.received("SIP/2.0 200")[0]
    assert "m=audio" in answer and "PCMU/8000" in answer
    assert uac.sent("BYE sip:callee@127.0.0.1")
    assert callee.received("INVITE sip:helpline@127.0.0.1")


def test_sipp_wrong_final_status_is_reported_as_failure() -> None:
    uas = start_sipp("uas_answer")  # answers 200, the caller insists on 403
    uac = run_sipp("uac_expect_status", uas.address, keys={"expect_status": "403"}, timeout_s=10)
    uas.stop()
    assert not uac.ok
    assert uac.failed == 1 and uac.successful == 0
    with pytest.raises(AssertionError) as err:
        uac.assert_ok()
    assert "SIP/2.0 200 OK" in str(err.value)  # the trace shows what came instead


def test_sipp_expected_refusal_is_reported_successful() -> None:
    uas = start_sipp("uas_reject", keys={"status": "486", "reason": "Busy Here"})
    uac = run_sipp("uac_expect_status", uas.address, keys={"expect_status": "486"}, timeout_s=10)
    uac.assert_ok()
    uas.wait().assert_ok()  # the callee got its ACK


def test_sipp_counts_invite_retransmissions_only_when_the_answer_is_late() -> None:
    prompt = start_sipp("uas_answer")
    on_time = run_sipp("uac_call", prompt.address, timeout_s=10).assert_ok()
    prompt.wait().assert_ok()
    late = start_sipp("uas_answer", keys={"first_response_delay_ms": "1200"})
    delayed = run_sipp("uac_call", late.address, timeout_s=10).assert_ok()
    late.wait().assert_ok()
    assert on_time.retransmissions == 0
    assert delayed.retransmissions >= 1
    assert len(delayed.sent("INVITE")) == 1 + delayed.retransmissions


def test_sipp_digest_registration_against_sipp_registrar() -> None:
    registrar = start_sipp(
        "uas_registrar", keys={"user": "1001", "password": "s3cret", "rounds": "2"}
    )
    good = run_sipp(
        "uac_register_digest",
        registrar.address,
        keys={"user": "1001", "password": "s3cret"},
        pause_ms=0,  # unregisters the moment the 200 arrives, as PJSIP's handsets can
        timeout_s=10,
    )
    registrar.wait().assert_ok()
    good.assert_ok()
    authorized = good.sent("REGISTER")[1]
    assert 'Authorization: Digest username="1001"' in authorized
    assert good.sent("REGISTER")[-1].count("Expires: 0") == 1  # unregistered at the end
    accepted = good.received("SIP/2.0 200")[0]
    assert accepted.count("Contact:") == 1 and "Authorization" not in accepted

    registrar = start_sipp("uas_registrar", keys={"user": "1001", "password": "s3cret"})
    bad = run_sipp(
        "uac_register_digest",
        registrar.address,
        keys={"user": "1001", "password": "wrong"},
        timeout_s=10,
    )
    assert not registrar.wait().ok
    assert not bad.ok
    assert bad.received("SIP/2.0 403")


# -- pjsua handsets ------------------------------------------------------------------------------


def test_pjsua_phones_call_each_other_and_hear_each_others_tone(tmp_path: Path) -> None:
    with PjsuaPhone("alice") as a, PjsuaPhone("bob") as b:
        a.start(free_port())
        b.start(free_port())
        assert a.make_call(b.uri, wait=False) == 0
        incoming = b.wait_incoming(timeout=5)
        assert incoming.request_uri.startswith(f"sip:bob@127.0.0.1:{b.port}")
        assert "m=audio" in incoming.sdp
        b.answer()
        assert a.wait_state("CONFIRMED", timeout=5) == "CONFIRMED"
        a.record(tmp_path / "alice.wav")
        b.record(tmp_path / "bob.wav")
        a.play_tone(1000)
        b.play_tone(600)
        a.sleep(1.2)
        assert a.hangup() == 200
        assert b.wait_disconnected(timeout=5) == 200
    at_bob, at_alice = heard(tmp_path / "bob.wav"), heard(tmp_path / "alice.wav")
    assert len(at_bob) >= 8000 and len(at_alice) >= 8000  # at least half a second each
    assert dominant_frequency(at_bob, CANDIDATES) == 1000.0
    assert dominant_frequency(at_alice, CANDIDATES) == 600.0
    assert tone_share(at_bob, 1000) > 0.8 and tone_share(at_alice, 600) > 0.8


def test_pjsua_rfc4733_digits_reach_the_other_phone() -> None:
    with PjsuaPhone("alice") as a, PjsuaPhone("bob") as b:
        a.start(free_port())
        b.start(free_port())
        a.make_call(b.uri, wait=False)
        b.wait_incoming(timeout=5)
        b.answer()
        a.wait_state("CONFIRMED", timeout=5)
        a.send_dtmf("159#")
        assert b.wait_digits(4, timeout=5) == "159#"
        assert {e.data["method"] for e in b.events("dtmf")} == {"rfc4733"}
        a.hangup()


def test_pjsua_registers_with_digest_and_a_wrong_password_is_refused() -> None:
    registrar = start_sipp(
        "uas_registrar", keys={"user": "2001", "password": "pw-2001", "rounds": "2"}
    )
    host, port = registrar.address.split(":")
    with PjsuaPhone("handset") as phone:
        phone.start(free_port())
        assert phone.register(host, int(port), "2001", "pw-2001") == 200
        assert phone.unregister() == 200
    registrar.wait().assert_ok()

    registrar = start_sipp("uas_registrar", keys={"user": "2001", "password": "pw-2001"})
    host, port = registrar.address.split(":")
    with PjsuaPhone("handset") as phone:
        phone.start(free_port())
        assert phone.register(host, int(port), "2001", "not-the-password") == 403
    registrar.stop()


def test_sipp_caller_cancels_while_pjsua_rings() -> None:
    with PjsuaPhone("volunteer") as phone:
        phone.start(free_port())
        result = run_sipp(
            "uac_cancel", f"127.0.0.1:{phone.port}", keys={"ring_ms": "300"}, timeout_s=10
        )
        result.assert_ok()
        assert result.received("SIP/2.0 487")
        ended = phone.wait_event(
            "call_state", timeout=5, pred=lambda e: e.data["state"] == "DISCONNECTED"
        )
        assert ended.data["status"] == 487
        with pytest.raises(Exception, match="no 'incoming' event"):
            phone.wait_incoming(timeout=0.5)  # a cancelled call is not offered as incoming
        assert phone.wait_incoming(timeout=1, include_ended=True).display == "Anonymous"


@needs_raw_socket
def test_sipp_caller_plays_tone_and_digits_to_pjsua(tmp_path: Path) -> None:
    pcap = media_pcap(tmp_path / "media.pcap", tone_hz=1000, tone_ms=1000, digits="12#")
    with PjsuaPhone("volunteer") as phone:
        phone.start(free_port())
        caller = start_sipp(
            "uac_call_rtp",
            f"127.0.0.1:{phone.port}",
            service="volunteer",
            files={"media.pcap": pcap},
            keys={"caller_display": "Hulplijn", "caller": "helpline"},
            pause_ms=int(pcap_duration_ms(pcap)) + 600,
            timeout_s=15,
        )
        incoming = phone.wait_incoming(timeout=5)
        assert incoming.display == "Hulplijn"  # what the handset would show
        assert incoming.header("User-Agent") == "sipp-helpline-test"
        phone.answer()
        phone.record(tmp_path / "heard.wav")
        caller.wait().assert_ok()
        assert phone.wait_disconnected(timeout=5) == 200
        assert phone.received_digits() == "12#"
    pcm = heard(tmp_path / "heard.wav")
    assert dominant_frequency(pcm, CANDIDATES) == 1000.0


def test_sipp_rtpstream_caller_plays_audio_without_raw_sockets(tmp_path: Path) -> None:
    audio = write_ulaw(tmp_path / "audio.ulaw", tone_samples(700, 1000))
    with PjsuaPhone("volunteer") as phone:
        phone.start(free_port())
        caller = start_sipp(
            "uac_call_rtpstream",
            f"127.0.0.1:{phone.port}",
            files={"audio.ulaw": audio},
            pause_ms=1600,
            timeout_s=15,
        )
        phone.wait_incoming(timeout=5)
        phone.answer()
        phone.record(tmp_path / "heard.wav")
        caller.wait().assert_ok()
        phone.wait_disconnected(timeout=5)
    assert dominant_frequency(heard(tmp_path / "heard.wav"), CANDIDATES) == 700.0


def test_sipp_over_tcp_calls_pjsua_over_tcp() -> None:
    with PjsuaPhone("volunteer") as phone:
        phone.start(free_port(), "tcp")
        assert phone.uri.endswith(";transport=tcp")
        caller = start_sipp(
            "uac_call", f"127.0.0.1:{phone.port}", transport="t1", pause_ms=200, timeout_s=10
        )
        incoming = phone.wait_incoming(timeout=5)
        assert (incoming.header("Via") or "").startswith("SIP/2.0/TCP")
        phone.answer()
        result = caller.wait().assert_ok()
        assert phone.wait_disconnected(timeout=5) == 200
    assert "TCP message received" in result.messages_log


def test_pjsua_answers_options_and_its_worker_process_ends_on_close() -> None:
    phone = PjsuaPhone("probe")
    with phone:
        phone.start(free_port())
        run_sipp("uac_options", f"127.0.0.1:{phone.port}", timeout_s=5).assert_ok()
        pid = phone.pid
        assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- pyVoIP handset ------------------------------------------------------------------------------


@needs_raw_socket
def test_pyvoip_registers_answers_and_hears_the_caller(tmp_path: Path) -> None:
    pcap = media_pcap(tmp_path / "media.pcap", tone_hz=800, tone_ms=1000)
    server = start_sipp(
        "uas_register_then_invite",
        files={"media.pcap": pcap},
        keys={"user": "3001", "password": "pw-3001"},
        pause_ms=1400,
        timeout_s=20,
    )
    host, port = server.address.split(":")
    with PyVoipPhone(host, int(port), "3001", "pw-3001") as phone:
        phone.start()
        incoming = phone.wait_incoming(timeout=10)
        assert incoming.from_header.startswith('"Hulplijn"')
        phone.answer()
        phone.wait_ended(timeout=10)
        pcm = active_part(phone.received_audio())
    server.wait().assert_ok()
    assert dominant_frequency(pcm, CANDIDATES) == 800.0


def test_pyvoip_with_wrong_password_does_not_register() -> None:
    server = start_sipp("uas_registrar", keys={"user": "3002", "password": "right"})
    host, port = server.address.split(":")
    with (
        PyVoipPhone(host, int(port), "3002", "wrong", register_timeout=2) as phone,
        pytest.raises(AssertionError, match="did not register"),
    ):
        phone.start(timeout=3)
    server.stop()
