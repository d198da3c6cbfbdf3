"""Draw a dialplan: Graphviz dot source, rendered to SVG or PNG by the `dot` command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ivr import model

__all__ = ["DiagramError", "render", "to_dot"]

SHAPES: dict[model.NodeKind, str] = {
    model.NodeKind.PLAY: "box",
    model.NodeKind.MENU: "box3d",
    model.NodeKind.HOURS: "diamond",
    model.NodeKind.QUEUE: "doubleoctagon",
    model.NodeKind.TRANSFER: "cds",
    model.NodeKind.VOICEMAIL: "folder",
    model.NodeKind.HANGUP: "octagon",
    model.NodeKind.GOTO: "ellipse",
}
EDGE_LABELS: dict[model.EdgeKind, str] = {
    model.EdgeKind.NEXT: "",
    model.EdgeKind.KEY: "key",
    model.EdgeKind.DEFAULT: "default",
    model.EdgeKind.OPEN: "open",
    model.EdgeKind.CLOSED: "closed",
    model.EdgeKind.FAILED: "transfer failed",
    model.EdgeKind.OVERFLOW: "overflow",
}


class DiagramError(Exception):
    """`dot` is missing or failed."""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node_id(name: str) -> str:
    return _quote(f"step:{name}")


def _label(plan: model.Dialplan, node: model.Node) -> str:
    lines = [node.name, f"[{node.kind.value}]"]
    if node.language:
        lines.append(f"language {node.language}")
    prompts = model.prompts_of(node)
    if prompts:
        lines.append("plays " + ", ".join(prompts))
    if isinstance(node, model.HoursNode):
        lines.append(f"hours of {'queue ' + node.queue if node.queue else node.schedule}")
    elif isinstance(node, model.QueueNode):
        queue = plan.queues[node.queue]
        lines.append(f"queue {queue.name} ({queue.language}, {queue.schedule})")
    elif isinstance(node, model.TransferNode):
        lines.append(f"to {node.destination}: {plan.destinations[node.destination].uri}")
    elif isinstance(node, model.VoicemailNode):
        lines.append(f"mailbox {node.mailbox}, max {node.max_seconds} s")
    elif isinstance(node, model.MenuNode):
        lines.append(f"timeout {node.timeout:g} s, retries {node.retries}")
    return "\n".join(lines)


def to_dot(plan: model.Dialplan) -> str:
    """Dot source: numbers (ellipses) lead into the flow; edges carry keys and conditions."""
    out = [
        "digraph dialplan {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for number in plan.numbers.values():
        extra = number.region or number.partner or ""
        label = f"{number.number}\n{number.kind.value}" + (f"\n{extra}" if extra else "")
        num_id = _quote(f"number:{number.number}")
        out.append(
            f"  {num_id} [shape=ellipse, style=filled, fillcolor=lightblue, label={_quote(label)}];"
        )
        out.append(f"  {num_id} -> {_node_id(number.entry)};")
    out.append('  "unknown" [shape=ellipse, style=dashed, label="any other number"];')
    out.append(f'  "unknown" -> {_node_id(plan.default_entry)};')
    for node in plan.nodes.values():
        shape = SHAPES[node.kind]
        out.append(f"  {_node_id(node.name)} [shape={shape}, label={_quote(_label(plan, node))}];")
        for target, label in _edges(plan, node):
            out.append(f"  {_node_id(node.name)} -> {_node_id(target)} [label={_quote(label)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _edges(plan: model.Dialplan, node: model.Node) -> list[tuple[str, str]]:
    return [(edge.target, _edge_label(plan, node, edge)) for edge in model.edges(node, plan.queues)]


def _edge_label(plan: model.Dialplan, node: model.Node, edge: model.Edge) -> str:
    if edge.kind is model.EdgeKind.KEY:
        return f"key {edge.key}"
    if isinstance(node, model.QueueNode) and edge.kind is model.EdgeKind.OVERFLOW:
        return f"after {plan.queues[node.queue].max_wait} s"
    return EDGE_LABELS[edge.kind]


def render(plan: model.Dialplan, output: Path, fmt: str | None = None) -> None:
    """Write the diagram to `output` as SVG or PNG (from its suffix unless `fmt` is given)."""
    fmt = (fmt or output.suffix.lstrip(".")).lower()
    if fmt not in ("svg", "png"):
        raise DiagramError(f"{output}: can only draw .svg or .png, not {fmt!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise DiagramError("the Graphviz `dot` command is not installed")
    result = subprocess.run(
        [dot, f"-T{fmt}", "-o", str(output)],
        input=to_dot(plan).encode("utf-8"),
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise DiagramError(f"dot failed: {result.stderr.decode(errors='replace').strip()}")
