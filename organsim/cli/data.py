"""``organsim info``: what a cohort directory holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from organsim.cli.app import app, console, friendly_errors
from organsim.data import Cohort


@app.command()
@friendly_errors
def info(directory: Annotated[Path, typer.Argument(help="A canonical cohort directory.")]) -> None:
    """Summarise a cohort: stays, hours, septic fraction, missingness per system and variable."""
    cohort = Cohort.load(directory)
    summary = cohort.summary()
    out = console.print
    head = Table(title=f"cohort {directory}", show_header=False)
    head.add_row("source", str(summary["source"]))
    head.add_row("stays", f"{summary['stays']:,}")
    head.add_row("hours", f"{summary['hours']:,}")
    head.add_row("septic stays", f"{summary['septic_stays']:,} ({summary['septic_fraction']:.1%})")
    head.add_row("treatments recorded", "yes" if summary["treatments_recorded"] else "no")
    for split, n in summary.get("splits", {}).items():
        head.add_row(f"split {split}", f"{n:,}")
    out(head)
    table = Table(title="missingness (fraction of hours not measured)")
    table.add_column("system")
    table.add_column("mean", justify="right")
    table.add_column("variables")
    for system, frac in summary["missingness_by_system"].items():
        detail = ", ".join(
            f"{v.code} {summary['missingness_by_variable'][v.code]:.0%}" for v in cohort.catalog.variables_of(system)
        )
        table.add_row(system, f"{frac:.1%}", detail)
    out(table)
