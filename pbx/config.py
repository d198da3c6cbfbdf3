"""Service settings: defaults, then an optional TOML file, then HELPLINE_* environment variables.

The defaults are the embedded ones: an embedded PostgreSQL under state_dir, the dialplan.yaml,
SIP on UDP/TCP 5060 and TLS 5061, and only 127.0.0.1 trusted as the carrier trunk.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_VOICEMAIL_RETENTION = 20 * 86400.0  # the spoken numbers go up to 20 (days)


class ConfigError(ValueError):
    pass


@dataclass
class Settings:
    sip_host: str = "0.0.0.0"  # bind address for SIP (all transports)
    sip_port: int = 5060  # UDP and TCP
    tls_port: int | None = 5061  # None disables TLS
    tls_cert: Path | None = None  # PEM; a self-signed pair is generated under state_dir when unset
    tls_key: Path | None = None
    # Outbound TLS (to handsets, trunks): verify the peer's certificate against this CA bundle
    # (PEM) when set, and refuse the connection when it does not verify; unset: no verification.
    tls_ca_file: Path | None = None
    tls_reload_interval: float = 10.0  # seconds between looks at tls_cert/tls_key for a renewal
    # SRTP (SDES keys, sent only over TLS) on volunteers' legs: "off", "offer" (SRTP when the
    # handset takes it, plain RTP otherwise) or "require" (488 for plain RTP; no shift login
    # over UDP/TCP). srtp_volunteers overrides it per volunteer (name -> mode).
    srtp: str = "offer"
    srtp_volunteers: dict[str, str] = field(default_factory=dict)
    srtp_suites: list[str] = field(
        default_factory=lambda: ["AES_CM_128_HMAC_SHA1_80", "AEAD_AES_128_GCM"]
    )
    advertise_host: str | None = (
        None  # address put in Via/Contact/SDP; default: sip_host or 127.0.0.1
    )
    realm: str = "helpline"
    # Digest challenges in preference order (RFC 8760). One MD5 challenge works with every
    # handset (baresip 1.0 rejects the whole challenge when one algorithm is unknown); give a
    # volunteer SHA-256 with `helpline volunteers set-digest NAME SHA-256` instead.
    digest_algorithms: list[str] = field(default_factory=lambda: ["MD5"])
    trunk_sources: list[str] = field(default_factory=lambda: ["127.0.0.1/32"])
    trunk_credentials: dict[str, str] = field(default_factory=dict)  # username -> password
    # SIP edge proxies (Kamailio, deploy/kamailio/) in front of this node: their
    # X-Helpline-Source header gives a request's real source (none: everyone talks to us direct)
    edge_proxies: list[str] = field(default_factory=list)
    database_url: str | None = None  # None: embedded PostgreSQL under state_dir
    state_dir: Path = REPO_ROOT / "var"
    dialplan: Path = REPO_ROOT / "dialplan.yaml"
    recordings: Path = REPO_ROOT / "recordings"
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9160  # Prometheus /metrics; None disables
    # Wallboard and coordinators' console (pbx/web). On by default, on loopback only: exposing
    # it (web_host) wants HTTPS, from web_tls_cert/key or a TLS reverse proxy. None disables.
    web_host: str = "127.0.0.1"
    web_port: int | None = 8080
    web_tls_cert: Path | None = None  # PEM; with web_tls_key the console is served over HTTPS
    web_tls_key: Path | None = None
    service_level_seconds: float = 30.0  # the wallboard's service level: answered within this
    rtp_port_min: int = 20000
    rtp_port_max: int = 29999
    media_timeout: float = 60.0  # a call leg that sends no RTP this long is hung up
    volunteer_whisper: str = "queue_announce"  # prompt a volunteer hears on answering ("": none)
    # "ivr": answer at once and follow the dialplan; "direct": ring volunteers at once, no menu
    call_flow: str = "ivr"
    comfort_interval: float = 20.0  # seconds of quiet between messages a waiting caller hears
    # music a waiting caller hears between messages: a telephony WAV in `recordings` (or a full
    # path); "" for comfort noise instead. Replace it with `helpline prompts convert`.
    hold_music: str = "hold_music.wav"
    # a waiting caller hears ringback (425 Hz, 1 s on, 4 s off) while a volunteer's handset rings
    ringback_while_ringing: bool = True
    # keys a volunteer presses in a call to hand the caller over to the backline destination
    backline_keys: str = "*9"
    backline_destination: str = "backline_113"
    # call records older than this many months are folded into daily counts and deleted
    call_records_retention_months: int = 24
    # "warm": the volunteer talks to the destination first, then completes or cancels with
    # these keys (or completes by hanging up); "blind": the volunteer is gone at once
    handover_mode: str = "warm"
    handover_complete_keys: str = "*1"
    handover_cancel_keys: str = "*0"
    handover_ring_timeout: float = 30.0  # seconds the destination rings before "no answer"
    # our account at the carrier, for a destination's trunk that challenges our calls (digest)
    outbound_auth_user: str = ""
    outbound_auth_password: str = ""
    max_missed_offers: int = 3  # calls a volunteer lets ring out in a row before being paused
    registration_grace: float = 120.0  # seconds a lapsed handset keeps its volunteer logged in
    registration_min_expires: int = 60
    registration_max_expires: int = 3600
    registration_default_expires: int = 600
    # A planned stop (SIGTERM, `helpline drain`): calls in progress may finish for this long
    # (an hour: the agreed 45-minute conversation limit plus margin), new INVITEs get 503 with
    # this Retry-After, and waiting callers "keep" waiting for a volunteer or "overflow" now.
    drain_timeout: float = 3600.0
    drain_retry_after: int = 30
    drain_waiting: str = "keep"
    # Active/standby (pbx/ha.py): off, one process as ever. On, the nodes sharing one external
    # database_url take a leadership lease in it and only its holder distributes calls.
    ha_lease: bool = False
    node_name: str = ""  # this node in logs and pg_stat_activity ("": the host name)
    ha_retry_interval: float = 1.0  # a standby tries the lease this often
    ha_check_interval: float = 1.0  # the leader checks its lease connection this often,
    ha_check_timeout: float = 1.0  # and stands down when a check takes longer than this
    ha_refresh_interval: float = 2.0  # a standby re-reads registrations and shifts this often
    keepalive_interval: float = 25.0  # OPTIONS to every handset: keeps NAT open, shows it is there
    keepalive_max_misses: int = 3  # unanswered keepalives in a row before a binding is removed
    max_message_size: int = 65535
    max_transactions: int = 20000
    max_dialogs: int = 5000
    max_connections: int = 2000
    connection_idle_timeout: float = 120.0  # idle TCP/TLS connections are closed after this
    # Admission before parsing, per source address (trunk_sources exempt): a handset sends a few
    # requests a minute, so a source above these rates is banned for ban_seconds, doubling on
    # each repeat offence up to ban_max_seconds.
    admission_requests_per_second: float = 20.0
    admission_request_burst: float = 60.0
    admission_bytes_per_second: float = 64000.0
    admission_byte_burst: float = 200000.0  # at least max_message_size
    ban_seconds: float = 60.0
    ban_max_seconds: float = 3600.0
    max_connections_per_source: int = 16  # TCP/TLS, per address (a home may hold a few handsets)
    unregistered_connection_timeout: float = 60.0  # TCP/TLS without a REGISTER/call is closed
    tls_handshake_timeout: float = 10.0
    # capacity only the trunks may use: a flood from elsewhere can never push a carrier call out
    trunk_reserved_transactions: int = 2000  # of max_transactions
    trunk_reserved_dialogs: int = 500  # of max_dialogs
    nonce_lifetime: float = 300.0
    # authentication failures (digest) before a source address / an account is locked out;
    # the lockout starts at auth_lockout seconds and doubles each time, up to auth_lockout_max
    auth_source_failures: int = 5
    auth_user_failures: int = 10
    auth_lockout: float = 30.0
    auth_lockout_max: float = 900.0
    # wrong handset PINs (over any number of calls) before `*1` is refused for a while; the
    # refusal lasts pin_lockout seconds and doubles each time, up to pin_lockout_max
    pin_failures: int = 3
    pin_lockout: float = 60.0
    pin_lockout_max: float = 3600.0
    sip_t1: float = 0.5  # RFC 3261 timer T1 (RTT estimate); every other timer derives from it
    sip_t2: float = 4.0
    # an INVITE the service has not answered by then gets 500 from the transaction layer
    sip_invite_answer_limit: float = 180.0
    # `helpline serve` started as root becomes this user once its sockets are bound ("": stay
    # root, not recommended); scripts/bootstrap.sh creates it. Ignored when not started as root.
    run_as_user: str = "helpline"
    # Voicemail (info line, overflow): encrypted to these age public keys (age1..., the
    # info-line staff hold the private key; without one no message is taken), deleted after
    # voicemail_retention seconds (callers are told it in days: at most 20), and
    # voicemail_notify (a command) run with the message id and line when one arrives.
    voicemail_recipients: list[str] = field(default_factory=list)
    voicemail_retention: float = 7 * 86400.0
    voicemail_notify: str = ""
    log_level: str = "info"
    log_format: str = "json"  # json or console
    event_loop: str = "auto"  # auto (uvloop where installed), uvloop or asyncio (pbx/event_loop.py)
    # SCHED_RR priority of `helpline serve`'s event loop thread, so media keeps its 20 ms pace on
    # a busy machine (pbx/realtime.py); 0: normal priority. Needs root, CAP_SYS_NICE or
    # RLIMIT_RTPRIO; refused, the service runs at normal priority and logs why.
    realtime_priority: int = 10

    @property
    def public_host(self) -> str:
        if self.advertise_host:
            return self.advertise_host
        return "127.0.0.1" if self.sip_host in ("0.0.0.0", "::", "") else self.sip_host

    def validate(self) -> None:
        for name in ("trunk_sources", "edge_proxies"):
            for net in getattr(self, name):
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError as exc:
                    raise ConfigError(f"{name}: {net!r} is not an address range: {exc}") from None
        if not 0 <= self.realtime_priority <= 99:
            raise ConfigError(f"realtime_priority must be 0 (off) to 99: {self.realtime_priority}")
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ConfigError(f"event_loop must be auto, uvloop or asyncio: {self.event_loop!r}")
        if self.call_flow not in ("ivr", "direct"):
            raise ConfigError(f"call_flow must be 'ivr' or 'direct', not {self.call_flow!r}")
        known = {"SHA-256", "MD5"}
        if not self.digest_algorithms or not set(self.digest_algorithms) <= known:
            raise ConfigError(f"digest_algorithms must be a non-empty subset of {sorted(known)}")
        if not 0 < self.sip_port < 65536:
            raise ConfigError(f"sip_port {self.sip_port} is not a port number")
        if self.rtp_port_min >= self.rtp_port_max:
            raise ConfigError("rtp_port_min must be below rtp_port_max")
        if (self.web_tls_cert is None) != (self.web_tls_key is None):
            raise ConfigError("web_tls_cert and web_tls_key must be given together")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be given together")
        self._validate_srtp()
        if not (
            0
            < self.registration_min_expires
            <= self.registration_default_expires
            <= self.registration_max_expires
        ):
            raise ConfigError("registration expiries must satisfy 0 < min <= default <= max")
        for name in ("backline_keys", "handover_complete_keys", "handover_cancel_keys"):
            keys = getattr(self, name)
            if not keys or not set(keys) <= set("0123456789*#"):
                raise ConfigError(f"{name} must be phone keys (0-9, *, #), not {keys!r}")
        if self.handover_mode not in ("warm", "blind"):
            raise ConfigError(f"handover_mode must be warm or blind, not {self.handover_mode!r}")
        if len({self.backline_keys, self.handover_complete_keys, self.handover_cancel_keys}) < 3:
            raise ConfigError("backline_keys and the handover keys must differ")
        if min(self.auth_source_failures, self.auth_user_failures, self.pin_failures) < 1:
            raise ConfigError("auth_*_failures and pin_failures must be at least 1")
        if self.drain_waiting not in ("keep", "overflow"):
            raise ConfigError(
                f"drain_waiting must be 'keep' or 'overflow', not {self.drain_waiting!r}"
            )
        if self.max_missed_offers < 1:
            raise ConfigError("max_missed_offers must be at least 1")
        self._validate_admission()
        self._validate_ha()
        if self.keepalive_max_misses < 1:
            raise ConfigError("keepalive_max_misses must be at least 1")
        if not 0 < self.voicemail_retention <= MAX_VOICEMAIL_RETENTION:
            raise ConfigError(
                "voicemail_retention must be above 0 and at most 20 days (1728000 s): callers "
                "are told it in days"
            )
        self._validate_voicemail_recipients()

    def _validate_voicemail_recipients(self) -> None:
        for key in self.voicemail_recipients:
            if key.strip().upper().startswith("AGE-SECRET-KEY-"):
                raise ConfigError(
                    "voicemail_recipients holds a private key (AGE-SECRET-KEY-...): give the "
                    "service only the staff's public key (age1...); the private key stays "
                    "with them"
                )
            try:
                x25519.Recipient.from_str(key.strip())
            except pyrage.RecipientError:
                raise ConfigError(
                    f"voicemail_recipients: {key[:16]!r}... is not an age public key (age1...)"
                ) from None

    def _validate_srtp(self) -> None:
        modes = ("off", "offer", "require")
        for who, mode in [("srtp", self.srtp), *self.srtp_volunteers.items()]:
            if mode not in modes:
                raise ConfigError(f"srtp mode for {who!r} must be one of {modes}, not {mode!r}")
        suites = {"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM",
                  "AEAD_AES_256_GCM"}  # fmt: skip
        if not self.srtp_suites or not set(self.srtp_suites) <= suites:
            raise ConfigError(f"srtp_suites must be a non-empty subset of {sorted(suites)}")

    def _validate_ha(self) -> None:
        if self.ha_lease and self.database_url is None:
            raise ConfigError(
                "ha_lease needs database_url: the nodes must share one external PostgreSQL "
                "(the embedded one lives on one machine and dies with it)"
            )
        for name in ("ha_retry_interval", "ha_check_interval", "ha_check_timeout",
                     "ha_refresh_interval"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be above 0")

    def _validate_admission(self) -> None:
        for name in (
            "admission_requests_per_second", "admission_request_burst",
            "admission_bytes_per_second", "ban_seconds", "tls_handshake_timeout",
            "unregistered_connection_timeout", "tls_reload_interval",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be above 0")
        if self.admission_byte_burst < self.max_message_size:
            raise ConfigError("admission_byte_burst must be at least max_message_size")
        if self.ban_max_seconds < self.ban_seconds:
            raise ConfigError("ban_max_seconds must be at least ban_seconds")
        if self.max_connections_per_source < 1:
            raise ConfigError("max_connections_per_source must be at least 1")
        if not 0 <= self.trunk_reserved_transactions < self.max_transactions:
            raise ConfigError("trunk_reserved_transactions must be below max_transactions")
        if not 0 <= self.trunk_reserved_dialogs <= self.max_dialogs:
            raise ConfigError("trunk_reserved_dialogs must be at most max_dialogs")


_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}  # fmt: skip


def _coerce(name: str, raw: Any, current: Any, annotation: str) -> Any:
    try:
        if isinstance(raw, str) and "list" in annotation:
            return [part.strip() for part in raw.split(",") if part.strip()]
        if isinstance(raw, str) and "dict" in annotation:
            pairs = (item.split(":", 1) for item in raw.split(",") if item.strip())
            return {k.strip(): v.strip() for k, v in pairs}
        if raw in ("", "none", "None") and "None" in annotation:
            return None
        if "Path" in annotation:
            return Path(raw)
        if annotation == "bool" and isinstance(raw, str):
            flag = _BOOLS.get(raw.strip().lower())
            if flag is None:
                raise ValueError("expected true or false")
            return flag
        if "int" in annotation and "float" not in annotation:
            return int(raw)
        if "float" in annotation:
            return float(raw)
        return raw
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name}: cannot use {raw!r}: {exc}") from None


def load_settings(
    file: Path | None = None, env: dict[str, str] | None = None, **overrides: Any
) -> Settings:
    settings = Settings()
    known = {f.name: str(f.type) for f in fields(Settings)}
    values: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{file}: {exc}") from None
        for key, val in data.items():
            if key not in known:
                raise ConfigError(f"{file}: unknown setting {key!r}")
            values[key] = val
    env = dict(os.environ) if env is None else env
    for key in known:
        raw = env.get(f"HELPLINE_{key.upper()}")
        if raw is not None:
            values[key] = raw
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key, val in values.items():
        setattr(settings, key, _coerce(key, val, getattr(settings, key), known[key]))
    settings.validate()
    return settings
