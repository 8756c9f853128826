"""Terminal output: summary tables (rich) shared by every command."""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

# Everything printed is data (forget specs, paths, class names), never rich markup: with markup and
# emoji codes on, `class:cat:0.5` printed as `class🐱0.5` and a path holding `[red]` lost it.
console = Console(stderr=False, highlight=False, markup=False, emoji=False)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 and value else f"{value:,.2f}"
    return "" if value is None else str(value)


def print_table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    rows = [list(r) for r in rows]
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        # Numbers right-aligned so digits line up; text left-aligned so it reads.
        numeric = all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) and i > 0
        table.add_column(col, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*[fmt(v) for v in row])
    console.print(table)


def print_mapping(title: str, mapping: dict[str, Any]) -> None:
    print_table(title, ["", "value"], mapping.items())
