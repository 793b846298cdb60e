"""Benchmark: the three baseline forecasters (LOCF, ridge AR, GRU) on real and engine data.

For each data set: split by patient with ``Cohort.split(seed=0)`` (train/validation/test
0.7/0.15/0.15, stratified on sepsis), fit the Normaliser and every baseline on the training split
(the ridge also takes the validation stays as extra rows; the GRU uses them for early stopping),
and score per-system and mean nMSE at 1, 6 and 24 hours on the test split with
:func:`organsim.evaluate.accuracy.evaluate_forecasters` (default settings: 24 context hours, up to
16 seeded start hours per stay and horizon, at least 3 stay hours of context).

On PhysioNet 2019 it also checks the metric against published figures: LOCF 1-hour nMSE on every
eligible test hour, for HR, MAP and SpO2 (about 0.19, 0.51 and 0.87).

Data sets:

- ``physionet``: the 6,000-stay PhysioNet 2019 archive in ../shared (never copied into the repo),
  read with :func:`organsim.data.read_physionet2019` -> ``bench/results/baselines_physionet.json``;
- ``engine``: a cohort from the physiology engine (``--engine-patients`` x ``--engine-hours``,
  seed 0) -> ``bench/results/baselines_engine.json``.

Usage::

    .venv/bin/python bench/baselines.py [--datasets physionet engine] [--engine-patients 2000]
        [--engine-hours 72] [--max-stays N] [--gru-epochs 20] [--threads 1] [--results-dir bench/results]

``--max-stays`` (a seeded sample of stays) and ``--gru-epochs`` give a quick smoke run. Times
are wall-clock seconds on whatever else the machine is doing: the load average is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from organsim.agents.baselines import (
    GRUConfig,
    GRUForecaster,
    LastObservationForecaster,
    RidgeForecaster,
)
from organsim.data import Cohort, read_physionet2019
from organsim.data.normalize import Normaliser
from organsim.evaluate.accuracy import evaluate_forecasters, summary_table
from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.utils.io import atomic_write_text
from organsim.utils.progress import progress_bar

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ORGANSIM_SHARED", REPO.parent / "shared"))
PHYSIONET_ARCHIVE = SHARED / "data" / "physionet2019" / "training_setB_part.tar.gz"
PUBLISHED_LOCF_NMSE_1H = {"hr": 0.19, "map": 0.51, "spo2": 0.87}
SPLIT_SEED = 0
console = Console()


def timed(step: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``step``; return its result and wall-clock seconds."""
    started = time.perf_counter()
    result = step()
    return result, round(time.perf_counter() - started, 2)


def physionet_cohort() -> Cohort:
    """The shared PhysioNet 2019 archive as a cohort (read in place)."""
    if not PHYSIONET_ARCHIVE.is_file():
        raise SystemExit(f"real data absent: {PHYSIONET_ARCHIVE} not found (put ../shared beside the repository)")
    with progress_bar() as bar:
        task = bar.add_task("reading PhysioNet 2019", total=None)
        return read_physionet2019(PHYSIONET_ARCHIVE, progress=lambda done, total: bar.update(task, completed=done, total=total))


def engine_cohort(patients: int, hours: int) -> Cohort:
    """A cohort from the physiology engine, seed 0."""
    engine = PhysiologyEngine(EngineConfig(seed=0, n_patients=patients, hours=hours))
    with progress_bar() as bar:
        task = bar.add_task("simulating engine cohort", total=patients * hours)
        return engine.generate(progress=lambda done, total: bar.update(task, completed=done, total=total))


