"""Admission control before any work (Kamailio's `pike` plus a ban list), sans-IO.

The transport adapters ask `admit()` for every datagram and every stream chunk before parsing
it: each source address has two token buckets (requests/s and bytes/s); a source that empties
either is banned, and a banned source's packets are dropped unread, without any answer (a
flood gets no reflection). A ban lasts `ban_seconds`, doubles with each repeat offence up to
`ban_max_seconds`, and lapses by itself; offences are forgotten after `ban_max_seconds` of good
behaviour. The configured trunks are exempt: a carrier may send hundreds of requests a second.

Per-source caps on TCP/TLS connections are counted here too. Every table is bounded
(`max_sources`): the least recently seen source is forgotten first. Time is passed in.
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    ADMIT = "admit"
    BANNED = "banned"  # dropped: the source is banned
    RATE = "rate"  # dropped: the source just exceeded its request rate (and is banned now)
    BYTES = "bytes"  # dropped: the source just exceeded its byte rate (and is banned now)


# the closed set of reasons the transports count drops by (helpline_sip_dropped_total{reason})
DROP_REASONS = ("banned", "rate", "bytes", "connection_cap", "unregistered")
SWEEP_BATCH = 5000


@dataclass(frozen=True)
class AdmissionConfig:
    requests_per_second: float = 20.0
    request_burst: float = 60.0
    bytes_per_second: float = 64_000.0
    byte_burst: float = 200_000.0  # above max_message_size: one large message is no offence
    ban_seconds: float = 60.0
    ban_max_seconds: float = 3600.0
    max_connections_per_source: int = 16
    max_sources: int = 100_000  # addresses tracked at once (buckets, bans, connections)


@dataclass(frozen=True)
class Ban:
    """A ban just imposed (for the adapter's one log line)."""

    host: str
    seconds: float
    offence: int  # 1 for a first offence
    reason: Verdict


@dataclass
class _Source:
    requests: float
    bytes: float
    seen: float
    banned_until: float = 0.0
    offences: int = 0
    forget_offences_at: float = 0.0
    connections: int = 0


@dataclass
class AdmissionStats:
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    bans: int = 0


class Admission:
    def __init__(self, config: AdmissionConfig, exempt: Iterable[str] = ()) -> None:
        """exempt: address ranges (the trunks) that are never limited nor banned."""
        self.config = config
        self._exempt = [ipaddress.ip_network(net, strict=False) for net in exempt]
        self._exempt_cache: dict[str, bool] = {}
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self.stats = AdmissionStats()
        self.new_bans: list[Ban] = []  # taken by the adapter (take_bans) to log each once

    # --- who is exempt ---------------------------------------------------------------------------
    def is_exempt(self, host: str) -> bool:
        known = self._exempt_cache.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
                known = any(address in net for net in self._exempt)
            except ValueError:
                known = False
            if len(self._exempt_cache) >= self.config.max_sources:
                self._exempt_cache.clear()
            self._exempt_cache[host] = known
        return known

    # --- packets ---------------------------------------------------------------------------------
    def admit(self, host: str, size: int, now: float, requests: int = 1) -> Verdict:
        """Whether a packet (or stream chunk) of `size` bytes carrying `requests` messages from
        `host` may be parsed. Anything but ADMIT means drop it silently."""
        if self.is_exempt(host):
            return Verdict.ADMIT
        src = self._source(host, now)
        if src.banned_until > now:
            self.stats.dropped["banned"] += 1
            return Verdict.BANNED
        cfg = self.config
        elapsed = max(0.0, now - src.seen)
        src.seen = now
        src.requests = min(cfg.request_burst, src.requests + elapsed * cfg.requests_per_second)
        src.bytes = min(cfg.byte_burst, src.bytes + elapsed * cfg.bytes_per_second)
        src.requests -= requests
        src.bytes -= size
        if src.requests < 0:
            return self._ban(host, src, now, Verdict.RATE)
        if src.bytes < 0:
            return self._ban(host, src, now, Verdict.BYTES)
        return Verdict.ADMIT

    def _ban(self, host: str, src: _Source, now: float, reason: Verdict) -> Verdict:
        cfg = self.config
        if src.forget_offences_at and now >= src.forget_offences_at:
            src.offences = 0
        src.offences += 1
        seconds = min(cfg.ban_max_seconds, cfg.ban_seconds * 2 ** min(src.offences - 1, 30))
        src.banned_until = now + seconds
        src.forget_offences_at = src.banned_until + cfg.ban_max_seconds
        # a lapsed ban starts from full buckets, like a new source
        src.requests, src.bytes = cfg.request_burst, cfg.byte_burst
        self.stats.bans += 1
        self.stats.dropped[reason.value] += 1
        self.new_bans.append(Ban(host, seconds, src.offences, reason))
        return reason

    def take_bans(self) -> list[Ban]:
        bans, self.new_bans = self.new_bans, []
        return bans

    def is_banned(self, host: str, now: float) -> bool:
        src = self._sources.get(host)
        return src is not None and src.banned_until > now

    def banned_count(self, now: float) -> int:
        # list() copies in one step: a metrics scrape may run in another thread
        return sum(1 for s in list(self._sources.values()) if s.banned_until > now)

    def count_drop(self, reason: str) -> None:
        """A drop decided by an adapter (a connection closed for never registering)."""
        self.stats.dropped[reason] += 1

    # --- connections -----------------------------------------------------------------------------
    def connection_opened(self, host: str, now: float) -> bool:
        """Whether a new TCP/TLS connection from `host` may stay open; if so it is counted until
        `connection_closed`."""
        if self.is_exempt(host):
            return True
        src = self._source(host, now)
        if src.banned_until > now:
            self.stats.dropped["banned"] += 1
            return False
        if src.connections >= self.config.max_connections_per_source:
            self.stats.dropped["connection_cap"] += 1
            return False
        src.connections += 1
        return True

    def connection_closed(self, host: str) -> None:
        src = self._sources.get(host)
        if src is not None and src.connections > 0:
            src.connections -= 1

    # --- the table -------------------------------------------------------------------------------
    def _source(self, host: str, now: float) -> _Source:
        src = self._sources.get(host)
        if src is not None:
            self._sources.move_to_end(host)
            return src
        if len(self._sources) >= self.config.max_sources:
            self._evict(now)
        src = _Source(self.config.request_burst, self.config.byte_burst, now)
        self._sources[host] = src
        return src

    def _evict(self, now: float) -> None:
        """Forget the least recently seen source that is neither banned nor connected (or the
        least recently seen at all if none of the oldest SWEEP_BATCH is)."""
        for host, src in itertools.islice(self._sources.items(), SWEEP_BATCH):
            if src.banned_until <= now and src.connections == 0:
                del self._sources[host]
                return
        self._sources.popitem(last=False)

    def sweep(self, now: float) -> None:
        """Forget sources that are idle with full buckets, no ban, no offences to remember and no
        connection: they would start from the same state anyway. Looks at the least recently
        seen SWEEP_BATCH only, so one call stays short on the event loop."""
        cfg = self.config
        refill = max(
            cfg.request_burst / cfg.requests_per_second, cfg.byte_burst / cfg.bytes_per_second
        )
        oldest_first = itertools.islice(self._sources.items(), SWEEP_BATCH)
        for host in [
            h
            for h, s in oldest_first
            if s.connections == 0
            and s.banned_until <= now
            and (not s.offences or now >= s.forget_offences_at)
            and now - s.seen >= refill
        ]:
            del self._sources[host]

    def __len__(self) -> int:
        return len(self._sources)
