"""Header fields: case-insensitive names, compact forms, repeated and comma-separated values."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pbx.sip.grammar import WS, split_outside_quotes

# Compact forms (RFC 3261 section 7.3.3 and later RFCs) -> long names.
COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "y": "Identity",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
}
# Canonical spelling of the headers we emit or read, keyed by lower-case name.
_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Priority",
        "Privacy",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "RAck",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Remote-Party-ID",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Session-Expires",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        "Diversion",
        "History-Info",
        "Min-SE",
    )
}
# Headers whose grammar is a comma-separated list, so "A, B" is two values (RFC 3261 section 7.3.1).
LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "Path",
        "Proxy-Require",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
        "P-Asserted-Identity",
        "Diversion",
        "History-Info",
    )
)


def canonical_name(name: str) -> str:
    """The field name as RFC 3261 spells it (compact forms expanded); unknown names as given.
    Uncached: the header code reads it through ``_named``'s cache."""
    low = name.lower()
    if low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low, name)


def _named(name: str) -> tuple[str, str]:
    """(lookup key, canonical name): the key is the canonical name in lower case. Looked up in
    a plain dict, which compiled code reads without the generic call an lru_cache costs; it is
    bounded, and the names every call has are in it from the start."""
    found = _NAMES.get(name)
    if found is None:
        canon = canonical_name(name)
        found = (canon.lower(), canon)
        if len(_NAMES) < _MAX_NAMES:  # a source inventing names cannot grow it further
            _NAMES[name] = found
    return found


_MAX_NAMES = 1024
_NAMES: dict[str, tuple[str, str]] = {}
for _name in (*_CANONICAL.values(), *COMPACT, *(n.upper() for n in COMPACT)):
    _named(_name)


def _checked(name: str, value: str) -> tuple[str, str, str]:
    """(lookup key, canonical name, value); CR/LF would let a value forge header lines."""
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name or not name:
        raise ValueError(f"invalid header field {name!r}")
    key, canon = _named(name)
    return key, canon, value


def split_list(fields: Sequence[str]) -> list[str]:
    """The values of a list header's fields, split at top-level commas, empty elements dropped."""
    out: list[str] = []
    for field_value in fields:
        for v in split_outside_quotes(field_value, ","):
            v = v.strip(WS)
            if v:
                out.append(v)
    return out


class Headers:
    """Ordered header fields. Lookups are case-insensitive and see compact forms as long ones.

    Unknown headers are preserved as received, so a B2BUA can decide what to copy. Names and
    values containing CR or LF are refused (ValueError) so that no value can inject a header.
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        # (lower-case canonical name, canonical name, value): the key saves a lower() per lookup
        self._items: list[tuple[str, str, str]] = []
        for name, value in items or []:
            self.add(name, value)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((n, v) for _, n, v in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def __contains__(self, name: str) -> bool:
        key = _named(name)[0]
        return any(k == key for k, _, _ in self._items)

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h

    def subset(self, names: Sequence[str]) -> Headers:
        """A new Headers with the fields of ``names`` only, in the order of ``names`` (each name's
        fields in their order here). One pass, and the fields need no checking again."""
        keys = [_named(name)[0] for name in names]
        picked: dict[str, list[tuple[str, str, str]]] = {key: [] for key in keys}
        for item in self._items:
            same = picked.get(item[0])
            if same is not None:
                same.append(item)
        h = Headers()
        h._items = [item for key in keys for item in picked[key]]
        return h

    def add(self, name: str, value: str) -> None:
        self._items.append(_checked(name, value))

    def _add_parsed(self, name: str, value: str) -> None:
        """add() for the parser, whose names are tokens and values have no CR/LF already."""
        key, canon = _named(name)
        self._items.append((key, canon, value))

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, _checked(name, value))

    def set(self, name: str, value: str) -> None:
        """Replace all fields of this name by one, at the position of the first."""
        item = _checked(name, value)
        key = item[0]
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items = [
                    item if j == i else old
                    for j, old in enumerate(self._items)
                    if j <= i or old[0] != key
                ]
                return
        self._items.append(item)

    def remove(self, name: str) -> None:
        key = _named(name)[0]
        self._items = [item for item in self._items if item[0] != key]

    def get(self, name: str) -> str | None:
        """The first field's raw value (not split at commas)."""
        key = _named(name)[0]
        for k, _, v in self._items:
            if k == key:
                return v
        return None

    def fields(self, name: str) -> list[str]:
        """Every field's raw value, in order."""
        key = _named(name)[0]
        return [v for k, _, v in self._items if k == key]

    def values(self, name: str) -> list[str]:
        """All values; list headers are split at top-level commas (empty elements dropped)."""
        key = _named(name)[0]
        raw = [v for k, _, v in self._items if k == key]
        return split_list(raw) if key in LIST_HEADERS else raw

    def _index(self) -> dict[str, list[str]]:
        """Raw values by lower-case canonical name, for checking many headers in one pass."""
        index: dict[str, list[str]] = {}
        for k, _, v in self._items:
            index.setdefault(k, []).append(v)
        return index

    def to_lines(self) -> list[str]:
        return [f"{n}: {v}" for _, n, v in self._items]