def run(cohort: Cohort, *, gru_config: GRUConfig, threads: int | None) -> dict[str, Any]:
    """Split, fit the three baselines, evaluate on the test split; return the JSON-ready record."""
    cohort = cohort.split(seed=SPLIT_SEED)
    train, validation, test = (cohort.subset(split=s) for s in ("train", "validation", "test"))
    normaliser = Normaliser.fit(train)
    fit_seconds: dict[str, float] = {}
    locf, fit_seconds["locf"] = timed(lambda: LastObservationForecaster().fit(train))
    ridge, fit_seconds["ridge"] = timed(lambda: RidgeForecaster().fit(train, validation))
    console.print(f"ridge fitted in {fit_seconds['ridge']} s")
    with progress_bar() as bar:
        task = bar.add_task("training GRU (epochs)", total=gru_config.max_epochs)
        gru = GRUForecaster(
            gru_config, seed=0, device="cpu", num_threads=threads,
            progress=lambda epoch, train_loss, val_loss: bar.update(
                task, completed=epoch, description=f"training GRU (validation loss {val_loss:.4f})"),
        )
        gru, fit_seconds["gru"] = timed(lambda: gru.fit(train, validation))
    forecasters = {"locf": locf, "ridge": ridge, "gru": gru}
    results, evaluate_seconds = timed(lambda: evaluate_forecasters(forecasters, test, normaliser, progress=True))
    console.print(summary_table(results, title=f"{cohort.meta.get('source')}: mean nMSE on the test split"))
    scored = results["forecasters"]
    horizons = [str(h) for h in results["settings"]["horizons"]]
    record: dict[str, Any] = {
        "dataset": {
            "source": cohort.meta.get("source"),
            "stays": cohort.stays.height,
            "hours": cohort.hourly.height,
            "split": cohort.counts()["splits"],
            "split_seed": SPLIT_SEED,
            "treatments_recorded": bool(cohort.meta.get("treatments_recorded", False)),
        },
        "settings": results["settings"],
        "models": {
            "ridge": {"lags": ridge.lags, "context_hours": ridge.context_hours, "alpha_per_row": ridge.alpha_per_row,
                      "max_rows_per_variable": ridge.max_rows_per_variable,
                      "variables_fitted": int(ridge.predicted_.sum())},
            "gru": {**dataclasses.asdict(gru_config), "epochs_run": len(gru.history_), "history": gru.history_,
                    "torch_threads": threads or torch.get_num_threads()},
        },
        "timings_s": {"fit": fit_seconds, "evaluate_all_three": evaluate_seconds},
        "summary": {
            "mean_nmse": {name: figures["mean_nmse"] for name, figures in scored.items()},
            "mean_nmse_relative_to_locf": {
                name: {h: ratio(figures["mean_nmse"][h], scored["locf"]["mean_nmse"][h]) for h in horizons}
                for name, figures in scored.items()
            },
            "systems_nmse": {
                name: {system: figures["systems"][system]["nmse"] for system in figures["systems"]}
                for name, figures in scored.items()
            },
            "systems_mse_minmax": {
                name: {system: figures["systems"][system]["mse_minmax"] for system in figures["systems"]}
                for name, figures in scored.items()
            },
        },
        "results": scored,
    }
    if cohort.meta.get("source") == "physionet2019":
        record["locf_reference_check"] = locf_reference_check(locf, ridge, test, normaliser)
    return record


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference`` to 4 decimals; None when either is missing (no target at that horizon)."""
    return None if value is None or not reference else round(value / reference, 4)


def locf_reference_check(locf, ridge, test: Cohort, normaliser: Normaliser) -> dict[str, Any]:
    """LOCF and ridge 1-hour nMSE on every eligible test hour, beside the published LOCF figures."""
    every = evaluate_forecasters({"locf": locf, "ridge": ridge}, test, normaliser, horizons=(1,), per_stay=None, by_sofa_stratum=False)
    figures = every["forecasters"]
    return {
        "settings": every["settings"],
        "published_locf_nmse_1h": PUBLISHED_LOCF_NMSE_1H,
        "locf_nmse_1h": {v: figures["locf"]["variables"][v]["nmse"]["1"] for v in PUBLISHED_LOCF_NMSE_1H},
        "ridge_nmse_1h": {v: figures["ridge"]["variables"][v]["nmse"]["1"] for v in PUBLISHED_LOCF_NMSE_1H},
        "mean_nmse_1h": {name: f["mean_nmse"]["1"] for name, f in figures.items()},
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        **{package: version(package) for package in ("numpy", "polars", "torch", "scikit-learn")},
    }


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=("physionet", "engine"), default=["physionet", "engine"])
    parser.add_argument("--engine-patients", type=int, default=2000)
    parser.add_argument("--engine-hours", type=int, default=72)
    parser.add_argument("--max-stays", type=int, default=None, help="Seeded sample of stays (smoke runs).")
    parser.add_argument("--gru-epochs", type=int, default=GRUConfig.max_epochs)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the GRU (0: torch's default).")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    gru_config = GRUConfig(max_epochs=args.gru_epochs)
    written = []
    for dataset in args.datasets:
        environment = machine()
        if dataset == "physionet":
            cohort, load_seconds = timed(physionet_cohort)
        else:
            cohort, load_seconds = timed(lambda: engine_cohort(args.engine_patients, args.engine_hours))
        if args.max_stays is not None and args.max_stays < cohort.stays.height:
            ids = np.random.default_rng(0).choice(cohort.stay_ids, size=args.max_stays, replace=False)
            cohort = cohort.subset(sorted(int(i) for i in ids))
        record = run(cohort, gru_config=gru_config, threads=args.threads or None)
        record = {
            "benchmark": "baseline forecasters (LOCF, ridge AR, GRU): per-system nMSE at 1, 6, 24 h",
            "command": " ".join(["bench/baselines.py", *(argv if argv is not None else sys.argv[1:])]),
            **record,
            "timings_s": {"load": load_seconds, **record["timings_s"]},
            "machine": environment,
        }
        if dataset == "engine":
            record["dataset"]["engine"] = {"patients": args.engine_patients, "hours": args.engine_hours, "seed": 0}
        path = atomic_write_text(args.results_dir / f"baselines_{dataset}.json", json.dumps(record, indent=2) + "\n")
        console.print(f"{dataset}: results written to [bold]{path}[/]")
        written.append(path)
    return written


if __name__ == "__main__":
    main()
