"""Benchmark: a synthetic PhysioNet 2019 cohort from the twin, judged against held-out real patients.

The twin (``--model``, trained by ``organsim train`` on the train split of ``--cohort`` only) and
the generators of :mod:`organsim.synth` (fitted on that same train split) make a synthetic cohort
the size of the train split; then

- every export format (parquet, csv, psv, meds) is written and re-read by its loader, and compared
  with the cohort (psv: the challenge's columns, statics and labels);
- the synthetic report (``organsim report-synthetic``) compares it with real-train (the train
  split) and real-test (the test split, which neither the twin nor the generators saw): AUROC drop
  per task and classifier, detection AUROC, distance-to-closest-record ratio, membership inference.

Usage::

    .venv/bin/python bench/synthesize.py --model MODEL_DIR --cohort COHORT_DIR
        [--patients N] [--hours 120] [--seed 0] [--work-dir DIR] [--reuse]
        [--spread-pilot-stays 256] [--drift-control 1] [--screen-pool 1] [--volatility 0] [--shards 1] [--result PATH]

The recorded JSON came from the tiny twin trained on the PhysioNet train split (``organsim ingest
physionet2019`` then ``organsim train --preset tiny``), calibrated on its validation split
(``organsim calibrate --model MODEL_DIR --cohort COHORT_DIR --out CALIBRATED_DIR``: the draw
correlation and the bands), run with ``OMP_NUM_THREADS=1``, ``--seed 0``, ``--screen-pool 8``,
``--volatility 0.25`` and ``--shards 2``.

``--spread-pilot-stays`` sets the pilot size of the draw-spread fit (:mod:`organsim.synth.spread`;
0: the twin's own draws) and ``--drift-control`` the gain that steers the stays along the train
split's mean course (:mod:`organsim.synth.drift`; 0: none), as ``organsim synthesize`` does.
``--screen-pool`` sets how many stays are generated per stay kept by the realism screen
(:mod:`organsim.synth.screening`; 1: none) and ``--shards`` generates in that many local processes
(each shard its own seed and its own screen, as ``organsim synthesize --shards``).
``--volatility`` gives each stay its own spread factors of the vital signs' draws
(``SynthesisConfig.volatility``; 0: none), a wider pool for the screen.
``--reuse`` reads a synthetic cohort already generated in ``--work-dir`` instead of generating it again. Writes ``--result`` (default
``bench/results/synthesize_physionet.json``: settings, generation bookkeeping with the fitted draw
spread and seconds, export round trips, the report's headline figures and checks, the machine) and
the full report (metrics.json, report.html) under ``--work-dir``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from synthetic_report import headline, machine, read_back, same_values

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
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "bench" / "results" / "synthesize_physionet.json"


def log(started: float, message: str) -> None:
    print(f"[{time.perf_counter() - started:8.1f} s] {message}", flush=True)


def generate(args: argparse.Namespace, train: Cohort, started: float) -> tuple[Cohort, dict[str, Any]]:
    """Fit the generators, roll the twin forward, return the cohort and the generation record."""
    seconds: dict[str, float] = {}
    at = time.perf_counter()
    synthesizer = CohortSynthesizer.fit(train, initial_hours=args.initial_hours, seed=args.seed)
    seconds["fit_generators"] = round(time.perf_counter() - at, 1)
    log(started, f"generators fitted on {train.stays.height:,} train stays")
    twin = PatientTwin.load(args.model, device=args.device)
    window = twin.agents.config.window_hours
    config = SynthesisConfig(patients=args.patients or train.stays.height, max_hours=args.hours, seed=args.seed,
                             segment_hours=args.segment_hours,
                             context_hours=min(twin.agents.config.context_hours, window - args.segment_hours),
                             batch_size=args.batch_size, spread_pilot_stays=args.spread_pilot_stays, drift_control=args.drift_control,
                             screen_pool=args.screen_pool, volatility=args.volatility)
    at = time.perf_counter()
    fitted = synthesizer.fit_draw_spread(twin, config, progress=lambda done, total: log(started, f"draw-spread pilot {done} of {total}"))
    seconds["fit_draw_spread"] = round(time.perf_counter() - at, 1)
    if fitted is not None:
        config = replace(config, **fitted.config_knobs())
    at = time.perf_counter()
    reported = {"done": 0}

    def progress(done: int, total: int) -> None:
        if done - reported["done"] >= args.batch_size or done == total:
            reported["done"] = done
            log(started, f"simulated {done:,} of {total:,} stays")

    if args.shards == 1:
        result = synthesizer.generate(twin, config, progress=progress)
    else:  # as `organsim synthesize --shards N`: the knobs fitted once, each shard its own seed and screen
        result = synthesize_sharded(args.model, args.cohort, config, shards=args.shards, parts_dir=args.work_dir / "parts",
                                    initial_hours=args.initial_hours, device=args.device, workers=args.shards,
                                    progress=lambda done, total: log(started, f"shard {done} of {total} written"))
    seconds["generate"] = round(time.perf_counter() - at, 1)
    generation = result.summary()
    if fitted is not None:  # the fit's targets and pilots beside the knobs the cohort was rolled out with
        generation["draw_spread"] = {**(generation["draw_spread"] or {}), **fitted.summary()}  # sharded: knobs only
    record = {"settings": {**config.__dict__, "initial_hours": args.initial_hours, "device": args.device,
                           "coordinated": twin.coordinated},
              "generation": generation, "seconds": seconds}
    return result.cohort, record


def bench_exports(cohort: Cohort, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for fmt in FORMATS:
        out = workdir / f"export_{fmt}"
        at = time.perf_counter()
        summary = export_cohort(cohort, out, fmt)
        written = time.perf_counter() - at
        at = time.perf_counter()
        back = read_back(fmt, out)
        results[fmt] = {"write_s": round(written, 2), "read_s": round(time.perf_counter() - at, 2),
                        "files": summary.files, "synthetic": summary.synthetic,
                        "same_values": same_values(fmt, back, cohort), "notes": summary.notes}
        print(f"export {fmt}: {results[fmt]['same_values']}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--patients", type=int, default=None, help="default: as many as the train split")
    parser.add_argument("--hours", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--initial-hours", type=int, default=2)
    parser.add_argument("--segment-hours", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--spread-pilot-stays", type=int, default=256,
                        help="stays per pilot of the draw-spread fit (0: the twin's own draws)")
    parser.add_argument("--drift-control", type=float, default=DRIFT_GAIN,
                        help="gain of the drift control toward the train split's mean course (0: none)")
    parser.add_argument("--volatility", type=float, default=0.0,
                        help="SD of each stay's log volatility factors (SynthesisConfig.volatility; 0: none)")
    parser.add_argument("--screen-pool", type=float, default=1.0,
                        help="stays generated per stay kept by the realism screen (1: no screen)")
    parser.add_argument("--shards", type=int, default=1, help="generate in this many local processes")
    parser.add_argument("--result", type=Path, default=RESULT, help="where the JSON record goes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "organsim-bench-synthesize")
    parser.add_argument("--reuse", action="store_true", help="read the synthetic cohort already in --work-dir")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    train = training_split(args.model, args.cohort)
    test = Cohort.load(args.cohort)
    if test.stays["split"].null_count() == test.stays.height:
        test = test.split(tuple(train.meta["split"]["fractions"]), seed=train.meta["split"]["seed"])
    test = test.subset(split="test")
    synthetic_dir = args.work_dir / "synthetic"
    record_file = args.work_dir / "generation.json"
    if args.reuse:
        synthetic = Cohort.load(synthetic_dir)
        record = json.loads(record_file.read_text())
    else:
        synthetic, record = generate(args, train, started)
        synthetic.save(synthetic_dir)
        atomic_write_text(record_file, json.dumps(record, indent=2) + "\n")
    log(started, f"synthetic cohort: {synthetic.stays.height:,} stays in {synthetic_dir}")
    exports = bench_exports(synthetic, args.work_dir)
    config = ReportConfig(seed=args.seed)
    at = time.perf_counter()
    cpu_at = time.process_time()
    inputs = {"synthetic": str(synthetic_dir), "real_train": f"{args.cohort} (train split)",
              "real_test": f"{args.cohort} (test split)"}
    report = build_synthetic_report(synthetic, train, test, config, inputs=inputs,
                                    progress=lambda label: log(started, f"report: {label}"))
    report_seconds = round(time.perf_counter() - at, 1)
    written = write_synthetic_report(report, args.work_dir / "report")
    document = {
        "benchmark": "synthetic PhysioNet 2019 cohort (organsim synthesize) against the held-out test split",
        "model": str(args.model), "cohort": str(args.cohort),
        **record,
        "exports": exports,
        "report": {"settings": {"seed": config.seed, "threads": config.threads,
                                "match_training_stays": config.match_training_stays},
                   **headline(report.metrics), "files": [str(p) for p in written],
                   "wall_s": report_seconds, "cpu_s": round(time.process_time() - cpu_at, 1)},
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
    }
    atomic_write_text(args.result, json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.result}", flush=True)
    for check in report.metrics["checks"]:
        print(f"{check['check']}: {check['value']} (target {check['target']}, passed {check['passed']})", flush=True)


if __name__ == "__main__":
    main()
