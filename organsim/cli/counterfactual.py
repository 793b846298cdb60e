"""``organsim strategies list|validate``: the treatment-strategy library and strategy files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from organsim.cli.app import app, console, err_console, friendly_errors
from organsim.counterfactual import (
    Strategy,
    StrategyError,
    read_library,
    read_strategy_file,
    strategy_library_dir,
)

strategies_app = typer.Typer(help="Treatment strategies: the library, and checks of strategy files.", no_args_is_help=True)
app.add_typer(strategies_app, name="strategies")


def _rules(strategy: Strategy) -> str:
    parts = [f"{code}: {len(plan.rules)} rule{'s' if len(plan.rules) != 1 else ''}" for code, plan in strategy.treatments.items()]
    return ", ".join(parts) or "none"


@strategies_app.command("list")
@friendly_errors
def list_strategies() -> None:
    """List the strategies of the library (pipelines/strategies/, or $ORGANSIM_STRATEGIES)."""
    entries = read_library()
    table = Table(title=f"strategy library: {strategy_library_dir()}")
    for column in ("name", "governs", "others", "description"):
        table.add_column(column)
    broken = 0
    for entry in entries:
        if entry.strategy is None:
            broken += 1
            table.add_row(entry.name, "[red]invalid[/]", "", escape(entry.error or ""))
            continue
        strategy = entry.strategy
        table.add_row(strategy.name, _rules(strategy), strategy.others, escape(strategy.description))
    console.print(table)
    console.print(f"{len(entries) - broken} valid strateg{'y' if len(entries) - broken == 1 else 'ies'}"
                  + (f", [red]{broken} invalid[/]" if broken else ""))
    if broken:
        raise typer.Exit(code=2)


@strategies_app.command("validate")
@friendly_errors
def validate(
    files: Annotated[list[Path], typer.Argument(help="Strategy YAML files to check.")],
) -> None:
    """Check strategy files against the schema and the catalog; every problem names the line and key."""
    failed = 0
    for path in files:
        try:
            strategy = read_strategy_file(path)
        except (StrategyError, FileNotFoundError) as exc:
            failed += 1
            err_console.print(f"[bold red]invalid:[/] {escape(str(exc))}")
            continue
        console.print(f"[green]valid:[/] {path} ({strategy.name}: governs {_rules(strategy)}; others: {strategy.others})")
    console.print(f"{len(files) - failed} of {len(files)} file{'s' if len(files) != 1 else ''} valid")
    if failed:
        raise typer.Exit(code=2)
