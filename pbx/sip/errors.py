"""Errors of the SIP syntax layer."""

from __future__ import annotations


class SipParseError(ValueError):
    """A message (or part of one) that is not valid SIP.

    `reason` is short enough to be used as the reason phrase of a 400 response, so a peer learns
    exactly what was wrong (e.g. "Bad Request - Invalid CSeq").
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
