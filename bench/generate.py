"""Benchmark: generating a cohort with the physiology engine, saving it, and answering counterfactuals.

Times, for ``--patients`` stays x ``--hours`` ICU hours (default 2,000 x 72) with default settings:

- ``PhysiologyEngine.generate()`` (patients, noise, the hourly simulation with the clinician policy,
  labels, the canonical Cohort), wall clock and CPU time of this process;
- ``Cohort.save()`` to a temporary directory (Parquet, zstd), separately;
- one ``counterfactual(stay_id, NoTreatmentPolicy(), from_hour=12)`` at a time (it re-simulates the
  factual treatments first when the engine has no cohort attached; here the engine is rebuilt from
  the saved cohort, as the CLI does, so the recorded treatments are replayed);
- the same counterfactual for 200 stays in one vectorised call.

Each timing is the median of ``--repeats`` runs after one untimed warm-up. The machine has other
work on it at times: the load average at start is recorded with the results.

Usage::

    .venv/bin/python bench/generate.py [--patients 2000] [--hours 72] [--repeats 3] [--out bench/results/generate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np

from organsim.physiology import ENGINE_VERSION, EngineConfig, NoTreatmentPolicy, PhysiologyEngine
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
BATCH_COUNTERFACTUALS = 200
SINGLE_COUNTERFACTUALS = 20


def timed(run: Callable[[], object], repeats: int) -> tuple[dict[str, float], object]:
    """Warm up once, then time ``repeats`` runs: median wall and CPU seconds, and the last result."""
    result = run()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "median_wall_seconds": round(statistics.median(wall), 3),
        "median_cpu_seconds": round(statistics.median(cpu), 3),
        "wall_seconds_all_runs": [round(t, 3) for t in wall],
    }, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--hours", type=int, default=72)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "generate.json")
    args = parser.parse_args()
    load_average = os.getloadavg()[0]
    config = EngineConfig(seed=args.seed, n_patients=args.patients, hours=args.hours)

    generate_times, cohort = timed(lambda: PhysiologyEngine(config).generate(), args.repeats)
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "cohort"
        save_times, _ = timed(lambda: cohort.save(target), args.repeats)
        size_mb = sum(f.stat().st_size for f in target.iterdir()) / 1e6
        engine = PhysiologyEngine.from_cohort(target)
    stay_ids = [int(s) for s in cohort.stays["stay_id"].to_list()]
    single = []
    for stay in stay_ids[:SINGLE_COUNTERFACTUALS]:
        start = time.perf_counter()
        engine.counterfactual(stay, NoTreatmentPolicy(), 12)
        single.append(time.perf_counter() - start)
    batch_times, _ = timed(lambda: engine.counterfactuals(stay_ids[:BATCH_COUNTERFACTUALS], NoTreatmentPolicy(), 12), args.repeats)

    summary = cohort.summary()
    stay_hours = args.patients * args.hours
    results = {
        "benchmark": "physiology engine: generate, save, counterfactual",
        "engine_version": ENGINE_VERSION,
        "config": {"patients": args.patients, "hours": args.hours, "seed": args.seed,
                   "substeps_per_hour": config.substeps_per_hour, "pre_icu_hours": config.pre_icu_hours},
        "generate": {**generate_times, "stay_hours_per_second": round(stay_hours / generate_times["median_wall_seconds"])},
        "save": {**save_times, "directory_mb": round(size_mb, 2)},
        "counterfactual_single_stay_ms": {
            "median": round(1000 * statistics.median(single), 1),
            "max": round(1000 * max(single), 1),
            "stays": len(single),
        },
        "counterfactual_batch": {**batch_times, "stays": BATCH_COUNTERFACTUALS},
        "cohort": {
            "stays": summary["stays"],
            "hours": summary["hours"],
            "septic_fraction": round(summary["septic_fraction"], 4),
            "deaths": int(cohort.stays["death"].sum()),
            "mean_measured_fraction": round(float(1 - np.mean(list(summary["missingness_by_variable"].values()))), 4),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": round(load_average, 2),
            "python": platform.python_version(),
            "numpy": version("numpy"),
            "polars": version("polars"),
        },
        "repeats": args.repeats,
    }
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("generate", "save", "counterfactual_single_stay_ms", "counterfactual_batch")}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
