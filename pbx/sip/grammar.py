"""Lexical helpers shared by the SIP header parsers (RFC 3261 section 25)."""

from __future__ import annotations

import string

from pbx.sip.errors import SipParseError

# token characters (RFC 3261 section 25.1)
TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")
WS = " \t"
# gen-value = token / host / quoted-string; host adds ':' and '[' ']' for IPv6 references.
_HOST_VALUE_CHARS = TOKEN_CHARS | frozenset("[]:")
# Characters that may never appear in an unquoted parameter value: they delimit or break the field.
_VALUE_BREAKERS = frozenset(' \t"<>,;\\\r\n\x00')


def is_token(value: str) -> bool:
    # One set test of the characters, in C: a regex match costs more for the short tokens of
    # SIP (methods, parameter and header names).
    return value != "" and TOKEN_CHARS.issuperset(value)


def is_digits(value: str) -> bool:
    """ASCII digits only: str.isdigit() alone also accepts '²' and other scripts' digits.
    Two string methods rather than a regex match: a third of the time."""
    return value.isascii() and value.isdigit()


def parse_uint(value: str, limit: int) -> int | None:
    """1*DIGIT (leading zeros allowed) not above `limit`; None when malformed or too large.

    Never calls int() on an unbounded string: Python refuses >4300 digits with ValueError.
    """
    if not is_digits(value):
        return None
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(limit)):
        return None
    number = int(digits)
    return number if number <= limit else None


def split_outside_quotes(value: str, sep: str) -> list[str]:
    """Split on `sep`, ignoring separators inside quoted strings and <...> brackets."""
    if sep not in value:
        return [value]  # most fields hold one element: nothing to split, quoted or not
    if '"' not in value and "<" not in value:
        return value.split(sep)  # no quotes or brackets: no per-character loop
    parts: list[str] = []
    start = 0
    i = 0
    n = len(value)
    in_angle = False
    while i < n:
        ch = value[i]
        if ch == '"' and not in_angle:
            i = _skip_quoted(value, i)
            continue
        if ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return parts


def _skip_quoted(value: str, start: int) -> int:
    """Index just after the quoted-string that opens at value[start]."""
    i = start + 1
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise SipParseError("Bad Request - Unterminated quoted string")


def read_quoted(value: str, start: int) -> tuple[str, int]:
    """Read the quoted-string at value[start]; return (unescaped text, index after it)."""
    if value[start : start + 1] != '"':
        raise SipParseError("Bad Request - Expected quoted string")
    end = _skip_quoted(value, start)
    inner = value[start + 1 : end - 1]
    if "\\" not in inner:
        return inner, end
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "\\" and i + 1 < len(inner):
            out.append(inner[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out), end


def quote(text: str) -> str:
    """A quoted-string for `text`. CR and LF cannot be expressed (not even as quoted-pair), so
    they become spaces: a value can never inject a header line."""
    text = text.replace("\r", " ").replace("\n", " ")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse 'name=value;flag' parameter lists (the part after the first ';').

    Names are case-insensitive (kept lowercased); quoted values are stored unquoted.
    """
    params: dict[str, str | None] = {}
    if not text.strip(WS):
        raise SipParseError(f"Bad Request - Empty parameter in {what}")
    for raw in split_outside_quotes(text, ";"):
        item = raw.strip(WS)
        if not item:
            raise SipParseError(f"Bad Request - Empty parameter in {what}")
        name, eq, val = item.partition("=")
        name = name.rstrip(WS)
        if not is_token(name):
            raise SipParseError(f"Bad Request - Malformed parameter in {what}")
        value: str | None = None
        if eq:
            val = val.lstrip(WS)
            if val.startswith('"'):
                value, end = read_quoted(val, 0)
                if val[end:].strip(WS):
                    raise SipParseError(f"Bad Request - Malformed parameter in {what}")
            elif not _VALUE_BREAKERS.isdisjoint(val):  # (a set test of the characters, in C)
                raise SipParseError(f"Bad Request - Malformed parameter in {what}")
            else:
                value = val
        params[name.lower()] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    out = []
    for name, val in params.items():
        if val is None:
            out.append(f";{name}")
        elif _HOST_VALUE_CHARS.issuperset(val):
            out.append(f";{name}={val}")
        else:
            out.append(f";{name}={quote(val)}")
    return "".join(out)
