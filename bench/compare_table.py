"""The shape every section of ``bench/compare.py`` reports in.

A section (``compare_setups.py``: call setups against the sippy B2BUA; ``compare_media.py``:
relayed media against rtpengine) exposes two functions:

    def missing() -> list[str]
        # one line per missing peer or tool: what is missing and the command that installs it;
        # empty when the section can run. A section never installs anything itself.

    def run(*, quick: bool = False) -> list[Table]
        # runs the section's loads against this service and its peer, one system after the
        # other on the same machine, and returns its tables. ``quick`` is a short smoke run.

``compare.py`` prints each table as Markdown, so its output can go into ``bench/RESULTS.md``
as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    # Lines printed under the table: ratios of each peer to this service, the verdict on the
    # issue's targets, and anything a reader needs to interpret the figures.
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join(" --- " for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines) + "\n"
