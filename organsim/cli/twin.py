"""``organsim coordinate``: train the coordinated twin's reference-selection policy; ``organsim calibrate``: fit the
correlation of its within-hour draws, then calibrate its bands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from organsim.agents.training import split_as_trained
from organsim.cli.app import app, console, friendly_errors
from organsim.data import Cohort
from organsim.twin import PatientTwin
from organsim.twin.calibration import (
    CALIBRATION_FILE,
    HORIZON_BUCKETS,
    BandCalibration,
    fit_band_calibration,
)
from organsim.twin.coordination import (
    ALGORITHMS,
    CoordinationConfig,
    save_coordination,
    train_reference_policy,
)
from organsim.twin.draw_correlation import (
    DRAW_CORRELATION_FILE,
    DrawCorrelation,
    fit_draw_correlation,
)
from organsim.twin.saved_module import write_beside_model
from organsim.utils.progress import progress_bar


@app.command()
@friendly_errors
def coordinate(
    model: Annotated[Path, typer.Option("--model", help="Model directory written by `organsim train`.")],
    cohort: Annotated[Path, typer.Option("--cohort", help="The cohort the agents were trained on (train split: RL; validation split: selection).")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write (may be --model itself): the agents plus the policy.")],
    algo: Annotated[str, typer.Option(help=f"RL algorithm: {', '.join(ALGORITHMS)}.")] = CoordinationConfig.algo,
    steps: Annotated[int, typer.Option(help="Training steps.")] = CoordinationConfig.steps,
    problems: Annotated[int, typer.Option("--problems", help="Forecast problems per step.")] = CoordinationConfig.problems_per_step,
    group_size: Annotated[int, typer.Option(help="Rollouts per problem (sampled reference sets compared in a group).")] = CoordinationConfig.group_size,
    horizons: Annotated[str, typer.Option(help="Comma-separated horizon of each curriculum stage (hours).")] = "1,6,24",
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate.")] = CoordinationConfig.learning_rate,
    realism_weight: Annotated[float, typer.Option(help="Weight of the POLAR realism critic's score in the reward (0: no critic).")] = 0.0,
    prm_weight: Annotated[float, typer.Option(help="Weight of the AgentPRM per-hour credit (GRPO family; 0: outcome advantages only).")] = CoordinationConfig.prm_weight,
    initial_consult: Annotated[float, typer.Option(help="Probability with which the untrained policy consults each other system.")] = CoordinationConfig.initial_consult_probability,
    validation_problems: Annotated[int, typer.Option(help="Validation problems for model selection.")] = CoordinationConfig.validation_problems,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, problems and sampled reference sets.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
) -> None:
    """Train which systems each organ agent consults, hour by hour, with the RL core; save it with the model."""
    config = CoordinationConfig(
        algo=algo, steps=steps, problems_per_step=problems, group_size=group_size,
        horizons=tuple(int(h) for h in horizons.split(",") if h.strip()), learning_rate=learning_rate,
        realism_weight=realism_weight, prm_weight=prm_weight, initial_consult_probability=initial_consult, validation_problems=validation_problems, seed=seed,
    )
    twin = PatientTwin.load(model, device=device)
    data = split_as_trained(Cohort.load(cohort), twin.agents)
    started = time.perf_counter()
    result = train_reference_policy(twin, data, config, progress=True)
    written = save_coordination(result, config, model, out)
    horizon_keys = [str(h) for h in sorted(set(config.horizons))]
    table = Table(title="validation mean nMSE (free-running predictive means, observed targets)")
    table.add_column("references")
    for h in horizon_keys:
        table.add_column(f"{h} h", justify="right")
    best = next(v for v in result.validation if v["step"] == result.best_step)
    for name, figures in (*result.baselines.items(), (f"policy (step {result.best_step})", best)):
        table.add_row(name, *(f"{figures['nmse_at'][h]:.3f}" for h in horizon_keys))
    console.print(table)
    consulted = float(result.consult_rates.sum() / (result.consult_rates.size - len(result.consult_rates)))
    realism = "" if result.realism is None else (
        f" Realism score (0.5 = indistinguishable): all {result.realism['all']:.3f}, policy {result.realism['policy']:.3f}."
    )
    console.print(
        f"{config.algo} for {config.steps} steps in {time.perf_counter() - started:.0f} s; the kept policy consults "
        f"{consulted:.0%} of the other systems on average.{realism}\nWrote " + ", ".join(str(p) for p in written) + "."
    )


@app.command()
@friendly_errors
def calibrate(
    model: Annotated[Path, typer.Option("--model", help="Model directory (`organsim train`, optionally `organsim coordinate`); "
                                                        "draw_correlation.json and band_calibration.json are written into it.")],
    cohort: Annotated[Path, typer.Option("--cohort", help="The cohort the agents were trained on (its validation split is calibrated on).")],
    out: Annotated[Path | None, typer.Option("--out", help="Model directory to write: a copy of --model with the calibration "
                                                           "(default: --model itself).")] = None,
    cases: Annotated[int, typer.Option(help="Start hours (one per stay, seeded), at most.")] = 200,
    samples: Annotated[int, typer.Option(help="Sampled futures per case: as many as the what-ifs will use (a band read "
                                              "off fewer samples is narrower, so its scale differs).")] = 20,
    horizon: Annotated[int, typer.Option(help="Hours rolled out from each start.")] = 48,
    correlation_windows: Annotated[int, typer.Option(min=1, help="Windows of teacher-forced one-step forecasts the draw correlation "
                                                          "is fitted on, at most (a seeded sample when the split has more).")] = 2000,
    split: Annotated[str, typer.Option(help="Split of stays to calibrate on (never the train split).")] = "validation",
    seed: Annotated[int, typer.Option(help="Seed of the windows, the start hours and the rollouts.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
) -> None:
    """Fit the correlation of the twin's within-hour draws, then calibrate its 90 % bands with correlated draws
    (split conformal, on factual rollouts of held-out stays); save both with the model."""
    if split == "train":
        raise ValueError("--split train would calibrate on the stays the agents learnt from; use validation (or test)")
    twin = PatientTwin.load(model, device=device)
    data = split_as_trained(Cohort.load(cohort), twin.agents)
    held_out = data.subset(split=split)
    if held_out.stays.height == 0:
        raise ValueError(f"the cohort has no {split!r} stays to calibrate on (split it as the agents were trained)")
    started = time.perf_counter()
    with progress_bar(transient=True) as bar:
        task = bar.add_task("fitting the draw correlation", total=None)
        correlation = fit_draw_correlation(twin, held_out, max_windows=correlation_windows, seed=seed,
                                           progress=lambda done, total: bar.update(task, completed=done, total=total))
        correlated = PatientTwin.load(model, device=device, draw_correlation=correlation)
        task = bar.add_task("calibrating bands", total=None)
        calibration = fit_band_calibration(correlated, data, split=split, cases=cases, samples=samples, horizon=horizon, seed=seed,
                                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    destination = out or model

    def write(directory: Path) -> None:
        correlation.save(directory)
        calibration.save(directory)

    write_beside_model(model, destination, write)
    console.print(draw_correlation_table(correlation, split))
    console.print(band_scale_table(calibration, twin, split))
    console.print(f"Raw sampled bands covered {calibration.coverage_before:.1%} of the held-out observed values (nominal "
                  f"{calibration.level:.0%}); scales above 1 widen a band, below 1 narrow it. "
                  f"{time.perf_counter() - started:.0f} s.\nWrote {Path(destination) / DRAW_CORRELATION_FILE} and "
                  f"{Path(destination) / CALIBRATION_FILE}.")


def draw_correlation_table(correlation: DrawCorrelation, split: str, strongest: int = 8) -> Table:
    """The strongest estimated within-hour correlations, with how many variable pairs had enough hours."""
    n_variables = len(correlation.variables)
    table = Table(title=f"Within-hour draw correlation ({correlation.meta['stays']} {split} stays, {correlation.meta['hours']:,} hours): "
                        f"{correlation.pairs_estimated} of {n_variables * (n_variables - 1) // 2} variable pairs had "
                        f">= {correlation.min_pairs} hours with both observed; the strongest")
    for name, justify in (("pair", "left"), ("correlation", "right"), ("hours", "right")):
        table.add_column(name, justify=justify)
    for first, second, r, hours in correlation.strongest(strongest):
        table.add_row(f"{first} - {second}", f"{r:+.2f}", f"{hours:,}")
    return table


def band_scale_table(calibration: BandCalibration, twin: PatientTwin, split: str) -> Table:
    """The band scales by system and horizon bucket (median over each system's variables)."""
    table = Table(title=f"90 % band scales by system (median over variables; {calibration.meta['cases']} {split} cases, "
                        f"{calibration.meta['observed_values']:,} observed values)")
    table.add_column("system")
    for first, last in zip(HORIZON_BUCKETS, (*[b - 1 for b in HORIZON_BUCKETS[1:]], None), strict=True):
        table.add_column(f"hours {first}-{last}" if last else f"hours {first}+", justify="right")
    systems = twin.agents.config.variable_systems
    for system in twin.systems:
        columns = [j for j, s in enumerate(systems) if s == system]
        table.add_row(system, *(f"{np.median(calibration.scales[b, columns]):.2f}" for b in range(len(HORIZON_BUCKETS))))
    return table
