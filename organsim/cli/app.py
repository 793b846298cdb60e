"""The typer application every ``organsim`` sub-command registers on, and shared CLI helpers."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from organsim.utils.errors import OrgansimError

app = typer.Typer(
    name="organsim",
    help="organsim: a physiological digital twin for intensive-care patients.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ingest_app = typer.Typer(help="Read an ICU data set into a canonical cohort directory.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # error lines are never hard-wrapped: a path in one is never cut

RAY_HELP = "Run the shards on Ray: 'local' or a cluster address (needs organsim\\[distributed])."
"""Help of every ``--ray`` option (rich markup would swallow a bare ``[distributed]``)."""


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn organsim's own errors into one red line and exit code 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (OrgansimError, FileNotFoundError, ValueError, KeyError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError quotes str()
            err_console.print(f"[bold red]error:[/] {message}")
            raise typer.Exit(code=2) from exc

    return wrapper
