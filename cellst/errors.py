"""User-facing errors.

A :class:`CellstError` is a mistake in the user's input (a file, a column, a flag), not a bug: the CLI prints its
message as one paragraph and exits with code 2, never with a traceback. Messages say what was expected, what was
found, where (file, row, column) and how to fix it.
"""

from __future__ import annotations


class CellstError(Exception):
    """An input problem the user can fix; the CLI turns it into exit code 2."""


def where(file: object = None, row: int | None = None, column: str | None = None) -> str:
    """Format a location as ``file, row N, column 'c'`` (rows are 1-based data rows, as a spreadsheet shows them + 1)."""
    parts = []
    if file is not None:
        parts.append(str(file))
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)
