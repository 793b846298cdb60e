"""``organsim synthesize``, ``organsim export`` and ``organsim report-synthetic``: make a synthetic cohort,
hand a cohort to other tools, and judge a synthetic one."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from organsim.cli.app import RAY_HELP, app, console, friendly_errors
from organsim.data import Cohort
from organsim.data.export import FORMATS, export_cohort
from organsim.evaluate.synthetic_report import (
    ReportConfig,
    build_synthetic_report,
    write_synthetic_report,
)
from organsim.synth import CohortSynthesizer, SynthesisConfig
from organsim.synth.drift import GAIN as DRIFT_GAIN
from organsim.synth.sharded import synthesize_sharded
from organsim.synth.training import training_split
from organsim.twin import PatientTwin
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


@app.command("synthesize")
@friendly_errors
def synthesize(
    model: Annotated[Path, typer.Option("--model", help="Model directory written by `organsim train` (the twin).")],
    cohort: Annotated[Path, typer.Option("--cohort", help="The cohort the model was trained on; its train split (checked against the model's record) fits the generators.")],
    patients: Annotated[int, typer.Option("--patients", min=1, help="Stays to generate.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory (written atomically).")],
    hours: Annotated[int, typer.Option("--hours", min=2, help="Longest stay in hours (lengths are drawn from the training stays and cut here).")] = 72,
    seed: Annotated[int, typer.Option(help="Seed of every draw: the same seed gives the same files.")] = 0,
    format: Annotated[str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")] = "parquet",
    septic_fraction: Annotated[float | None, typer.Option("--septic-fraction", min=0.0, max=1.0, help="Share of septic stays (default: the training split's).")] = None,
    initial_hours: Annotated[int, typer.Option("--initial-hours", min=1, help="First hours drawn by the initial-state model before the twin takes over.")] = 2,
    segment_hours: Annotated[int, typer.Option("--segment-hours", min=1, help="Hours the twin simulates per rollout call (1: every hour from the charted record so far, as it was trained).")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Stays per rollout call.")] = 512,
    spread_pilot_stays: Annotated[int, typer.Option(
        "--spread-pilot-stays", min=0,
        help="Stays per pilot generation of the draw-knob fit (at most a quarter of --patients; four to six pilots): the "
             "vital signs' draws are narrowed so that their per-stay SD and hourly change match the train split's (and "
             "shifted to its drift with --drift-control 0), those not fed back (glucose, temperature) return to each "
             "stay's level as fast as real ones, and the labs' draws revert between charted values as the real ones do. "
             "0: the twin's own draws.",
    )] = 256,
    drift_control: Annotated[float, typer.Option(
        "--drift-control", min=0.0,
        help="Gain that steers each batch of stays along the train split's mean course from the first charted value (per "
             "stay-length and first-value band, organsim.synth.drift). 0: none.",
    )] = DRIFT_GAIN,
    screen_pool: Annotated[float, typer.Option(
        "--screen-pool", min=1.0,
        help="Generate this many times the stays asked for and keep those a classifier finds hardest to tell from the "
             "train split's stays (discriminator rejection sampling, organsim.synth.screening), passing over stays nearer a "
             "training stay than the closeness floor. 1: keep every stay.",
    )] = 1.0,
    volatility: Annotated[float, typer.Option(
        "--volatility", min=0.0,
        help="SD on the log scale of each stay's own volatility factors, which multiply the vital signs' draw spread "
             "(correlated as the train split's stays' volatilities are): a wider pool for --screen-pool to choose from "
             "(0.25 paid at --screen-pool 8, not at 3). 0: none.",
    )] = 0.0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    shards: Annotated[int, typer.Option("--shards", min=1, help="Generate in this many shards, each its own seed, written as parts under OUT.parts/.")] = 1,
    ray: Annotated[str | None, typer.Option("--ray", help=RAY_HELP)] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Local processes or local Ray CPUs for the shards.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Generate a synthetic cohort: drawn initial states rolled forward by the coordinated twin, charted and labelled.

    With --shards or --ray the stays are generated in shards by local processes or a Ray cluster;
    each shard's part is written atomically (a rerun recomputes only missing parts) and the parts
    are merged with stay ids 1..N. The files depend on the seed and the number of shards.

    Before the stays, short pilot generations fit each vital sign's draw spread and serial correlation
    to the train split's median per-stay SD and hourly change (a shift to its drift with
    --drift-control 0; for those the twin does not feed back, a reversion to the stay's level to its
    reversion slope), and the labs' serial correlation between charted values to their step ratio
    (--spread-pilot-stays; once, for every shard). While they are simulated, each batch of stays leans toward the train split's mean
    course (--drift-control).
    """
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    _check_out(out, overwrite)
    if shards > patients:
        raise ValueError(f"--shards ({shards}) cannot exceed --patients ({patients})")
    train = training_split(model, cohort)
    twin = PatientTwin.load(model, device=device)
    window = twin.agents.config.window_hours
    if segment_hours >= window:
        raise ValueError(f"--segment-hours must be below the model's window of {window} hours, got {segment_hours}")
    config = SynthesisConfig(
        patients=patients, max_hours=hours, seed=seed, septic_fraction=septic_fraction, segment_hours=segment_hours,
        context_hours=min(twin.agents.config.context_hours, window - segment_hours), batch_size=batch_size,
        spread_pilot_stays=spread_pilot_stays, drift_control=drift_control, screen_pool=screen_pool,
        volatility=volatility)
    parts_dir = out.with_name(out.name + ".parts")
    with progress_bar() as bar:
        task = bar.add_task("fitting the generators on the train split", total=None)
        synthesizer = CohortSynthesizer.fit(train, initial_hours=initial_hours, seed=seed)
        if config.pilot_stays:
            bar.update(task, description=f"fitting the draw spread ({config.pilot_stays} pilot stays)", total=None)
            fitted = synthesizer.fit_draw_spread(twin, config, progress=lambda done, total: bar.update(task, completed=done, total=total))
            if fitted is not None:  # fitted once: every shard rolls out with the same knobs
                config = replace(config, **fitted.config_knobs())
        if shards == 1 and ray is None:
            bar.update(task, description="simulating stays", total=patients, completed=0)
            result = synthesizer.generate(twin, config, progress=lambda done, total: bar.update(task, completed=done, total=total))
        else:
            bar.update(task, description=f"simulating {shards} shards" + (f" on Ray ({ray})" if ray else ""), total=shards, completed=0)
            result = synthesize_sharded(model, cohort, config, shards=shards, parts_dir=parts_dir, initial_hours=initial_hours,
                                        device=device, ray_address=ray, workers=workers,
                                        progress=lambda done, total: bar.update(task, completed=done, total=total))
        bar.update(task, description=f"writing {format}", total=None)
        exported = export_cohort(result.cohort, out, format, overwrite=overwrite)
    if parts_dir.exists():  # the merged cohort is written: the parts have served their purpose
        shutil.rmtree(parts_dir)
    summary = result.summary()
    table = Table(title=f"synthetic cohort from {model}", show_header=False)
    table.add_row("stays", f"{summary['stays']:,} ({summary['hours']:,} hours)")
    table.add_row("septic", f"{summary['septic_stays']:,} (asked {summary['septic_target']:,})")
    table.add_row("simulated", f"{sum(summary['candidates'].values()):,} stays in {summary['rounds']} round(s); drawn septic "
                  f"and read septic: {summary['accepted']['septic']:,} of {summary['candidates']['septic']:,}")
    table.add_row("treatments", "behaviour policy" if synthesizer.treatments_recorded else "none recorded in training data")
    table.add_row("events", ", ".join(f"{k} {v:,}" for k, v in summary["events"].items()) or "none")
    table.add_row("clipped", f"{summary['values_clipped']:,} simulated values clipped onto the catalog's plausible ranges")
    if config.draw_spread is not None:
        serial, shift = config.draw_serial or {}, config.draw_shift or {}
        table.add_row("draw spread", ", ".join(
            f"{v} {s:.2f}" + (f" (rho {serial[v]:.2f})" if v in serial else "") + (f" (shift {shift[v]:+.2f})" if v in shift else "")
            for v, s in config.draw_spread.items()))
        labs = {v: r for v, r in serial.items() if v not in config.draw_spread}
        if labs:
            table.add_row("labs' rho", ", ".join(f"{v} {r:.2f}" for v, r in labs.items()))
    if config.draw_reversion:
        table.add_row("reversion", ", ".join(f"{v} {k:.2f}" for v, k in config.draw_reversion.items()))
    table.add_row("drift control", f"gain {config.drift_control:g}" if config.drift_control else "none")
    if config.volatility:
        table.add_row("volatility", f"each stay's vital signs drawn at its own spread factors, exp({config.volatility:g} u)")
    screen = summary.get("screen")
    table.add_row("realism screen", "none: every generated stay kept" if screen is None else
                  f"kept {screen['kept']:,} of {screen['pool_stays']:,} generated stays (pool {screen['pool']:g}); the "
                  f"screen told the pool from the train split with AUROC {screen['auroc']:.3f}; "
                  f"{screen['too_close']:,} lay nearer a training stay than the closeness floor "
                  f"({screen['closeness_floor']:.2f}), passed over unless too few lay beyond it")
    for note in exported.notes:
        table.add_row("note", note)
    console.print(table)
    console.print(f"{format} written to [bold]{out}[/]")
