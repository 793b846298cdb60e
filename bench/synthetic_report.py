"""Benchmark: the synthetic-cohort report and the exports on the real PhysioNet 2019 data.

Three measurements, each written to its own JSON file in ``bench/results/``:

- ``exports``: every export format (parquet, csv, psv, meds) of the 6,000 PhysioNet stays and of
  a 6,000-stay engine cohort, re-read by its loader: write and read seconds, files, and whether
  the values read back equal the cohort's (for psv: the challenge's columns, statics and labels).
- ``holdout``: the sanity check. PhysioNet is split by patient (40/40/20, seed 0, stratified on
  sepsis); the report is run with real-train = the first 40 %, real-test = the last 20 % and
  "synthetic" = the middle 40 % (as many real patients as real-train, never seen by any model).
  Every measure should look ideal (AUROC drop about 0, detection about 0.5, membership inference
  about 0.5, DCR ratio about 1); what it shows instead is the sampling noise of each figure at
  this cohort size.
- ``engine``: the mechanistic engine's cohort (``organsim generate --patients 6000``: 72 h
  stays, seed 0) as the "synthetic" data against the same PhysioNet train/test split: how far
  the engine is from real data.

Usage::

    .venv/bin/python bench/synthetic_report.py [--archive PATH] [--only exports,holdout,engine]
        [--report-dir DIR]

The full reports (metrics.json, report.html) go to ``--report-dir`` (default: a directory under
the system temp dir); the JSON results hold the headline figures, the checks, per-step seconds
and the machine (CPU count, load average at start: the development machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from organsim.data import Cohort, read_meds, read_physionet2019, read_table
from organsim.data.export import CHALLENGE_VARIABLES, FORMATS, export_cohort
from organsim.evaluate.synthetic_report import (
    ReportConfig,
    build_synthetic_report,
    write_synthetic_report,
)
from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "physionet2019" / "training_setB_part.tar.gz"
RESULTS = REPO / "bench" / "results"
SPLIT = (0.4, 0.4, 0.2)
ENGINE = EngineConfig(n_patients=6000, hours=72, seed=0)


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "versions": {p: version(p) for p in ("polars", "numpy", "scikit-learn", "lightgbm", "scipy")}}


def write_result(name: str, document: dict[str, Any]) -> Path:
    path = RESULTS / f"synthetic_report_{name}.json"
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}", flush=True)
    return path


# ------------------------------------------------------------------------------------------ exports
def read_back(fmt: str, path: Path) -> Cohort:
    if fmt == "parquet":
        return Cohort.load(path)
    if fmt == "csv":
        return read_table(path / "hourly.csv", path / "stays.csv")
    if fmt == "psv":
        return read_physionet2019(path)
    return read_meds(path)


def same_values(fmt: str, back: Cohort, cohort: Cohort) -> dict[str, bool]:
    """Which tables read back with exactly the cohort's values (psv: the challenge's part of them)."""
    if fmt == "psv":
        codes = ["stay_id", "hour", *(cohort.catalog.physionet_columns[c] for c in CHALLENGE_VARIABLES)]
        statics = ["stay_id", "age", "sex", "unit", "hosp_adm_hours", "n_hours", "sepsis"]
        return {"challenge_variables": back.hourly.select(codes).equals(cohort.hourly.select(codes)),
                "sepsis_labels": back.sepsis_labels().equals(cohort.sepsis_labels()),
                "statics": back.stays.select(statics).equals(cohort.stays.select(statics)),
                "onsets": back.stays["sepsis_onset_hour"].equals(cohort.stays["sepsis_onset_hour"])}
    return {"hourly": back.hourly.equals(cohort.hourly), "treatments": back.treatments.equals(cohort.treatments),
            "stays": back.stays.drop("source").equals(cohort.stays.drop("source"))}


def bench_exports(cohorts: dict[str, Cohort], workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, cohort in cohorts.items():
        results[name] = {"stays": cohort.stays.height, "hours": cohort.hourly.height}
        for fmt in FORMATS:
            out = workdir / f"export_{name}_{fmt}"
            start = time.perf_counter()
            summary = export_cohort(cohort, out, fmt)
            written = time.perf_counter() - start
            start = time.perf_counter()
            back = read_back(fmt, out)
            read = time.perf_counter() - start
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
            results[name][fmt] = {"write_s": round(written, 3), "read_s": round(read, 3), "files": summary.files,
                                  "megabytes": round(size / 1e6, 2), "synthetic": summary.synthetic,
                                  "same_values": same_values(fmt, back, cohort), "notes": summary.notes}
            print(f"export {name} {fmt}: {written:.1f} s write, {read:.1f} s read, {results[name][fmt]['same_values']}",
                  flush=True)
    return results


# ------------------------------------------------------------------------------------------ reports
def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures a reader compares across runs (the full document is in the report directory)."""
    fidelity = metrics["fidelity"]
    both = ("synthetic", "holdout")
    utility = {}
    for task, entry in metrics["utility"].items():
        if entry["status"] != "ok":
            utility[task] = {"status": "skipped", "reason": entry["reason"]}
            continue
        utility[task] = {"rows": entry["rows"], **{
            name: {"auroc_real": s["real"]["auroc"], "auroc_synthetic": s["synthetic"]["auroc"], "auroc_drop": s["auroc_drop"],
                   "auprc_real": s["real"]["auprc"], "auprc_synthetic": s["synthetic"]["auprc"],
                   **({"utility_real": s["real"]["utility"], "utility_synthetic": s["synthetic"]["utility"]}
                      if "utility" in s["real"] else {})}
            for name, s in entry["classifiers"].items()}}
    return {
        "cohorts": metrics["cohorts"],
        "checks": metrics["checks"],
        "fidelity": {
            "mean_ks": {k: fidelity["distributions"][k]["mean_ks"] for k in both},
            "mean_wasserstein_normalised": {k: fidelity["distributions"][k]["mean_wasserstein_normalised"] for k in both},
            "correlation_mean_abs_difference": {k: fidelity["correlations"][k]["mean_abs_difference"] for k in both},
            "sequence_mean_ks": {k: fidelity["sequences"][k]["mean_ks"] for k in both},
            "stay_length_ks": {k: fidelity["sequences"][k]["stay_length"]["ks"] for k in both},
            "missingness_mean_abs_difference": fidelity["missingness"]["mean_abs_difference"],
            "variables_absent_in_synthetic": fidelity["variables_absent_in_synthetic"],
            "detection": fidelity["detection"],
            "detection_train": fidelity.get("detection_train"),
        },
        "utility": utility,
        "privacy": metrics["privacy"],
    }


