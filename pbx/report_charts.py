"""PNG charts of a report, drawn with matplotlib (headless: the Agg backend, no display).

Three charts: load by hour of day and day of week (heatmap), service level per day (both
variants), calls per language. They show counts and rates only, as the report does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on a server
import matplotlib.pyplot as plt  # noqa: E402

from pbx.reports import DAYS, Figures, Report  # noqa: E402

CHARTS = ("load_heatmap.png", "service_level.png", "calls_by_language.png")


def draw_charts(report: Report, daily: Mapping[date, Figures], into: Path) -> list[Path]:
    """Writes the three charts into `into`; their paths."""
    into.mkdir(parents=True, exist_ok=True)
    paths = [into / name for name in CHARTS]
    _heatmap(report, paths[0])
    _service_level(daily, paths[1])
    _languages(report, paths[2])
    return paths


def _title(report: Report, what: str) -> str:
    return f"{what}, {report.first} .. {report.last}"


def _heatmap(report: Report, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 3.5))
    try:
        image = ax.imshow(report.load, aspect="auto", cmap="viridis")
        ax.set_yticks(range(7), DAYS)
        ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)], fontsize=7)
        ax.set_xlabel("hour of day")
        ax.set_title(_title(report, "Calls by hour and day of week"))
        fig.colorbar(image, ax=ax, label="calls")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def _service_level(daily: Mapping[date, Figures], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    try:
        days = [d.isoformat() for d in daily]
        counted = [_pct(f.service_level_offered) for f in daily.values()]
        answered = [_pct(f.service_level_answered) for f in daily.values()]
        ax.plot(days, counted, marker="o", label="counting abandoned calls")
        ax.plot(days, answered, marker="x", linestyle="--", label="answered calls only")
        ax.set_ylim(0, 105)
        ax.set_ylabel("% answered within 60 s")
        ax.set_title("Service level per day")
        ax.legend(loc="lower left")
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def _pct(value: float | None) -> float:
    return float("nan") if value is None else value * 100


def _languages(report: Report, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    try:
        groups = report.by.get("language", {})
        names = list(groups)
        ax.bar(names, [g.calls for g in groups.values()], label="calls")
        ax.bar(names, [g.answered for g in groups.values()], width=0.5, label="answered")
        ax.set_ylabel("calls")
        ax.set_title(_title(report, "Calls per language"))
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
