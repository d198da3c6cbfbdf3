"""Digest credentials (RFC 7616) computed independently of pbx.sip.digest."""

from __future__ import annotations

import hashlib

from pbx.sip.digest import (
    Algorithm,
)


def hashlib_response(
    hname: str,
    user: str,
    realm: str,
    pw: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str | None,
    cnonce: str | None,
) -> str:
    """The RFC 7616 formula, written out independently of the module under test."""

    def h(s: str) -> str:
        return hashlib.new(hname, s.encode()).hexdigest()

    a1, a2 = h(f"{user}:{realm}:{pw}"), h(f"{method}:{uri}")
    if nc is None:
        return h(f"{a1}:{nonce}:{a2}")
    return h(f"{a1}:{nonce}:{nc}:{cnonce}:auth:{a2}")


def sip_authorization(
    alg: Algorithm,
    user: str,
    realm: str,
    pw: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str | None = "00000001",
    cnonce: str | None = "abc123",
    realm_in_header: str | None = None,
) -> str:
    hname = "md5" if alg is Algorithm.MD5 else "sha256"
    response = hashlib_response(hname, user, realm, pw, method, uri, nonce, nc, cnonce)
    parts = [
        f'username="{user}"',
        f'realm="{realm_in_header or realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f'response="{response}"',
        f"algorithm={alg.value}",
    ]
    if nc is not None:
        parts += ["qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
    return "Digest " + ", ".join(parts)