def bench_report(name: str, synthetic: Cohort, train: Cohort, test: Cohort, inputs: dict[str, str],
                 report_dir: Path, description: str) -> dict[str, Any]:
    config = ReportConfig(seed=0)  # training cohorts matched in size (the default)
    steps: list[tuple[str, float]] = []
    started = time.perf_counter()
    cpu_started = time.process_time()

    def step(label: str) -> None:
        steps.append((label, time.perf_counter()))
        print(f"  [{time.perf_counter() - started:7.1f} s] {label}", flush=True)

    report = build_synthetic_report(synthetic, train, test, config, inputs=inputs, progress=step)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    written = write_synthetic_report(report, report_dir / name)
    seconds = {label: round(steps[i + 1][1] - at if i + 1 < len(steps) else started + wall - at, 2)
               for i, (label, at) in enumerate(steps)}
    return {"benchmark": f"synthetic report: {description}", "settings": {"seed": config.seed, "split": list(SPLIT),
                                                                           "threads": config.threads,
                                                                           "match_training_stays": config.match_training_stays},
            **headline(report.metrics), "report_files": [str(p) for p in written],
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "seconds_per_step": seconds, "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--only", default="exports,holdout,engine", help="comma-separated: exports, holdout, engine")
    parser.add_argument("--report-dir", type=Path, default=Path(tempfile.gettempdir()) / "organsim-bench-synthetic-report")
    args = parser.parse_args()
    if not args.archive.is_file():
        raise SystemExit(f"archive not found: {args.archive} (put ../shared beside the repository)")
    chosen = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = chosen - {"exports", "holdout", "engine"}
    if unknown:
        raise SystemExit(f"unknown --only parts {sorted(unknown)}")
    physionet = read_physionet2019(args.archive).split(SPLIT, seed=0)
    train, validation, test = (physionet.subset(split=s) for s in ("train", "validation", "test"))
    engine = PhysiologyEngine(ENGINE).generate() if chosen & {"exports", "engine"} else None
    archive = str(args.archive)
    if "exports" in chosen:
        with tempfile.TemporaryDirectory(prefix="organsim-bench-exports-") as tmp:
            results = bench_exports({"physionet2019": physionet, "engine": engine}, Path(tmp))
        write_result("exports", {"benchmark": "exports re-read by their loaders", "results": results, "machine": machine()})
    if "holdout" in chosen:
        print("holdout sanity check", flush=True)
        write_result("physionet_holdout", bench_report(
            "physionet_holdout", validation, train, test,
            {"synthetic": f"{archive} (validation split)", "real_train": f"{archive} (train split)",
             "real_test": f"{archive} (test split)"}, args.report_dir,
            "a second real PhysioNet split as the 'synthetic' cohort (sanity check: every figure should look ideal)"))
    if "engine" in chosen:
        print("engine cohort", flush=True)
        write_result("engine", bench_report(
            "engine", engine, train, test,
            {"synthetic": f"PhysiologyEngine(n_patients={ENGINE.n_patients}, hours={ENGINE.hours}, seed={ENGINE.seed})",
             "real_train": f"{archive} (train split)", "real_test": f"{archive} (test split)"}, args.report_dir,
            "the mechanistic engine's 6,000-stay cohort against PhysioNet 2019"))


if __name__ == "__main__":
    main()
