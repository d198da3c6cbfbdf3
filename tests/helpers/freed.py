"""Weak references for tests that check an object is freed, compiled classes included.

mypyc's native classes (pbx/native.py) take no weak references. For them ``ref`` finds the
object among those the garbage collector tracks, by identity and type: the same answer as
``weakref.ref``'s call, as long as the test holds no other reference. A freed object whose
address a new object of the same type took would count as alive: such a test can fail
wrongly, never pass wrongly.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class _TrackedRef:
    __slots__ = ("_id", "_type")

    def __init__(self, obj: object) -> None:
        if not gc.is_tracked(obj):
            raise TypeError(f"{type(obj).__name__} is not tracked by the garbage collector")
        self._id = id(obj)
        self._type = type(obj)

    def __call__(self) -> object | None:
        for obj in gc.get_objects():
            if id(obj) == self._id and type(obj) is self._type:
                return obj
        return None


def ref(obj: T) -> Callable[[], T | None]:
    """``weakref.ref(obj)``, or its equivalent for an object that takes no weak reference."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return _TrackedRef(obj)  # type: ignore[return-value]
