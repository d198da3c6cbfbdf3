"""Settings: defaults, a TOML file, HELPLINE_* variables and flags, in that order; a bad value
is refused with a message naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.config import ConfigError, load_settings


def test_defaults_are_valid_and_layers_override_in_order(tmp_path: Path) -> None:
    defaults = load_settings(env={})
    assert (defaults.call_flow, defaults.backline_keys, defaults.max_missed_offers) == (
        "ivr",
        "*9",
        3,
    )
    toml = tmp_path / "helpline.toml"
    toml.write_text('backline_keys = "*8"\nmax_missed_offers = 2\nregistration_grace = 60\n')
    env = {"HELPLINE_MAX_MISSED_OFFERS": "5", "HELPLINE_COMFORT_INTERVAL": "12.5"}
    s = load_settings(toml, env=env, registration_grace=30.0)
    assert s.backline_keys == "*8"  # file
    assert s.max_missed_offers == 5 and s.comfort_interval == 12.5  # environment over file
    assert s.registration_grace == 30.0  # flag over everything


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HELPLINE_BACKLINE_KEYS": "9x"}, "backline_keys must be phone keys"),
        ({"HELPLINE_BACKLINE_KEYS": ""}, "backline_keys must be phone keys"),
        ({"HELPLINE_MAX_MISSED_OFFERS": "0"}, "max_missed_offers must be at least 1"),
        ({"HELPLINE_MAX_MISSED_OFFERS": "three"}, "setting max_missed_offers: cannot use"),
        ({"HELPLINE_CALL_FLOW": "queue"}, "call_flow must be 'ivr' or 'direct'"),
    ],
)
def test_a_bad_value_is_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_an_unknown_setting_in_the_file_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "helpline.toml"
    toml.write_text("max_mised_offers = 2\n")
    with pytest.raises(ConfigError, match="unknown setting 'max_mised_offers'"):
        load_settings(toml, env={})


def test_an_on_off_setting_reads_true_false_words(tmp_path: Path) -> None:
    assert load_settings(env={}).ringback_while_ringing is True
    assert (
        load_settings(env={"HELPLINE_RINGBACK_WHILE_RINGING": "off"}).ringback_while_ringing
        is False
    )
    toml = tmp_path / "helpline.toml"
    toml.write_text("ringback_while_ringing = false\n")
    assert load_settings(toml, env={}).ringback_while_ringing is False
    with pytest.raises(ConfigError, match="ringback_while_ringing"):
        load_settings(env={"HELPLINE_RINGBACK_WHILE_RINGING": "maybe"})


def test_srtp_settings_per_volunteer_from_the_environment() -> None:
    from pbx.app import srtp_policy
    from pbx.media.srtp import SrtpMode, Suite

    env = {"HELPLINE_SRTP": "off", "HELPLINE_SRTP_VOLUNTEERS": "anna:require,ben:offer",
           "HELPLINE_SRTP_SUITES": "AEAD_AES_128_GCM"}  # fmt: skip
    policy = srtp_policy(load_settings(env=env))
    assert policy.for_volunteer("anna") is SrtpMode.REQUIRE
    assert policy.for_volunteer("ben") is SrtpMode.OFFER
    assert policy.for_volunteer("carla") is SrtpMode.OFF
    assert policy.suites == (Suite.AEAD_AES_128_GCM,)
    for bad in ({"HELPLINE_SRTP": "always"}, {"HELPLINE_SRTP_VOLUNTEERS": "anna:yes"},
                {"HELPLINE_SRTP_SUITES": "F8_128_HMAC_SHA1_80"}):  # fmt: skip
        with pytest.raises(ConfigError):
            load_settings(env=bad)
