"""The layer-import check of the lint step (scripts/check_layers.py), on small synthetic trees."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_layers.py"


def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_layers", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def tree(root: Path, files: dict[str, str]) -> Path:
    """A tree of pbx/, ivr/ and queues/ packages holding `files` (path -> source)."""
    for package in ("pbx", "pbx/sip", "pbx/calls", "pbx/media", "ivr", "queues"):
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    for name, source in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source)
    return root


def run(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, timeout=60
    )


def allowed_files() -> dict[str, str]:
    """The imports the check still allows, so that its allowlist is not reported as stale."""
    files: dict[str, str] = {}
    for path, module in sorted(checker().ALLOWED):
        files[path] = files.get(path, "") + f"import {module}\n"
    return files


def test_imports_up_the_layers_are_each_reported_with_file_and_line(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "pbx/switchboard.py": "",
        "pbx/service.py": "from pbx.switchboard import Switchboard\n",  # down: fine
        "pbx/calls/legs.py": "from pbx.sip.stack import SipStack\n",  # down: fine
        "pbx/sip/stack.py": '"""doc"""\n\nfrom pbx.calls.legs import InboundLeg\n',
        "pbx/media/player.py": "def f():\n    import pbx.service\n",  # inside a function
        "ivr/runtime.py": "from pbx import switchboard\n",  # a module named in from-import
        "pbx/calls/ringing.py": "from ..switchboard import Switchboard\n",  # relative
        "queues/roster.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ivr\n",
        **allowed_files(),
    })  # fmt: skip
    result = run(root)
    assert result.returncode == 1, result.stdout
    reported = [line.split(": ", 1)[0] for line in result.stdout.splitlines() if ".py:" in line]
    assert sorted(reported) == [
        "ivr/runtime.py:1", "pbx/calls/ringing.py:1", "pbx/media/player.py:2",
        "pbx/sip/stack.py:3", "queues/roster.py:3",
    ]  # fmt: skip
    assert "pbx.sip.stack (protocol) imports pbx.calls.legs (calls)" in result.stdout


def test_a_tree_whose_imports_only_run_down_passes(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "pbx/sip/stack.py": "from pbx.private_files import write_private\n",
        "pbx/calls/legs.py": "from pbx.sip.stack import SipStack\nimport ivr.model\n",
        "ivr/model.py": "from pbx.media import prompts\n",
        "pbx/app.py": "from pbx.calls.legs import InboundLeg\n",
        **allowed_files(),
    })  # fmt: skip
    result = run(root)
    assert result.returncode == 0, result.stdout
    assert "no import runs up the layers" in result.stdout


def test_a_module_in_no_layer_and_a_stale_allowance_fail(tmp_path: Path) -> None:
    root = tree(tmp_path, {"pbx/newthing.py": "", "pbx/calls/direct.py": ""})
    violations, stale = checker().check(root, {("pbx/calls/direct.py", "pbx.switchboard")})
    assert violations == ["pbx/newthing.py:1: pbx.newthing is in no layer (add it to LAYERS)"]
    assert stale == ["pbx/calls/direct.py: no longer imports pbx.switchboard"]


def test_a_test_file_imported_by_another_or_conftest_imported_fails(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "tests/__init__.py": "",
        "tests/helpers/__init__.py": "",
        "tests/helpers/service.py": "from tests.conftest import MakeHelpline\n",
        "tests/test_a.py": "from tests.helpers.service import Running\nfrom tests import test_b\n",
        "tests/test_b.py": "\n\nfrom tests.test_a import helper\n",
        **allowed_files(),
    })  # fmt: skip
    result = run(root)
    assert result.returncode == 1, result.stdout
    reported = [line.split(": ", 1)[0] for line in result.stdout.splitlines() if ".py:" in line]
    assert sorted(reported) == [
        "tests/helpers/service.py:1", "tests/test_a.py:2", "tests/test_b.py:3",
    ]  # fmt: skip


def test_this_repository_passes() -> None:
    result = run(SCRIPT.parent.parent)
    assert result.returncode == 0, result.stdout
