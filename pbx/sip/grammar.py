"""Lexical helpers shared by the SIP header parsers (RFC 3261 section 25)."""

from __future__ import annotations

import string

from pbx.sip.errors import SipParseError

# token characters (RFC 3261 section 25.1)
TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")
WS = " \t"


def is_token(value: str) -> bool:
    return bool(value) and all(c in TOKEN_CHARS for c in value)


def split_outside_quotes(value: str, sep: str) -> list[str]:
    """Split on `sep`, ignoring separators inside quoted strings and <...> brackets."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    in_angle = False
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if in_quotes:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                in_quotes = False
            current.append(ch)
            continue
        if ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == sep and not in_angle:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if in_quotes:
        raise SipParseError("Bad Request - Unterminated quoted string")
    parts.append("".join(current))
    return parts


def read_quoted(value: str, start: int) -> tuple[str, int]:
    """Read the quoted-string at value[start]; return (unescaped text, index after it)."""
    assert value[start] == '"'
    out: list[str] = []
    i = start + 1
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 >= len(value):
                break
            out.append(value[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipParseError("Bad Request - Unterminated quoted string")


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ';name=value;flag' parameter lists. Names are case-insensitive (kept lowercased)."""
    params: dict[str, str | None] = {}
    if not text.strip():
        return params
    for raw in split_outside_quotes(text, ";"):
        item = raw.strip(WS)
        if not item:
            raise SipParseError(f"Bad Request - Empty parameter in {what}")
        if "=" in item:
            name, _, val = item.partition("=")
            name = name.strip(WS)
            val = val.strip(WS)
            if val.startswith('"'):
                unq, end = read_quoted(val, 0)
                if val[end:].strip(WS):
                    raise SipParseError(f"Bad Request - Malformed parameter in {what}")
                val = unq
            params_name = name.lower()
        else:
            params_name, val = item.lower(), None
            name = item
        if not is_token(name):
            raise SipParseError(f"Bad Request - Malformed parameter in {what}")
        params[params_name] = val
    return params


def format_params(params: dict[str, str | None]) -> str:
    out = []
    for name, val in params.items():
        if val is None:
            out.append(f";{name}")
        elif val == "" or is_token(val) or _is_host_like(val):
            out.append(f";{name}={val}")
        else:
            out.append(f";{name}={quote(val)}")
    return "".join(out)


def _is_host_like(val: str) -> bool:
    return all(c in TOKEN_CHARS or c in "[]:" for c in val)
