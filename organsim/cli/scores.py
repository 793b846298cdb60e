"""``organsim scores``: hourly clinical scores and critical events of a cohort, to Parquet."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from organsim.cli.app import app, console, friendly_errors
from organsim.data import Cohort
from organsim.scores import score_cohort
from organsim.scores.apache_ii import APACHE_II_COMPONENTS
from organsim.scores.news2 import NEWS2_COMPONENTS
from organsim.scores.qsofa import QSOFA_COMPONENTS
from organsim.scores.sirs import SIRS_COMPONENTS
from organsim.scores.sofa import SOFA_COMPONENTS, sofa_stratum
from organsim.scores.tables import SOFA_STRATA
from organsim.utils.io import atomic_write_bytes
from organsim.utils.progress import progress_bar

COMPONENT_COUNTS = {
    "sofa": len(SOFA_COMPONENTS),
    "apache_ii": len(APACHE_II_COMPONENTS) + 1,  # + age
    "news2": len(NEWS2_COMPONENTS),
    "qsofa": len(QSOFA_COMPONENTS),
    "sirs": len(SIRS_COMPONENTS),
}
"""Components each score counts in its ``<score>_n_carried`` / ``<score>_n_missing`` columns."""


def events_path_for(out: Path) -> Path:
    """The events file written beside ``out``: ``scores.parquet`` -> ``scores_events.parquet``."""
    return out.with_name(f"{out.stem}_events{out.suffix or '.parquet'}")


def _write_parquet(frame: pl.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    atomic_write_bytes(path, buffer.getvalue())


def _summary(hourly: pl.DataFrame, events: pl.DataFrame, out: Path, events_out: Path) -> None:
    per_stay = hourly.group_by("stay_id").agg(sofa_stratum(pl.col("sofa_24h").max()).alias("stratum"))
    head = Table(title="scores", show_header=False)
    head.add_row("stays", f"{per_stay.height:,}")
    head.add_row("hours", f"{hourly.height:,}")
    strata = dict(per_stay.group_by("stratum").len().iter_rows())
    head.add_row("stays by worst SOFA stratum", ", ".join(f"{label}: {strata.get(label, 0):,}" for label, _, _ in SOFA_STRATA))
    console.print(head)
    imputed = Table(title="share of score components carried forward / missing (scored normal)")
    for name in ("score", "mean", "carried", "missing"):
        imputed.add_column(name, justify="left" if name == "score" else "right")
    for score, n in COMPONENT_COUNTS.items():
        cells = n * max(hourly.height, 1)
        mean = hourly[score].mean() if hourly.height else float("nan")
        imputed.add_row(score, f"{mean:.2f}", f"{hourly[f'{score}_n_carried'].sum() / cells:.1%}",
                        f"{hourly[f'{score}_n_missing'].sum() / cells:.1%}")
    console.print(imputed)
    table = Table(title="events")
    for name in ("event", "episodes", "stays", "severe"):
        table.add_column(name, justify="left" if name == "event" else "right")
    counts = events.group_by("event").agg(
        pl.len().alias("episodes"), pl.col("stay_id").n_unique().alias("stays"),
        (pl.col("severity") == "severe").sum().alias("severe"),
        pl.col("severity").is_not_null().any().alias("graded"),
    ).sort("event")
    for row in counts.iter_rows(named=True):
        severe = f"{row['severe']:,}" if row["graded"] else ""
        table.add_row(row["event"], f"{row['episodes']:,}", f"{row['stays']:,}", severe)
    console.print(table)
    console.print(f"hourly scores written to [bold]{out}[/], events to [bold]{events_out}[/]")


@app.command()
@friendly_errors
def scores(
    directory: Annotated[Path, typer.Argument(help="A canonical cohort directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file for the hourly scores (written atomically).")],
    events_out: Annotated[Path | None, typer.Option(
        "--events", help="Parquet file for the events (default: <out stem>_events.parquet beside OUT).")] = None,
    window_hours: Annotated[int, typer.Option(
        min=1, help="Trailing window (hours) of the worst-in-window SOFA and APACHE II.")] = 24,
    spo2_scale: Annotated[int, typer.Option(
        min=1, max=2, help="NEWS2 SpO2 scale: 1, or 2 for hypercapnic respiratory failure.")] = 1,
    spo2_surrogate: Annotated[bool, typer.Option(
        help="Estimate PaO2/FiO2 from SpO2/FiO2 (Rice 2007) when PaO2 is missing.")] = True,
    chunk_stays: Annotated[int, typer.Option(min=1, help="Stays scored per step (bounds memory).")] = 1000,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Write the hourly SOFA, APACHE II, NEWS2, qSOFA and SIRS scores and the critical events of a cohort.

    The hourly scores go to OUT (one row per stay-hour); the event episodes, with Sepsis-3 onset as a "sepsis3" event, to a sibling file (<out stem>_events.parquet) unless --events is given. Both files are written atomically once everything is scored.
    """
    events_out = events_out or events_path_for(out)
    for path in (out, events_out):
        if path.exists() and not overwrite:
            raise ValueError(f"{path} already exists; pass --overwrite to replace it")
    cohort = Cohort.load(directory)
    stay_ids = cohort.stay_ids
    options = {"window_hours": window_hours, "spo2_scale": spo2_scale, "spo2_surrogate": spo2_surrogate}
    chunks = [stay_ids[start:start + chunk_stays] for start in range(0, len(stay_ids), chunk_stays)] or [[]]
    results = []
    with progress_bar(transient=True) as bar:
        task = bar.add_task("scoring stays", total=len(stay_ids))
        for chunk in chunks:
            results.append(score_cohort(cohort.subset(chunk), **options))
            bar.advance(task, len(chunk))
    hourly = pl.concat([r.hourly for r in results])
    events = pl.concat([r.events for r in results])
    _write_parquet(hourly, out)
    _write_parquet(events, events_out)
    _summary(hourly, events, out, events_out)
