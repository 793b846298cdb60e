"""Benchmark: clinical scores and critical events on the 6,000 PhysioNet 2019 stays.

Times, on the real archive ingested once with ``read_physionet2019``:

- ``score_cohort`` (SOFA, APACHE II, NEWS2, qSOFA, SIRS per hour, critical events, Sepsis-3 onset)
  over the whole cohort, and each score function on its own;
- one trajectory at a time (``score_trajectories`` on a single stay), against the same trajectories
  scored in one call (each its own ``stay_id``: the way to score many rollouts);
- ``compare_event_chains`` between the real events and those of a lag-1 "persistence simulator"
  (every value delayed by one hour), which also shows what the comparison reports for a simulator
  known to be one hour late.

Each timing is the median of ``--repeats`` runs after one untimed warm-up.

Usage::

    .venv/bin/python bench/scores.py [--archive PATH] [--repeats 3] [--out bench/results/scores.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import polars as pl

from organsim.data import Cohort, read_physionet2019
from organsim.scores import (
    apache_ii,
    compare_event_chains,
    critical_events,
    news2,
    qsofa,
    score_cohort,
    score_trajectories,
    sirs,
    sofa,
)
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "physionet2019" / "training_setB_part.tar.gz"
SINGLE_TRAJECTORIES = 200


def median_seconds(run: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """Warm up once, then time ``repeats`` runs; return (median, all times, last result)."""
    result = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def lagged_by_one_hour(hourly: pl.DataFrame) -> pl.DataFrame:
    """Every stay's values one hour later (the first hour unmeasured): a persistence 'simulator'."""
    values = [c for c in hourly.columns if c not in ("stay_id", "hour")]
    return hourly.with_columns([pl.col(c).shift(1).over("stay_id") for c in values])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "scores.json")
    args = parser.parse_args()
    if not args.archive.is_file():
        raise SystemExit(f"real data absent: {args.archive} not found (put ../shared beside the repository)")

    load_average = os.getloadavg()[0]
    start = time.perf_counter()
    cohort: Cohort = read_physionet2019(args.archive)
    ingest_seconds = time.perf_counter() - start
    hourly, stays = cohort.hourly, cohort.stays

    cohort_seconds, cohort_times, result = median_seconds(lambda: score_cohort(cohort), args.repeats)
    hourly_scores, events = result  # type: ignore[misc]
    per_function = {}
    for name, run in {
        "sofa": lambda: sofa(hourly),
        "apache_ii": lambda: apache_ii(hourly, stays),
        "news2": lambda: news2(hourly),
        "qsofa": lambda: qsofa(hourly),
        "sirs": lambda: sirs(hourly),
        "critical_events": lambda: critical_events(hourly),
    }.items():
        per_function[name] = median_seconds(run, args.repeats)[0]

    rng = np.random.default_rng(0)
    chosen = rng.choice(stays["stay_id"].to_numpy(), SINGLE_TRAJECTORIES, replace=False)
    singles = [(hourly.filter(pl.col("stay_id") == int(s)), stays.filter(pl.col("stay_id") == int(s))) for s in chosen]
    score_trajectories(singles[0][0], None, singles[0][1])  # warm-up
    single_times, single_cpu = [], []
    for trajectory, stay in singles:
        start, start_cpu = time.perf_counter(), time.process_time()
        score_trajectories(trajectory, None, stay)
        single_times.append(time.perf_counter() - start)
        single_cpu.append(time.process_time() - start_cpu)
    batch_hourly = pl.concat([t for t, _ in singles])
    batch_stays = pl.concat([s for _, s in singles])
    batch_seconds = median_seconds(lambda: score_trajectories(batch_hourly, None, batch_stays), args.repeats)[0]

    simulated_events = critical_events(lagged_by_one_hour(hourly))
    real_events = events.filter(pl.col("event") != "sepsis3")
    chains_seconds, _, comparison = median_seconds(
        lambda: compare_event_chains(real_events, simulated_events, stay_ids=stays["stay_id"].to_list()), args.repeats)
    summary = comparison.summary  # type: ignore[attr-defined]

    result_json = {
        "benchmark": "scores",
        "data": str(args.archive.name),
        "stays": stays.height,
        "hours": hourly.height,
        "ingest_seconds": round(ingest_seconds, 3),  # read_physionet2019, once, not part of the scores
        "score_cohort_seconds": round(cohort_seconds, 3),
        "score_cohort_runs_seconds": [round(t, 3) for t in cohort_times],
        "stay_hours_per_second": round(hourly.height / cohort_seconds),
        "per_function_seconds": {k: round(v, 3) for k, v in per_function.items()},
        "single_trajectory_ms": {
            "n": SINGLE_TRAJECTORIES,
            "median": round(1000 * statistics.median(single_times), 2),
            "p95": round(1000 * float(np.percentile(single_times, 95)), 2),
            "median_cpu": round(1000 * statistics.median(single_cpu), 2),
            "median_hours_per_trajectory": float(np.median([t.height for t, _ in singles])),
            "same_trajectories_in_one_call_ms_per_trajectory": round(1000 * batch_seconds / SINGLE_TRAJECTORIES, 2),
        },
        "event_chain_comparison_seconds": round(chains_seconds, 3),
        "lag1_persistence_vs_real": {
            "occurrence": summary["occurrence"],
            "onset_difference_hours": summary["onset_difference_hours"],
            "order": summary["order"],
        },
        "outputs": {
            "hourly_columns": len(hourly_scores.columns),
            "mean": {s: round(float(hourly_scores[s].mean()), 3) for s in
                     ("sofa", "sofa_24h", "apache_ii", "apache_ii_24h", "news2", "qsofa", "sirs")},
            "episodes_by_event": dict(sorted(events.group_by("event").len().iter_rows())),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": round(load_average, 2),
            "python": platform.python_version(),
            "polars": pl.__version__,
            "numpy": np.__version__,
            "organsim": version("organsim"),
        },
        "repeats": args.repeats,
    }
    atomic_write_text(args.out, json.dumps(result_json, indent=2) + "\n")
    print(json.dumps(result_json, indent=2))


if __name__ == "__main__":
    main()
