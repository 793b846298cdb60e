"""``organsim generate`` and ``organsim counterfactual``: the physiology engine on the command line."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import typer
from rich.table import Table

from organsim.cli.app import RAY_HELP, app, console, friendly_errors
from organsim.physiology import (
    POLICY_NAMES,
    ClinicianPolicy,
    EngineConfig,
    PhysiologyEngine,
    Trajectory,
    named_policy,
)
from organsim.utils.io import atomic_write_bytes
from organsim.utils.progress import progress_bar


@app.command()
@friendly_errors
def generate(
    out: Annotated[Path, typer.Option("--out", help="Cohort directory to write.")],
    patients: Annotated[int, typer.Option("--patients", min=1, help="Stays to generate (ids 1..N).")] = 1000,
    hours: Annotated[int, typer.Option("--hours", min=1, help="ICU hours per stay; a stay ends earlier at death.")] = 72,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed: the same seed gives the same cohort.")] = 0,
    septic_fraction: Annotated[
        float, typer.Option("--septic-fraction", min=0.0, max=1.0, help="Share of patients with a sepsis-causing infection.")
    ] = EngineConfig.septic_fraction,
    shards: Annotated[
        int, typer.Option("--shards", min=1, help="Generate in this many shards, each written as a part (same cohort).")
    ] = 1,
    ray: Annotated[
        str | None, typer.Option("--ray", help=RAY_HELP)
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Local processes or local Ray CPUs for the shards.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing directory at --out.")] = False,
) -> None:
    """Generate a canonical cohort (with treatments) from the mechanistic sepsis engine.

    With --shards or --ray the stays are cut into shards computed by local processes or a Ray
    cluster; each shard's part is written atomically under OUT.parts/ (a rerun after a lost worker
    recomputes only missing parts) and the merged cohort equals the unsharded one.
    """
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    if shards > patients:
        raise ValueError(f"--shards ({shards}) cannot exceed --patients ({patients})")
    config = EngineConfig(seed=seed, n_patients=patients, hours=hours, septic_fraction=septic_fraction)
    started = time.perf_counter()
    parts_dir = out.with_name(out.name + ".parts")
    with progress_bar() as bar:
        if shards == 1 and ray is None:
            task = bar.add_task("simulating stay-hours", total=patients * hours)
            cohort = PhysiologyEngine(config).generate(progress=lambda done, total: bar.update(task, completed=done, total=total))
        else:
            from organsim.tracking.distributed import generate_sharded

            task = bar.add_task(f"simulating {shards} shards" + (f" on Ray ({ray})" if ray else ""), total=shards)
            cohort = generate_sharded(config, shards=shards, parts_dir=parts_dir, ray_address=ray, workers=workers,
                                      progress=lambda done, total: bar.update(task, completed=done, total=total))
        simulated = time.perf_counter() - started
        saving = bar.add_task("writing cohort", total=1)
        cohort.save(out)
        bar.advance(saving)
    if parts_dir.exists():  # the merged cohort is written: the parts have served their purpose
        shutil.rmtree(parts_dir)
    elapsed = time.perf_counter() - started
    summary = cohort.summary()
    treated = cohort.treatments.group_by("stay_id").agg(
        (pl.col("antibiotic") > 0).any().alias("antibiotic"),
        (pl.col("norepinephrine") > 0).any().alias("norepinephrine"),
        (pl.col("mechanical_ventilation") > 0).any().alias("ventilated"),
        (pl.col("iv_fluid_ml") > 0).any().alias("fluids"),
    )
    deaths = int(cohort.stays["death"].sum())
    table = Table(title=f"generated cohort (seed {seed})", show_header=False)
    table.add_row("stays", f"{summary['stays']:,}")
    table.add_row("hours", f"{summary['hours']:,}")
    table.add_row("septic stays (Sepsis-3)", f"{summary['septic_stays']:,} ({summary['septic_fraction']:.1%})")
    table.add_row("deaths", f"{deaths:,} ({deaths / max(summary['stays'], 1):.1%})")
    for name, label in (("fluids", "given fluids"), ("antibiotic", "given antibiotics"),
                        ("norepinephrine", "given norepinephrine"), ("ventilated", "ventilated")):
        n = int(treated[name].sum())
        table.add_row(f"stays {label}", f"{n:,} ({n / max(summary['stays'], 1):.1%})")
    where = f" in {shards} shards" + (f" on Ray ({ray})" if ray else "") if shards > 1 or ray else ""
    table.add_row("time", f"{simulated:.1f} s simulating{where}, {elapsed:.1f} s in all")
    console.print(table)
    console.print(f"cohort written to [bold]{out}[/]")


def _write_table(frame: pl.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    if path.suffix == ".parquet":
        frame.write_parquet(buffer, compression="zstd")
    elif path.suffix == ".csv":
        frame.write_csv(buffer)
    else:
        raise ValueError(f"--out must end in .parquet or .csv, got {path.name!r}")
    atomic_write_bytes(path, buffer.getvalue())


def _outcomes(trajectory: Trajectory, from_hour: int) -> dict[str, str]:
    """One stay's outcomes from ``from_hour`` on, formatted for the summary table."""
    variables = list(trajectory.variables)
    after = slice(from_hour - 1, int(trajectory.n_hours[0]))
    treatments = trajectory.treatments[0, after]
    codes = list(trajectory.treatment_codes)
    mean_map = np.nanmean(trajectory.true[0, after, variables.index("map")])
    max_lactate = np.nanmax(trajectory.true[0, after, variables.index("lactate")])
    death = trajectory.death_hour[0]
    onset = trajectory.sepsis_onset_hour[0]
    return {
        "death hour": "survived" if np.isnan(death) else f"{int(death)}",
        "Sepsis-3 onset hour": "none" if np.isnan(onset) else f"{int(onset)}",
        "SOFA at the last hour": f"{trajectory.sofa[0, int(trajectory.n_hours[0]) - 1]:.0f}",
        "mean MAP (mmHg)": f"{mean_map:.1f}",
        "max lactate (mmol/L)": f"{max_lactate:.1f}",
        "fluids (mL)": f"{treatments[:, codes.index('iv_fluid_ml')].sum():,.0f}",
        "norepinephrine hours": f"{int((treatments[:, codes.index('norepinephrine')] > 0).sum())}",
        "antibiotic doses": f"{int(treatments[:, codes.index('antibiotic')].sum())}",
        "ventilated hours": f"{int(treatments[:, codes.index('mechanical_ventilation')].sum())}",
    }


