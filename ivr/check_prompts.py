"""Checks of the prompts a plan plays: each must be recorded in every language a caller can
hear it in.

Which languages a caller can be in at each step: every entry starts in the plan's first
language; a step with `language:` sets it for itself and what follows (along `ivr.model.edges`,
queue overflow included). The recordings are the caller's `KnownPrompts` (the loader does not
read audio itself).
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr import model
from ivr.build_flow import NodeInfo
from ivr.model import Dialplan
from ivr.prompts import REQUIRED_PROMPTS, KnownPrompts
from ivr.yaml_reader import Reader, suggest

__all__ = ["check_prompts", "languages_at"]


def check_prompts(
    r: Reader, plan: Dialplan, known: KnownPrompts, node_info: Mapping[str, NodeInfo]
) -> None:
    """Report each prompt (at its position) missing in a language callers reach it in."""
    nodes = plan.nodes
    languages = plan.languages
    langs = languages_at(plan)
    for name, info in node_info.items():
        node_langs = langs.get(name) or {nodes[name].language or languages[0]}
        for prompt, pos in info.prompts:
            missing = sorted(
                lang for lang in node_langs if not known.has(lang, prompt, fallback=False)
            )
            if not missing:
                continue
            if all(not known.has(lang, prompt, fallback=False) for lang in languages):
                r.error(
                    pos,
                    f"prompt {prompt!r} does not exist: there is no {prompt}.wav in the "
                    f"recordings{suggest(prompt, REQUIRED_PROMPTS)}",
                )
            else:
                r.error(
                    pos,
                    f"prompt {prompt!r} has no recording in {', '.join(missing)} "
                    f"(recordings/{missing[0]}/{prompt}.wav is missing), but callers reach "
                    f"step {name!r} in that language",
                )


def languages_at(plan: Dialplan) -> dict[str, set[str]]:
    """For each step, the languages a caller can be in there."""
    langs: dict[str, set[str]] = {name: set() for name in plan.nodes}
    todo: list[tuple[str, str]] = [
        (entry, plan.languages[0])
        for entry in {plan.default_entry, *(n.entry for n in plan.numbers.values())}
    ]
    while todo:
        name, lang = todo.pop()
        node = plan.nodes[name]
        lang = node.language or lang
        if lang in langs[name]:
            continue
        langs[name].add(lang)
        todo.extend((edge.target, lang) for edge in model.edges(node, plan.queues))
    return langs
