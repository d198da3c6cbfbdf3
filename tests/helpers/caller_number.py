"""A carrier INVITE that carries the caller's number in every place a carrier may put it."""

from __future__ import annotations

DIGITS = "612345678"  # the caller's number without prefix: no form of it may appear anywhere


INVITE = (
    "INVITE sip:09000767@{host}:{port} SIP/2.0\n"
    "Via: SIP/2.0/UDP {me}:{myport};branch=z9hG4bK0612345678x;rport\n"
    'From: "0612345678" <sip:0612345678@{me}>;tag=0612345678\n'
    "To: <sip:09000767@{host}>\n"
    "Call-ID: 0612345678-call@{me}\n"
    "CSeq: 1 INVITE\n"
    "Contact: <sip:+31612345678@{me}:{myport}>\n"
    "P-Asserted-Identity: <tel:+31612345678>\n"
    "Remote-Party-ID: <sip:0612345678@{me}>;party=calling\n"
    "Diversion: <sip:0612345678@{me}>;reason=unconditional\n"
    "User-Agent: Phone 0612345678\n"
    "Max-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {length}\n\n{sdp}"
)


def headers_by_name(message: str) -> dict[str, str]:
    return {
        line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
        for line in message.split("\r\n")[1:]
        if ":" in line
    }
