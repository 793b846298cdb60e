"""``organsim export`` and ``organsim report-synthetic``: hand a cohort to other tools, and judge a synthetic one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from organsim.cli.app import app, console, friendly_errors
from organsim.data import Cohort
from organsim.data.export import FORMATS, export_cohort
from organsim.evaluate.synthetic_report import (
    ReportConfig,
    build_synthetic_report,
    write_synthetic_report,
)
from organsim.utils.progress import progress_bar

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")]


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it")


@app.command("export")
@friendly_errors
def export(
    directory: Annotated[Path, typer.Argument(help="A canonical cohort directory.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (written atomically).")],
    format: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "parquet",
    overwrite: Overwrite = False,
) -> None:
    """Export a cohort as canonical Parquet, wide CSV, one PhysioNet 2019 .psv per stay, or MEDS."""
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    _check_out(out, overwrite)
    cohort = Cohort.load(directory)
    with progress_bar(transient=True) as bar:
        task = bar.add_task(f"writing {format}", total=None)
        summary = export_cohort(cohort, out, format, overwrite=overwrite,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    table = Table(title=f"{format} export of {directory}", show_header=False)
    table.add_row("stays", f"{summary.stays:,}")
    table.add_row("data files", f"{summary.files:,}")
    table.add_row("marked synthetic", "yes" if summary.synthetic else "no")
    for note in summary.notes:
        table.add_row("note", note)
    console.print(table)
    console.print(f"written to [bold]{out}[/]")


def _split_or_whole(path: Path, split: str) -> tuple[Cohort, str]:
    """The cohort at ``path``: its ``split`` part when it is split, else all of it; and a description."""
    cohort = Cohort.load(path)
    if cohort.stays["split"].null_count() < cohort.stays.height:
        part = cohort.subset(split=split)
        if part.stays.height == 0:
            raise ValueError(f"{path} is split but has no {split} stays")
        return part, f"{path} ({split} split)"
    return cohort, str(path)


@app.command("report-synthetic")
@friendly_errors
def report_synthetic(
    synthetic: Annotated[Path, typer.Option("--synthetic", help="The synthetic cohort directory (used whole).")],
    real_train: Annotated[Path, typer.Option("--real-train", help="Real cohort the generator learned from (its train split when it is split).")],
    real_test: Annotated[Path, typer.Option("--real-test", help="Real cohort it never saw (its test split when it is split).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory: metrics.json and report.html.")],
    seed: Annotated[int, typer.Option(help="Seed of every sample, split and classifier.")] = 0,
    max_stays: Annotated[int | None, typer.Option("--max-stays", min=5, help="Use at most this many stays per cohort (seeded sample).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Fidelity, utility (train on synthetic, test on real) and privacy of a synthetic cohort: metrics.json + report.html."""
    _check_out(out, overwrite)
    config = ReportConfig(seed=seed, max_stays=max_stays)
    synthetic_cohort = Cohort.load(synthetic)
    train_cohort, train_input = _split_or_whole(real_train, "train")
    test_cohort, test_input = _split_or_whole(real_test, "test")
    inputs = {"synthetic": str(synthetic), "real_train": train_input, "real_test": test_input}
    with progress_bar(transient=True) as bar:
        task = bar.add_task("synthetic report", total=config.steps)

        def advance(description: str) -> None:
            bar.update(task, advance=1, description=description)

        report = build_synthetic_report(synthetic_cohort, train_cohort, test_cohort, config, inputs=inputs, progress=advance)
        written = write_synthetic_report(report, out, overwrite=overwrite)
    metrics = report.metrics
    table = Table(title="synthetic cohort report")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("target")
    table.add_column("verdict")
    for check in metrics["checks"]:
        value = "-" if check["value"] is None else f"{check['value']:.3f}"
        if check.get("interval_95"):
            value += " (95 %: {:.3f}-{:.3f})".format(*check["interval_95"])
        verdict = {True: "[green]pass[/]", False: "[red]fail[/]", None: "not measured"}[check["passed"]]
        table.add_row(check["check"], value, check["target"], verdict)
    console.print(table)
    for task_name, entry in metrics["utility"].items():
        if entry["status"] != "ok":
            console.print(f"utility task {task_name} skipped: {entry['reason']}")
    console.print("Wrote " + ", ".join(str(p) for p in written) + ".")
