"""Raw SIP texts for tests that write requests by hand (formatted with host and ports)."""

from __future__ import annotations

INVITE = (
    "INVITE sip:09000767@{host}:{port} SIP/2.0\n"
    "Via: SIP/2.0/UDP {me}:{myport};branch=z9hG4bKretrans1;rport\n"
    "From: <sip:0612345678@{me}>;tag=c1\nTo: <sip:09000767@{host}>\n"
    "Call-ID: retrans-1@{me}\nCSeq: 1 INVITE\nContact: <sip:c@{me}:{myport}>\n"
    "Max-Forwards: 70\nContent-Length: 0\n\n"
)


SDP = (
    "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
    "m=audio {port} RTP/AVP 8 0\na=rtpmap:8 PCMA/8000\na=rtpmap:0 PCMU/8000\n"
)