@app.command()
@friendly_errors
def counterfactual(
    cohort: Annotated[Path, typer.Option("--cohort", help="A cohort directory written by `organsim generate`.")],
    stay: Annotated[int, typer.Option("--stay", help="Stay id to re-run.")],
    from_hour: Annotated[int, typer.Option("--from-hour", min=1, help="First ICU hour the policy decides.")],
    out: Annotated[Path, typer.Option("--out", help="Trajectory table to write (.parquet or .csv).")],
    policy: Annotated[str, typer.Option("--policy", help=f"Strategy: {', '.join(POLICY_NAMES)}.")] = "none",
    observed: Annotated[
        bool, typer.Option("--observed", help="Write the charted values (noise, gaps) instead of the true ones.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing file at --out.")] = False,
) -> None:
    """Re-run one generated stay under another strategy from an hour on: the true counterfactual."""
    if out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"--out must end in .parquet or .csv, got {out.name!r}")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    with progress_bar(transient=True) as bar:
        task = bar.add_task("simulating", total=3)
        engine = PhysiologyEngine.from_cohort(cohort)
        bar.advance(task)
        strategy = named_policy(policy, from_hour=from_hour, hours=engine.config.hours, config=engine.config.clinician)
        what_if = engine.counterfactual(stay, strategy, from_hour)
        bar.advance(task)
        factual = engine.counterfactual(stay, ClinicianPolicy(engine.config.clinician), 1)
        bar.advance(task)
    _write_table(what_if.frame("observed" if observed else "true"), out)
    table = Table(title=f"stay {stay}: clinician vs {policy} from hour {from_hour}")
    table.add_column("outcome (from hour on)")
    table.add_column("factual", justify="right")
    table.add_column(policy, justify="right")
    factual_outcomes, counterfactual_outcomes = _outcomes(factual, from_hour), _outcomes(what_if, from_hour)
    for name, value in factual_outcomes.items():
        table.add_row(name, value, counterfactual_outcomes[name])
    console.print(table)
    console.print(f"{'observed' if observed else 'true'} trajectory ({int(what_if.n_hours[0])} hours) written to [bold]{out}[/]")
