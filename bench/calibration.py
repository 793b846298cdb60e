"""Benchmark: how close the generated cohort is to PhysioNet 2019 (the calibration table).

Generates the calibration cohort (``CALIBRATION_PATIENTS`` stays, seed ``CALIBRATION_SEED``, default
engine settings), reads the 6,000-stay PhysioNet 2019 archive, and compares per variable and group
(septic / non-septic) the 5th, 50th and 95th percentiles and the fraction of hours measured, with the
tolerances of :mod:`organsim.physiology.calibration`; variables PhysioNet lacks are compared with
published ICU ranges. ``--seeds`` adds cohorts generated with other seeds, to show how much the
tails move from one generated cohort to the next.

Usage::

    .venv/bin/python bench/calibration.py [--archive PATH] [--seeds 1 2] [--out bench/results/calibration.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from organsim.data import read_physionet2019
from organsim.physiology import ENGINE_VERSION, EngineConfig, PhysiologyEngine
from organsim.physiology.calibration import (
    CALIBRATION_PATIENTS,
    CALIBRATION_SEED,
    CalibrationReport,
    compare_to_reference,
)
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "physionet2019" / "training_setB_part.tar.gz"


def table(report: CalibrationReport) -> list[dict]:
    """One row per (variable, group): reference -> generated for each statistic, and what failed."""
    rows: dict[tuple[str, str], dict] = {}
    for row in report.rows:
        entry = rows.setdefault((row.variable, row.group), {
            "variable": row.variable, "group": row.group, "reference_source": row.reference_source.split(";")[0],
            "failed": [], "untested": [],
        })
        entry[row.statistic] = {"reference": round(row.reference, 4), "generated": round(row.generated, 4),
                                "tolerance": round(row.tolerance, 4)}
        if not row.tested:
            entry["untested"].append(row.statistic)
        elif not row.passed:
            entry["failed"].append(row.statistic)
    return list(rows.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2], help="extra seeds to check the spread")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "calibration.json")
    args = parser.parse_args()
    if not args.archive.is_file():
        raise SystemExit(f"real data absent: {args.archive} not found")
    start = time.perf_counter()
    reference = read_physionet2019(args.archive)
    generated = PhysiologyEngine(EngineConfig(seed=CALIBRATION_SEED, n_patients=CALIBRATION_PATIENTS)).generate()
    report = compare_to_reference(generated, reference)
    other_seeds = {}
    for seed in args.seeds:
        other = compare_to_reference(PhysiologyEngine(EngineConfig(seed=seed, n_patients=CALIBRATION_PATIENTS)).generate(), reference)
        other_seeds[str(seed)] = {
            "passed": other.passed,
            "n_failed": len(other.failures()),
            "failed": [f"{r.variable} {r.group} {r.statistic}" for r in other.failures()],
        }
    outcome = report.to_dict()
    results = {
        "benchmark": "physiology engine calibration against PhysioNet 2019",
        "engine_version": ENGINE_VERSION,
        "reference": {"archive": str(args.archive), "stays": reference.stays.height,
                      "septic_fraction": round(float(reference.stays["sepsis"].mean()), 4)},
        "generated": {"stays": generated.stays.height, "seed": CALIBRATION_SEED,
                      "septic_fraction": round(float(generated.stays["sepsis"].mean()), 4),
                      "deaths": int(generated.stays["death"].sum())},
        "tolerances": outcome["tolerances"],
        "min_stays_for_a_tested_quantile": outcome["min_stays_for_a_tested_quantile"],
        "passed": outcome["passed"],
        "n_compared": outcome["n_compared"],
        "n_tested": outcome["n_tested"],
        "n_failed": outcome["n_failed"],
        "other_seeds": other_seeds,
        "table": table(report),
        "seconds": round(time.perf_counter() - start, 1),
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"calibration {'passed' if report.passed else 'FAILED'}: {outcome['n_tested']} statistics tested, "
          f"{outcome['n_failed']} outside tolerance; other seeds: "
          + ", ".join(f"{s}: {v['n_failed']} failed" for s, v in other_seeds.items()))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
