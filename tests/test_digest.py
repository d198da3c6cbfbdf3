"""Digest auth (pbx/sip/digest.py): RFC vectors, independent hashlib checks, real clients."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from pbx.sip.digest import (
    Algorithm,
    AuthResult,
    Credential,
    DigestError,
    DigestResponse,
    NonceManager,
    NonceState,
    challenge_headers,
    expected_response,
    ha1,
    parse_authorization,
    verify,
)
from tests.helpers.digest import sip_authorization

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000.0

# RFC 7616 section 3.9.1 (Mufasa / "Circle of Life").
RFC7616 = {
    "username": "Mufasa",
    "realm": "http-auth@example.org",
    "password": "Circle of Life",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "uri": "/dir/index.html",
    "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
}
RFC7616_RESPONSES = {
    Algorithm.MD5: "8ca523f5e9506fed4657c9700eebdbec",
    Algorithm.SHA256: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def rfc_header(alg: Algorithm) -> str:
    v = RFC7616
    return (
        f'Digest username="{v["username"]}",\r\n realm="{v["realm"]}",\r\n'
        f' uri="{v["uri"]}",\r\n algorithm={alg.value},\r\n nonce="{v["nonce"]}",\r\n'
        f' nc=00000001,\r\n cnonce="{v["cnonce"]}",\r\n qop=auth,\r\n'
        f' response="{RFC7616_RESPONSES[alg]}",\r\n opaque="{v["opaque"]}"'
    )


@pytest.mark.parametrize("alg", list(Algorithm))
def test_rfc7616_example_response(alg: Algorithm) -> None:
    resp = parse_authorization(rfc_header(alg))
    assert resp.algorithm is alg
    assert (resp.qop, resp.nc, resp.opaque) == ("auth", "00000001", RFC7616["opaque"])
    v = RFC7616
    h1 = ha1(alg, v["username"], v["realm"], v["password"])
    assert expected_response(resp, "GET", h1) == RFC7616_RESPONSES[alg]


def test_rfc2617_md5_example() -> None:
    # RFC 2617 section 3.5: note "Circle Of Life" with a capital O there.
    header = (
        'Digest username="Mufasa", realm="testrealm@host.com",'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,'
        ' nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",'
        ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    resp = parse_authorization(header)
    h1 = ha1(Algorithm.MD5, "Mufasa", "testrealm@host.com", "Circle Of Life")
    assert expected_response(resp, "GET", h1) == "6629fae49393a05397450978507c4ef1"


@pytest.fixture
def nonces() -> NonceManager:
    return NonceManager(SECRET, lifetime=300)


@pytest.fixture
def anna() -> Credential:
    return Credential.from_password("anna", "helpline", "correct horse battery")


@pytest.mark.parametrize("alg", list(Algorithm))
@pytest.mark.parametrize("qop", [True, False])
def test_verify_accepts_right_password(
    alg: Algorithm, qop: bool, nonces: NonceManager, anna: Credential
) -> None:
    nonce = nonces.issue(NOW)
    header = sip_authorization(
        alg,
        "anna",
        "helpline",
        "correct horse battery",
        "REGISTER",
        "sip:helpline",
        nonce,
        nc="00000001" if qop else None,
        cnonce="c1" if qop else None,
    )
    assert verify(parse_authorization(header), "REGISTER", anna, nonces, NOW + 1) is AuthResult.OK


@pytest.mark.parametrize("alg", list(Algorithm))
def test_verify_rejects_wrong_password_method_user_realm(
    alg: Algorithm, nonces: NonceManager, anna: Credential
) -> None:
    nonce = nonces.issue(NOW)
    wrong = sip_authorization(
        alg, "anna", "helpline", "wrong password!", "REGISTER", "sip:h", nonce
    )
    assert verify(parse_authorization(wrong), "REGISTER", anna, nonces, NOW) is (
        AuthResult.BAD_PASSWORD
    )
    right = parse_authorization(
        sip_authorization(
            alg,
            "anna",
            "helpline",
            "correct horse battery",
            "REGISTER",
            "sip:h",
            nonce,
            nc="00000002",
        )
    )
    # The response covers the method: the same credentials for an INVITE do not verify.
    assert verify(right, "INVITE", anna, nonces, NOW) is AuthResult.BAD_PASSWORD
    assert verify(right, "REGISTER", None, nonces, NOW) is AuthResult.UNKNOWN_USER
    other = Credential.from_password("bob", "helpline", "correct horse battery")
    assert verify(right, "REGISTER", other, nonces, NOW) is AuthResult.UNKNOWN_USER
    realm_mismatch = parse_authorization(
        sip_authorization(
            alg,
            "anna",
            "helpline",
            "correct horse battery",
            "REGISTER",
            "sip:h",
            nonce,
            realm_in_header="elsewhere",
        )
    )
    assert verify(realm_mismatch, "REGISTER", anna, nonces, NOW) is AuthResult.BAD_REALM
    disabled = Credential(anna.username, anna.realm, anna.ha1_md5, anna.ha1_sha256, disabled=True)
    assert verify(right, "REGISTER", disabled, nonces, NOW) is AuthResult.DISABLED
    assert verify(right, "REGISTER", anna, nonces, NOW) is AuthResult.OK


def test_nonce_expiry_and_forgery(nonces: NonceManager, anna: Credential) -> None:
    nonce = nonces.issue(NOW)
    assert nonces.check(nonce, NOW + 299) is NonceState.VALID
    assert nonces.check(nonce, NOW + 301) is NonceState.STALE
    assert nonces.check(nonce, NOW - 60) is NonceState.INVALID  # issued "in the future"
    # Another server secret, a flipped character, garbage: not ours.
    assert NonceManager(b"x" * 32).check(nonce, NOW) is NonceState.INVALID
    flipped = nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1]
    assert nonces.check(flipped, NOW) is NonceState.INVALID
    assert nonces.check("not a nonce!", NOW) is NonceState.INVALID
    assert nonces.check("", NOW) is NonceState.INVALID
    # Right password with an expired nonce: STALE (re-challenge with stale=true), wrong: BAD.
    good = parse_authorization(
        sip_authorization(
            Algorithm.SHA256,
            "anna",
            "helpline",
            "correct horse battery",
            "REGISTER",
            "sip:h",
            nonce,
        )
    )
    result = verify(good, "REGISTER", anna, nonces, NOW + 400)
    assert result is AuthResult.STALE and result.rechallenge_stale
    bad = parse_authorization(
        sip_authorization(
            Algorithm.SHA256, "anna", "helpline", "nope nope nope", "REGISTER", "sip:h", nonce
        )
    )
    assert verify(bad, "REGISTER", anna, nonces, NOW + 400) is AuthResult.BAD_PASSWORD
    forged = sip_authorization(
        Algorithm.MD5,
        "anna",
        "helpline",
        "correct horse battery",
        "REGISTER",
        "sip:h",
        "forged-nonce",
    )
    assert verify(parse_authorization(forged), "REGISTER", anna, nonces, NOW) is (
        AuthResult.BAD_NONCE
    )


def test_nonce_count_replay_is_refused(nonces: NonceManager, anna: Credential) -> None:
    nonce = nonces.issue(NOW)

    def attempt(nc: str) -> AuthResult:
        header = sip_authorization(
            Algorithm.MD5,
            "anna",
            "helpline",
            "correct horse battery",
            "REGISTER",
            "sip:h",
            nonce,
            nc=nc,
        )
        return verify(parse_authorization(header), "REGISTER", anna, nonces, NOW)

    assert attempt("00000001") is AuthResult.OK
    assert attempt("00000001") is AuthResult.REPLAY
    assert attempt("00000003") is AuthResult.OK
    assert attempt("00000002") is AuthResult.REPLAY


def test_nonce_count_tracking_is_bounded() -> None:
    nm = NonceManager(SECRET, max_tracked=3)
    issued = [nm.issue(NOW) for _ in range(5)]
    for n in issued:
        assert nm.use_count(n, 1)
    assert not nm.use_count(issued[-1], 1)  # still tracked
    assert nm.use_count(issued[0], 1)  # evicted: only the lifetime bounds its replay


def test_challenge_headers_offer_one_md5_by_default_and_parse_back() -> None:
    # one MD5 challenge by default: baresip 1.0 refuses a response with any unknown algorithm
    assert len(challenge_headers("r", "n")) == 1
    values = challenge_headers(
        'help "line"', "n0nce", stale=True, algorithms=(Algorithm.SHA256, Algorithm.MD5)
    )
    assert [v.split("algorithm=")[1].split(",")[0] for v in values] == ["SHA-256", "MD5"]
    for v in values:
        assert v.startswith("Digest ")
        assert 'realm="help \\"line\\""' in v
        assert 'qop="auth"' in v and "stale=true" in v
    assert "stale" not in challenge_headers("r", "n")[0]
    assert len(challenge_headers("r", "n", algorithms=(Algorithm.MD5,))) == 1


def test_parser_handles_quoting_case_and_whitespace() -> None:
    header = (
        '  dIgEsT\tUserName = "an\\"na" ,, REALM="help\\\\line",nonce="a,b=c",'
        ' uri="sip:x@y;transport=udp", response="' + "A" * 32 + '", QOP="AUTH", nc=0000000a,'
        ' cnonce="z", algorithm="md5", extra=token  '
    )
    resp = parse_authorization(header)
    assert resp.username == 'an"na'
    assert resp.realm == "help\\line"
    assert resp.nonce == "a,b=c"
    assert resp.uri == "sip:x@y;transport=udp"
    assert resp.response == "a" * 32
    assert (resp.qop, resp.nc, resp.algorithm) == ("auth", "0000000a", Algorithm.MD5)
    assert resp.params["extra"] == "token"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Basic dXNlcjpwYXNz", "unsupported authentication scheme"),
        ('Digest username="a", realm="r", nonce="n", uri="u"', "missing parameter 'response'"),
        ('Digest username="a", username="b"', "duplicate parameter 'username'"),
        ('Digest username="a', "unterminated quoted string"),
        ("Digest username", "has no value"),
        ("Digest username=", "empty or malformed value"),
        ('Digest username="a" realm="r"', "expected ','"),
        ("Digest =x", "expected a parameter name"),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="'
            + "0" * 32
            + '", algorithm=SHA-512',
            "unsupported digest algorithm",
        ),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="'
            + "0" * 32
            + '", algorithm=SHA-256',
            "response must be 64 hex digits",
        ),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="xyz"',
            "response must be 32 hex digits",
        ),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="'
            + "0" * 32
            + '", qop=auth, cnonce="c"',
            "qop given without nc",
        ),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="'
            + "0" * 32
            + '", qop=auth, nc=1, cnonce="c"',
            "nc must be 8 hex digits",
        ),
    ],
)
def test_parser_errors_are_specific(header: str, message: str) -> None:
    with pytest.raises(DigestError, match=message):
        parse_authorization(header)


def test_auth_int_is_not_accepted(nonces: NonceManager, anna: Credential) -> None:
    resp = DigestResponse(
        "anna",
        "helpline",
        nonces.issue(NOW),
        "sip:h",
        "0" * 32,
        qop="auth-int",
        nc="00000001",
        cnonce="c",
    )
    assert verify(resp, "REGISTER", anna, nonces, NOW) is AuthResult.BAD_QOP


# --- real clients -------------------------------------------------------------------------------


def test_pyvoip_client_response_verifies(nonces: NonceManager) -> None:
    """pyVoIP computes an RFC 2069 (no qop) MD5 response to our challenge."""
    import pyVoIP.VoIP  # noqa: F401  (importing pyVoIP.SIP first hits a circular import)
    from pyVoIP.SIP import SIPClient, SIPMessage

    cred = Credential.from_password("vol42", "helpline", "s3cret-handset-pw")
    nonce = nonces.issue(NOW)
    challenge = challenge_headers("helpline", nonce, algorithms=(Algorithm.MD5,))[0]
    raw = (
        "SIP/2.0 401 Unauthorized\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
        "From: <sip:vol42@127.0.0.1>;tag=1\r\nTo: <sip:vol42@127.0.0.1>;tag=2\r\n"
        "Call-ID: c1\r\nCSeq: 1 REGISTER\r\n"
        f"WWW-Authenticate: {challenge}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    message = SIPMessage(raw)
    client = SIPClient("127.0.0.1", 5060, "vol42", "s3cret-handset-pw", phone=None)
    response = client.gen_authorization(message).decode()
    header = (
        f'Digest username="vol42", realm="helpline", nonce="{nonce}",'
        f' uri="sip:127.0.0.1;transport=UDP", response="{response}", algorithm=MD5'
    )
    assert verify(parse_authorization(header), "REGISTER", cred, nonces, NOW) is AuthResult.OK
    wrong = Credential.from_password("vol42", "helpline", "another password")
    assert verify(parse_authorization(header), "REGISTER", wrong, nonces, NOW) is (
        AuthResult.BAD_PASSWORD
    )


SIPP_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="digest register">
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[service]@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:[service]@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 60
Content-Length: 0

]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[service]@[remote_ip]>;tag=[call_number]
To: <sip:[service]@[remote_ip]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:[service]@[local_ip]:[local_port]>
[authentication]
Max-Forwards: 70
Expires: 60
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


class _Registrar(asyncio.DatagramProtocol):
    """Just enough UDP SIP to challenge one REGISTER and verify the answer."""

    def __init__(self, cred: Credential, nonces: NonceManager) -> None:
        self.cred, self.nonces = cred, nonces
        self.results: list[AuthResult] = []
        self.responses: list[DigestResponse] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        head = data.decode().split("\r\n\r\n")[0].split("\r\n")
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        echo = "".join(
            f"{n}: {headers[n.lower()]}\r\n" for n in ("Via", "From", "To", "Call-ID", "CSeq")
        )
        auth = headers.get("authorization")
        if auth is None:
            nonce = self.nonces.issue(NOW)
            challenge = challenge_headers("helpline", nonce, algorithms=(Algorithm.MD5,))[0]
            reply = f"SIP/2.0 401 Unauthorized\r\n{echo}WWW-Authenticate: {challenge}\r\n"
        else:
            resp = parse_authorization(auth)
            self.responses.append(resp)
            result = verify(resp, "REGISTER", self.cred, self.nonces, NOW)
            self.results.append(result)
            reply = "SIP/2.0 200 OK\r\n" if result.ok else "SIP/2.0 403 Forbidden\r\n"
            reply += echo
        assert self.transport is not None
        self.transport.sendto((reply + "Content-Length: 0\r\n\r\n").encode(), addr)


@pytest.mark.peers
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
@pytest.mark.parametrize("password", ["s3cret-handset-pw", "wrong-password"])
async def test_sipp_qop_auth_response_verifies(
    tmp_path: Path, nonces: NonceManager, password: str
) -> None:
    """sipp answers our challenge with qop=auth MD5; only the right password verifies."""
    cred = Credential.from_password("vol42", "helpline", "s3cret-handset-pw")
    scenario = tmp_path / "register.xml"
    scenario.write_text(SIPP_SCENARIO)
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(
        lambda: _Registrar(cred, nonces), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        client_port = s.getsockname()[1]
    try:
        proc = await asyncio.create_subprocess_exec(
            "sipp",
            f"127.0.0.1:{port}",
            "-sf",
            str(scenario),
            "-m",
            "1",
            "-s",
            "vol42",
            "-au",
            "vol42",
            "-ap",
            password,
            "-i",
            "127.0.0.1",
            "-p",
            str(client_port),
            "-timeout",
            "10",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(tmp_path / "err.log"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=tmp_path,
        )
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        transport.close()
    expected = AuthResult.OK if password == "s3cret-handset-pw" else AuthResult.BAD_PASSWORD
    assert registrar.results == [expected]
    [resp] = registrar.responses
    assert (resp.qop, resp.nc, resp.algorithm) == ("auth", "00000001", Algorithm.MD5)
    assert (code == 0) == (expected is AuthResult.OK)
