"""Checks of the call graph: loops a caller can never leave, and steps nothing leads to.

- A loop with no key press and no wait at all (play/goto/hours/transfer failure only) goes round
  forever: an error.
- A loop a caller who presses nothing goes round forever, but with menu waits in it: a warning.
- A step no number, queue overflow or `unknown_number` can reach (a draft, harmless): a warning.

Edges come from `ivr.model.edges`, the one definition of where a call can go from a step.
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr import model
from ivr.model import Dialplan
from ivr.yaml_reader import Pos, Reader

__all__ = ["check_graph", "reachable"]


def check_graph(r: Reader, plan: Dialplan, positions: Mapping[str, Pos]) -> None:
    """Report loops and unreachable steps, each at the position of its step."""
    nodes = plan.nodes
    # Silent loops: play/goto/hours/transfer-failure edges only (no key press, no wait).
    silent: dict[str, list[str]] = {}
    quiet: dict[str, list[str]] = {}  # silent edges plus menu defaults (timeouts only)
    for name, node in nodes.items():
        if isinstance(node, model.MenuNode):
            silent[name] = []
            quiet[name] = [node.default]
        else:
            silent[name] = list(model.successors(node))
            quiet[name] = list(silent[name])
    for cycle in _cycles(silent):
        path = " -> ".join([*cycle, cycle[0]])
        r.error(
            positions[cycle[0]],
            f"endless loop: {path} goes round forever without the caller pressing a key "
            "or waiting; send one of these steps somewhere else",
        )
    for cycle in _cycles(quiet):
        if any(isinstance(nodes[n], model.MenuNode) for n in cycle):
            path = " -> ".join([*cycle, cycle[0]])
            r.warn(
                positions[cycle[0]],
                f"a caller who presses nothing goes round {path} forever; consider a "
                "menu `default:` that leads to a queue",
            )
    seen = reachable(plan)
    for name in nodes:
        if name not in seen:
            r.warn(
                positions[name],
                f"step {name!r} is never reached (no number, menu or other step leads to it)",
            )


def reachable(plan: Dialplan) -> set[str]:
    """Steps a call can get to from a dialled number or `unknown_number` (overflow included)."""
    todo = [plan.default_entry, *(n.entry for n in plan.numbers.values())]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(edge.target for edge in model.edges(plan.nodes[name], plan.queues))
    return seen


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan), in file order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(root: str) -> None:
        nonlocal counter
        # Iterative DFS: a long chain of steps must not hit Python's recursion limit.
        work: list[tuple[str, int]] = [(root, 0)]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, i = work[-1]
            succ = [s for s in graph.get(node, []) if s in graph]
            if i < len(succ):
                work[-1] = (node, i + 1)
                nxt = succ[i]
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, []):
                    found.append(_cycle_in(set(component), graph))

    for name in graph:
        if name not in index:
            visit(name)
    order = list(graph)
    found.sort(key=lambda c: order.index(c[0]))
    return found


def _cycle_in(component: set[str], graph: Mapping[str, list[str]]) -> list[str]:
    """A simple cycle through the component's first node (in file order)."""
    start = next(n for n in graph if n in component)
    path = [start]
    seen = {start}
    node = start
    while True:
        nxt = next(s for s in graph[node] if s in component)
        if nxt == start:
            return path
        if nxt in seen:  # cut to the loop proper
            return path[path.index(nxt) :]
        path.append(nxt)
        seen.add(nxt)
        node = nxt
