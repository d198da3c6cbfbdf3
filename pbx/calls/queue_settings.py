"""The dialplan's queues as the queue engine's settings: the one place the two meet.

`queues/` knows nothing of the dialplan (`ivr/`); the service hands the dispatcher the queues of
the plan in force through `engine_settings` whenever a plan is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr.model import Queue
from queues.engine import QueueConfig


def queue_config(queue: Queue) -> QueueConfig:
    return QueueConfig(
        name=queue.name,
        language=queue.language,
        skill=queue.skill,
        priority=queue.priority,
        max_wait=queue.max_wait,
        unstaffed_wait=queue.unstaffed_wait,
        ring_timeout=float(queue.ring_timeout),
        wrap_up=float(queue.wrap_up),
        prefer_local=queue.regional.prefer_local,
        local_wait=queue.regional.local_wait,
    )


def engine_settings(queues: Mapping[str, Queue]) -> dict[str, QueueConfig]:
    return {q.name: queue_config(q) for q in queues.values()}
