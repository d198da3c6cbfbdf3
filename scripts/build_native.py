#!/usr/bin/env python3
"""Compiles the modules of ``pbx.native.MODULES`` into build/native/ (see pbx/native.py).

The sources are copied to a scratch directory and compiled there, so nothing is written next
to them: ``MYPYC_MODULES`` with mypyc, ``C_MODULES`` (``<module>.c``) with the C compiler. The
extension files and ``manifest.json`` (each source's SHA-256, this interpreter's tag) go to
build/native/. Up to date: nothing is done. Needs a C compiler and Python's headers
(Debian: ``apt-get install gcc python3-dev``) and mypy from the project's virtualenv; says
which is missing. About a minute on a 2-core machine.

Usage: .venv/bin/python scripts/build_native.py [--force]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbx import native  # noqa: E402

ROOT = native.ROOT


def missing_tools() -> list[str]:
    missing = []
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        missing.append("a C compiler (apt-get install gcc)")
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        missing.append(f"Python's headers, {headers} (apt-get install python3-dev)")
    if not (Path(sys.executable).parent / "mypyc").exists():
        missing.append("mypyc (run with the project's .venv: .venv/bin/python scripts/...)")
    return missing


def up_to_date(build: Path) -> bool:
    files, _ = native.check_build(build)
    return bool(files)


def compile_c(source: Path, suffix: str) -> None:
    """``source`` (a module written in C) into ``<name><suffix>`` beside it."""
    cc = shutil.which("cc") or shutil.which("gcc") or "cc"
    include = sysconfig.get_paths()["include"]
    target = source.with_name(source.stem + suffix)
    # Warnings shown, not fatal: another compiler's new warning must not stop a test run.
    cmd = [cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
           f"-I{include}", str(source), "-o", str(target)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"compiling {source.name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    if done.stderr.strip():
        print(done.stderr[-4000:], file=sys.stderr)


def build(out: Path) -> None:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    with tempfile.TemporaryDirectory(prefix="helpline-native-") as scratch:
        src = Path(scratch)
        for package in ("pbx", "ivr", "queues"):  # mypy follows the imports of what it compiles
            shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns(
                "__pycache__", "*.so"))  # fmt: skip
        shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
        files = [str(native.source_path(m).relative_to(ROOT)) for m in native.MYPYC_MODULES]
        mypyc = str(Path(sys.executable).parent / "mypyc")
        done = subprocess.run([mypyc, *files], cwd=src, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"mypyc failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        for module in native.C_MODULES:
            compile_c(native.source_path(module, src), suffix)
        runtime = list(src.glob(f"*__mypyc{suffix}"))
        if len(runtime) != 1:
            sys.exit(f"expected one mypyc runtime library in {src}, found {runtime}")
        staging = out.with_name(out.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        entries = {}
        for module in native.MODULES:
            rel = Path(*module.split(".")).with_suffix("")
            compiled = src / rel.parent / f"{rel.name}{suffix}"
            target = staging / rel.parent / compiled.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(compiled, target)
            entries[module] = {
                "file": str(target.relative_to(staging)),
                "sha256": native.source_digest(module, src),  # the copy compiled, as compiled
            }
        shutil.copy2(runtime[0], staging / runtime[0].name)
        manifest = {
            "cache_tag": sys.implementation.cache_tag,
            "runtime": {"name": runtime[0].name[: -len(suffix)], "file": runtime[0].name},
            "modules": entries,
        }
        (staging / native.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)  # (a service started just now runs plain Python)
        staging.rename(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    args = parser.parse_args()
    out = native.BUILD_DIR
    if not args.force and up_to_date(out):
        print(f"native modules: up to date in {out.relative_to(ROOT)}")
        return
    missing = missing_tools()
    if missing:
        sys.exit("cannot build the native modules; missing: " + "; ".join(missing))
    counts = f"{len(native.MYPYC_MODULES)} modules with mypyc, {len(native.C_MODULES)} in C"
    print(f"native modules: compiling {counts} ...", flush=True)
    build(out)
    print(f"native modules: built in {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
