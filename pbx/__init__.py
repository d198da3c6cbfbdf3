"""The helpline's telephony service (README.md)."""

from pbx import native as _native

if _native.asked_for():  # HELPLINE_NATIVE=1: the compiled modules, if built (native.py)
    _native.activate()
