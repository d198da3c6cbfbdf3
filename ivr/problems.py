"""What the dialplan loader reports: problems with their position, and the error that refuses a
plan. Errors stop a plan from loading; warnings do not (they end up in `Dialplan.warnings`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["DialplanError", "Problem", "Severity"]


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        tag = "warning: " if self.severity is Severity.WARNING else ""
        return f"{self.file}:{self.line}:{self.column}: {tag}{self.message}"


class DialplanError(Exception):
    """The plan did not load; `problems` lists every error (and warning) found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity is Severity.ERROR]
        super().__init__(f"{len(errors)} error(s) in dialplan:\n" + "\n".join(map(str, problems)))
