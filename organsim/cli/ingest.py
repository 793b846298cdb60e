"""``organsim ingest physionet2019|meds|mimic-iv|table`` and ``organsim export-meds``.

Each command reads its input completely (with a progress bar), then writes the result atomically:
on any error nothing is written and an existing output directory is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.table import Table

from organsim.cli.app import app, console, friendly_errors, ingest_app
from organsim.data import Cohort, read_meds, read_physionet2019, read_table, write_meds
from organsim.data.mimic import read_mimic_iv
from organsim.utils.progress import progress_bar

Out = Annotated[Path, typer.Option("--out", "-o", help="Output directory (written atomically).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")]
TOP_OUT_OF_RANGE = 5


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it")


@contextmanager
def _reading(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields the ``progress(done, total)`` callback the loaders take."""
    with progress_bar(transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _ingest(read: Callable[..., Cohort], src: Path, out: Path, overwrite: bool, description: str) -> Cohort:
    """Check the output path, read ``src`` with a progress bar, save atomically, print the summary."""
    _check_out(out, overwrite)
    with _reading(description) as progress:
        cohort = read(src, progress=progress)
    cohort.save(out, overwrite=overwrite)
    _summary(cohort, out)
    return cohort


def _summary(cohort: Cohort, out: Path) -> None:
    """Print stays, hours, septic stays and out-of-range counts, and where the cohort went."""
    counts = cohort.counts()
    report = cohort.meta.get("provenance", {}).get("ingest_report", {})
    table = Table(title=f"{cohort.meta['source']} cohort", show_header=False)
    table.add_row("stays", f"{counts['stays']:,}")
    table.add_row("hours", f"{counts['hours']:,}")
    table.add_row("septic stays", f"{counts['septic_stays']:,}")
    if cohort.meta.get("treatments_recorded"):
        table.add_row("treatment hours", f"{counts['treatment_hours']:,}")
    for split, n in counts.get("splits", {}).items():
        table.add_row(f"split {split}", f"{n:,}")
    out_of_range = report.get("out_of_range", {})
    worst = sorted(out_of_range.items(), key=lambda kv: -(kv[1]["below"] + kv[1]["above"]))[:TOP_OUT_OF_RANGE]
    detail = ", ".join(f"{code} {sides['below'] + sides['above']:,}" for code, sides in worst)
    table.add_row("out of range (nulled)", f"{report.get('total_out_of_range', 0):,}" + (f"  ({detail})" if detail else ""))
    for key, n in {**report.get("converted", {}), **report.get("dropped", {}), **report.get("flagged", {})}.items():
        table.add_row(key.replace("_", " "), f"{n:,}")
    console.print(table)
    console.print(f"written to [bold]{out}[/]")


@ingest_app.command("physionet2019")
@friendly_errors
def ingest_physionet2019(
    src: Annotated[Path, typer.Argument(help="A directory of p<id>.psv files, or a .tar.gz / .zip of them.")],
    out: Out,
    overwrite: Overwrite = False,
) -> None:
    """Read PhysioNet/CinC 2019 challenge files into a canonical cohort directory."""
    _ingest(read_physionet2019, src, out, overwrite, f"reading {src.name}")


@ingest_app.command("meds")
@friendly_errors
def ingest_meds(
    src: Annotated[Path, typer.Argument(help="A MEDS dataset directory (data/*.parquet, metadata/).")],
    out: Out,
    overwrite: Overwrite = False,
) -> None:
    """Read a MEDS dataset into a canonical cohort directory."""
    _ingest(read_meds, src, out, overwrite, f"reading {src.name} shards")


@ingest_app.command("mimic-iv")
@friendly_errors
def ingest_mimic_iv(
    src: Annotated[Path, typer.Argument(help="The MIMIC-IV directory with hosp/ and icu/ (tables as .csv or .csv.gz).")],
    out: Out,
    overwrite: Overwrite = False,
) -> None:
    """Read the official MIMIC-IV CSV tables into a canonical cohort directory with treatments.

    Sepsis is not labelled (MIMIC-IV has none); derive Sepsis-3 with organsim.scores.sepsis3_onset.
    """
    cohort = _ingest(read_mimic_iv, src, out, overwrite, f"reading {src.name} tables")
    console.print(f"sepsis {cohort.meta['provenance']['sepsis']}")


@ingest_app.command("table")
@friendly_errors
def ingest_table(
    src: Annotated[Path, typer.Argument(help="Wide hourly table: .parquet, .csv or .csv.gz (stay_id, hour, variables).")],
    out: Out,
    stays: Annotated[Path | None, typer.Option("--stays", help="Optional stays table (stay_id, statics, labels).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Read a wide Parquet/CSV table (and optional stays table) into a canonical cohort directory."""
    _check_out(out, overwrite)
    with progress_bar(transient=True) as bar:
        bar.add_task(f"reading {src.name}", total=None)
        cohort = read_table(src, stays)
    cohort.save(out, overwrite=overwrite)
    _summary(cohort, out)


@app.command("export-meds")
@friendly_errors
def export_meds(
    directory: Annotated[Path, typer.Argument(help="A canonical cohort directory.")],
    out: Out,
    subjects_per_shard: Annotated[int, typer.Option("--subjects-per-shard", min=1, help="Subjects per data shard.")] = 10_000,
    overwrite: Overwrite = False,
) -> None:
    """Export a cohort as a MEDS dataset (data/*.parquet, metadata/codes.parquet, dataset.json)."""
    _check_out(out, overwrite)
    with progress_bar(transient=True) as bar:
        bar.add_task(f"exporting {directory.name}", total=None)
        cohort = Cohort.load(directory)
        write_meds(cohort, out, subjects_per_shard=subjects_per_shard, overwrite=overwrite)
    shards = sorted((out / "data").glob("*.parquet"))
    events = sum(pl.scan_parquet(shard).select(pl.len()).collect().item() for shard in shards)
    counts = cohort.counts()
    console.print(
        f"MEDS: {events:,} events; {counts['stays']:,} stays of {cohort.stays['subject_id'].n_unique():,} subjects, "
        f"{counts['hours']:,} hours, {counts['septic_stays']:,} septic; {len(shards)} shard(s)"
    )
    console.print(f"written to [bold]{out}[/]")
