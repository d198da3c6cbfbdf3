"""What the call layer reports as calls happen: one observer, handed to the components.

The components (switchboard, ringing, waiting room, IVR) say what happened; the observer decides
what to count (`pbx.metrics.Metrics` implements it). Arguments are closed sets (outcomes,
refusal reasons, queue names from the dialplan) and durations: never a number or a Call-ID.
"""

from __future__ import annotations

from typing import Protocol


class CallEvents(Protocol):
    def call_ended(self, outcome: str) -> None:
        """An inbound call ended: answered, abandoned, voicemail, failed, ..."""

    def invite_refused(self, reason: str) -> None:
        """An INVITE was refused before a call was placed (draining, auth failure, ...)."""

    def queue_overflowed(self, queue: str) -> None:
        """A caller waited a queue's maximum and goes to its overflow."""

    def caller_answered(self, queue: str, waited: float) -> None:
        """A volunteer answered a caller who waited `waited` seconds in `queue`."""

    def caller_abandoned(self, queue: str, waited: float) -> None:
        """A caller hung up after waiting `waited` seconds in `queue`."""
