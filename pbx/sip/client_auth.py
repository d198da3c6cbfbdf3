"""Answering a digest challenge as a client (RFC 3261 section 22.2, RFC 7616, RFC 8760).

When a carrier trunk challenges a call we place (401 WWW-Authenticate or 407
Proxy-Authenticate), the request is sent once more with credentials. Sans-IO: the caller passes
the challenge response and a client nonce in, and gets the header to add out.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from pbx.sip.digest import (
    Algorithm,
    DigestError,
    DigestResponse,
    _parse_params,
    expected_response,
    ha1,
    quote,
)
from pbx.sip.message import Response

__all__ = ["ClientCredentials", "authorize"]

_HEADERS = {
    401: ("WWW-Authenticate", "Authorization"),
    407: ("Proxy-Authenticate", "Proxy-Authorization"),
}


@dataclass(frozen=True)
class ClientCredentials:
    """Our account at a carrier: what we answer its challenges with (any realm it names)."""

    username: str
    password: str


def authorize(
    challenge: Response,
    method: str,
    uri: str,
    credentials: ClientCredentials,
    cnonce: str | None = None,
) -> tuple[str, str] | None:
    """The (header name, value) answering a 401/407 for `method` to `uri`, or None when the
    response is no usable Digest challenge (no header, no algorithm or qop we speak)."""
    names = _HEADERS.get(challenge.status)
    if names is None:
        return None
    challenge_name, answer_name = names
    for value in challenge.headers.fields(challenge_name):
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            continue
        try:
            params = _parse_params(rest)
            algorithm = Algorithm.parse(params.get("algorithm"))
        except DigestError:
            continue  # e.g. an algorithm we do not know: a later challenge may do
        if "realm" not in params or "nonce" not in params:
            continue
        qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
        if qops and "auth" not in qops:
            continue
        return answer_name, _answer(params, algorithm, "auth" if qops else None, method, uri,
                                    credentials, cnonce or secrets.token_hex(8))  # fmt: skip
    return None


def _answer(
    params: dict[str, str],
    algorithm: Algorithm,
    qop: str | None,
    method: str,
    uri: str,
    credentials: ClientCredentials,
    cnonce: str,
) -> str:
    realm, nonce = params["realm"], params["nonce"]
    resp = DigestResponse(
        username=credentials.username, realm=realm, nonce=nonce, uri=uri, response="",
        algorithm=algorithm, qop=qop, nc="00000001" if qop else None,
        cnonce=cnonce if qop else None,
    )  # fmt: skip
    digest = expected_response(resp, method, ha1(algorithm, credentials.username, realm,
                                                 credentials.password))  # fmt: skip
    parts = [
        f"username={quote(credentials.username)}", f"realm={quote(realm)}",
        f"nonce={quote(nonce)}", f"uri={quote(uri)}", f"response={quote(digest)}",
        f"algorithm={algorithm.value}",
    ]  # fmt: skip
    if qop:
        parts += [f"qop={qop}", "nc=00000001", f"cnonce={quote(cnonce)}"]
    if "opaque" in params:
        parts.append(f"opaque={quote(params['opaque'])}")
    return "Digest " + ", ".join(parts)
