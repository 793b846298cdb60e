"""A rich progress bar with organsim's columns; silent when not attached to a terminal and quiet."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(*, transient: bool = False, disable: bool = False) -> Progress:
    """Return a ``rich.progress.Progress`` to use as a context manager.

    Example
    -------
    >>> with progress_bar() as bar:
    ...     task = bar.add_task("reading", total=10)
    ...     for _ in range(10):
    ...         bar.advance(task)
    """
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=transient,
        disable=disable,
    )
