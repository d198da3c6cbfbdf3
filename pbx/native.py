"""Native modules: the hot protocol modules compiled with mypyc, used when asked for.

Most of a call setup's CPU goes to the SIP syntax and transaction layers, and most of a relayed
packet's to the media relay path (``bench/README.md``). mypyc compiles those same modules, typed
as they are, to C extensions: the same code with about a third fewer instructions per parsed
message, per transaction and per relayed packet (``bench/bench_instructions.py``). One small
module is written in C beside its plain twin (``C_MODULES``: the relay's datagram I/O). The
plain Python modules stay the default and the reference; this changes how fast, never what.

- ``scripts/build_native.py`` compiles ``MODULES`` into ``build/native/`` (not next to the
  sources, where an old ``.so`` would shadow an edited ``.py``) and writes ``manifest.json``
  with each source's SHA-256.
- ``HELPLINE_NATIVE=1`` in the environment makes ``import pbx`` call ``activate()``, which
  installs an import finder for those modules, but only if the build matches every source
  byte for byte and this interpreter. Otherwise nothing compiled is loaded and ``STATUS`` says
  why (the service logs it at start): a missing or stale build costs speed, never a start.

Only the standard library here: this runs before any other module of the service is imported.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = [
    "BUILD_DIR",
    "C_MODULES",
    "ENV",
    "MODULES",
    "MYPYC_MODULES",
    "STATUS",
    "NativeStatus",
    "activate",
    "asked_for",
    "check_build",
    "source_digest",
]

ENV = "HELPLINE_NATIVE"
ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "native"
MANIFEST = "manifest.json"

# What is compiled with mypyc: the SIP syntax and transaction layers, SDP and offer/answer, and
# the media relay path.
MYPYC_MODULES: tuple[str, ...] = (
    "pbx.sip.address", "pbx.sip.errors", "pbx.sip.grammar", "pbx.sip.headers",
    "pbx.sip.message", "pbx.sip.parser", "pbx.sip.timers", "pbx.sip.uri", "pbx.sip.via",
    "pbx.sip.transactions.client", "pbx.sip.transactions.effects",
    "pbx.sip.transactions.layer", "pbx.sip.transactions.matching",
    "pbx.sip.transactions.server", "pbx.sip.transactions.timer_queue",
    "pbx.sip.transactions.uas_2xx",
    "pbx.media.bridge", "pbx.media.dtmf", "pbx.media.endpoint", "pbx.media.filler",
    "pbx.media.g711", "pbx.media.leg", "pbx.media.offer_answer", "pbx.media.poller",
    "pbx.media.rtp", "pbx.media.sdp", "pbx.media.ticker",
)  # fmt: skip
# Written in C beside their plain twin (``<module>.c`` next to ``<module>.py``, same functions):
# what mypyc cannot make cheaper, the calls into the socket module for every relayed packet.
C_MODULES: tuple[str, ...] = ("pbx.media.udp",)
MODULES = MYPYC_MODULES + C_MODULES


@dataclass(frozen=True, slots=True)
class NativeStatus:
    active: bool
    reason: str  # why not, or what is loaded
    modules: tuple[str, ...] = ()


STATUS = NativeStatus(False, f"not asked for ({ENV} is not set)")


def source_path(module: str, root: Path = ROOT) -> Path:
    """What is compiled for ``module``: its ``.py``, or its ``.c`` for ``C_MODULES``."""
    return root.joinpath(*module.split(".")).with_suffix(".c" if module in C_MODULES else ".py")


def source_digest(module: str, root: Path = ROOT) -> str:
    return hashlib.sha256(source_path(module, root).read_bytes()).hexdigest()


class _NativeFinder(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their compiled files, and nothing else."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def check_build(build: Path) -> tuple[dict[str, Path], str]:
    """The compiled files by module name, or ({}, why they cannot be used)."""
    try:
        manifest = json.loads((build / MANIFEST).read_text())
    except FileNotFoundError:
        return {}, f"no build in {build} (run scripts/build_native.py)"
    except (OSError, ValueError) as exc:
        return {}, f"unreadable {build / MANIFEST}: {exc}"
    try:
        if manifest["cache_tag"] != sys.implementation.cache_tag:
            tag = manifest["cache_tag"]
            return {}, f"built for {tag}, this is {sys.implementation.cache_tag}"
        compiled = manifest["modules"]
        if sorted(compiled) != sorted(MODULES):
            return {}, "built for another list of modules (run scripts/build_native.py)"
        stale = [m for m in MODULES if compiled[m]["sha256"] != source_digest(m)]
        if stale:
            changed = ", ".join(stale)
            return {}, f"stale: {changed} changed since the build (run scripts/build_native.py)"
        files = {m: build / compiled[m]["file"] for m in MODULES}
        files[manifest["runtime"]["name"]] = build / manifest["runtime"]["file"]
    except (KeyError, TypeError) as exc:  # a manifest of another shape: never a failed start
        return {}, f"unreadable {build / MANIFEST}: no {exc}"
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        return {}, f"missing: {', '.join(missing)}"
    return files, ""


def activate(build: Path = BUILD_DIR) -> NativeStatus:
    """Load ``MODULES`` from ``build`` from now on, if it matches the sources (see the module
    docstring). Call before any of them is imported; returns (and sets) ``STATUS``."""
    global STATUS
    if STATUS.active:
        return STATUS
    early = [m for m in MODULES if m in sys.modules]
    files, why = check_build(build) if not early else ({}, f"imported before: {', '.join(early)}")
    if not files:
        STATUS = NativeStatus(False, why)
        return STATUS
    sys.meta_path.insert(0, _NativeFinder(files))
    what = f"{len(MYPYC_MODULES)} modules compiled with mypyc, {len(C_MODULES)} in C"
    STATUS = NativeStatus(True, what, MODULES)
    return STATUS


def asked_for() -> bool:
    return os.environ.get(ENV, "").strip() not in ("", "0")
