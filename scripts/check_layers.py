#!/usr/bin/env python3
"""Checks that no import runs back up the layers (see ARCHITECTURE.md); run by scripts/test.sh.

Every module of pbx/, ivr/ and queues/ belongs to one layer, found by the longest prefix in
LAYERS; a module may import its own layer and the ones below, never one above. Every import is
counted: top-level, inside functions, under TYPE_CHECKING, relative. A module no layer names is
an error too (place it, so that the map stays whole). Test files and tests/conftest.py are
imported by nothing: what tests share lives in tests/helpers/. Prints each violation as
file:line and exits 1; stdlib only.

Usage: scripts/check_layers.py [ROOT]   (ROOT: the tree to check, default: this repository)
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("pbx", "ivr", "queues")

# Bottom to top. Modules named here that do not exist yet are placed for branches being merged.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", (
        "pbx.private_files", "pbx.logs", "pbx.config", "pbx.privileges", "pbx.event_loop",
        "pbx.collector", "pbx.realtime", "pbx.native",
    )),
    # the protocol cores: sans-IO state machines with their asyncio adapters
    ("protocol", ("pbx.sip", "pbx.media", "queues", "pbx.leadership")),
    # what calls are made of: the dialplan, anonymity, storage, observers
    ("domain", (
        "ivr", "pbx.anonymity", "pbx.db", "pbx.metrics", "pbx.restart_state",
        "pbx.profile", "pbx.directory", "pbx.call_events", "pbx.voicemail",
        "pbx.call_records", "pbx.staffing_metrics", "pbx.reports", "pbx.report_charts",
    )),
    ("calls", ("pbx.calls",)),
    ("switchboard", (
        "pbx.switchboard", "pbx.drain", "pbx.plan_in_force", "pbx.bookkeeping",
        "pbx.takeover", "pbx.ha",
    )),
    ("root", (
        "pbx.service", "pbx.app", "pbx.health", "pbx.commands", "pbx.cli", "pbx.__main__",
        "pbx.demo", "pbx.web",
    )),
]  # fmt: skip
PACKAGE_INITS_LAYER = "root"  # pbx/__init__.py and the like: the module `pbx` itself only

# Imports allowed to run upwards while a refactoring removes them, each with a comment saying
# which; the check fails once an entry no longer occurs, so the list only shrinks.
ALLOWED: set[tuple[str, str]] = set()  # (file, imported module) exceptions; keep it empty


@dataclass(frozen=True)
class Import:
    file: str  # relative to the root, with /
    line: int
    importer: str  # dotted module name
    imported: str


def layer_of(module: str) -> int | None:
    if module in PACKAGES:
        return [name for name, _ in LAYERS].index(PACKAGE_INITS_LAYER)
    best: tuple[int, int] | None = None  # (prefix length, layer index)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path, root: Path) -> list[Import]:
    importer = module_name(path, root)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    rel = path.relative_to(root).as_posix()
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names: list[str]
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pbx import switchboard` imports the module pbx.switchboard
            names = [
                f"{base}.{a.name}" if is_module(root, f"{base}.{a.name}") else base
                for a in node.names
            ]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                found.append(Import(rel, node.lineno, importer, name))
    return found


def check(root: Path, allowed: set[tuple[str, str]] = ALLOWED) -> tuple[list[str], list[str]]:
    """(violations, stale allowlist entries)"""
    violations: list[str] = []
    seen_allowed: set[tuple[str, str]] = set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            own = layer_of(module)
            rel = path.relative_to(root).as_posix()
            if own is None:
                violations.append(f"{rel}:1: {module} is in no layer (add it to LAYERS)")
                continue
            for imp in imports_of(path, root):
                target = layer_of(imp.imported)
                if target is None or target <= own:
                    continue  # an unplaced target is reported at its own file
                if (imp.file, imp.imported) in allowed:
                    seen_allowed.add((imp.file, imp.imported))
                    continue
                violations.append(
                    f"{imp.file}:{imp.line}: {imp.importer} ({LAYERS[own][0]}) imports "
                    f"{imp.imported} ({LAYERS[target][0]}), a layer above it"
                )
    violations += test_imports(root)
    stale = [f"{f}: no longer imports {m}" for f, m in sorted(allowed - seen_allowed)]
    return violations, stale


def test_imports(root: Path) -> list[str]:
    """Test files and conftest sit above everything: what tests share is in tests/helpers/."""
    found: list[str] = []
    for folder in ("tests", "bench", "scripts"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                else:
                    continue
                for name in names:
                    last = name.split(".")[1] if name.startswith("tests.") else ""
                    if last == "conftest" or last.startswith("test_"):
                        rel = path.relative_to(root).as_posix()
                        found.append(f"{rel}:{node.lineno}: imports {name} (use tests/helpers/)")
                        break
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    violations, stale = check(root)
    for line in violations:
        print(line)
    for line in stale:
        print(f"scripts/check_layers.py: ALLOWED entry left over ({line}): remove it")
    if violations or stale:
        print(f"layer check: {len(violations)} violation(s), {len(stale)} stale allowance(s)")
        return 1
    order = " < ".join(name for name, _ in LAYERS)
    print(f"layer check: no import runs up the layers ({order}); {len(ALLOWED)} allowed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
