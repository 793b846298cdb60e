"""Benchmark: the twin's counterfactuals against the physiology engine's ground truth (issue #8's "Show").

On an engine cohort with confounded treatment (the engine's clinician treats the sicker patients),
with a model trained on its train split (``organsim train``), this runs
:func:`organsim.counterfactual.cf_benchmark` on the test stays (the oracle: same patient, same
noise, other treatment) for the coordinated twin with the overlap adjustment, the same twin without
it, the treatment-blind twin and, as the reference a perfect simulator of the physiology reaches, the
engine itself with its noise drawn afresh from the decision hour (``EngineOracle(fresh_noise=True)``:
the patient's true physiology, not its noise), and then the matched comparison for a few test
stays. It writes:

- ``metrics.json`` of the benchmark under ``--work`` (every system, horizon, contrast and outcome);
- the headline figures to ``--out`` (default ``bench/results/counterfactual.json``): per simulator,
  the nRMSE by horizon (mean over the nine systems), the 90 % band coverage, the sign accuracy and
  MAE of the effect on SOFA at 24 h and MAP at 6 h per contrast and pooled over the contrasts (sign
  accuracy over the cases with a real effect, agreement on negligible ones beside it; see
  :func:`organsim.counterfactual.effect_metrics`), and the issue's targets checked (sign accuracy
  >= 0.8 on SOFA 24 h and MAP 6 h, coverage >= 0.8, the twin's nRMSE below the treatment-blind
  twin's at every horizon); the matched comparison's APACHE II difference
  (simulated minus matched, 24 h) with its 95 % bootstrap interval per stay and strategy; timings.

Usage::

    .venv/bin/python bench/counterfactual.py --model MODEL_DIR --cohort ENGINE_DIR [--stays 40] [--samples 20]
        [--horizon 48] [--decision-hours 6,12,24] [--match-stays 4] [--work DIR] [--out bench/results/counterfactual.json]

The recorded ``bench/results/counterfactual.json`` came from::

    organsim generate --patients 12000 --hours 72 --seed 21 --septic-fraction 0.5 --out ENGINE_DIR
    organsim train --cohort ENGINE_DIR --out RAW_MODEL --preset tiny --epochs 12 --batch-size 32 \
        --learning-rate 0.002 --patience 3 --device cpu          # stopped after epoch 9 (validation 2.3321, best)
    OMP_NUM_THREADS=1 organsim calibrate --model RAW_MODEL --cohort ENGINE_DIR --out MODEL_DIR --cases 200 --samples 60 --horizon 48
    python bench/counterfactual.py --model MODEL_DIR --cohort ENGINE_DIR --stays 60 --samples 60 \
        --horizon 48 --decision-hours 8,16 --match-stays 4 --threads 2

2064 s with two torch threads on an otherwise idle machine (the engine reference's 60 futures per
case and strategy about a third of it). With 30 futures (bands calibrated for 30) the same protocol
gave the twin pooled signs 0.78 (SOFA 24 h, 35 of 45) and 0.92 (MAP 6 h), the reference 0.82 and
0.95, in 1317 s with one thread. Training was stopped by hand after epoch 9 of 12 (each epoch took 90-140 s alone, up to 740 s
beside other jobs; the validation loss had moved 0.0015 in the last epoch). The same model with
bands calibrated for 10 samples and 10 futures per case gave effect signs (pooled over the
contrasts) 0.73 on SOFA at 24 h and 0.88 on MAP at 6 h against 0.76 and 0.93 with 30 (both before
the twin's strategies shared their random numbers through the corrector's redraws): the sign of
small effects needs enough futures.

The band calibration is fitted for bands read off ``--samples`` futures: calibrate with the number
of samples the benchmark (or the what-if) uses. With one torch thread the benchmark ran 5x faster
than with two on this shared 2-core machine (thread contention with other jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from organsim.agents.training import split_as_trained
from organsim.counterfactual import (
    BENCHMARK_HORIZONS,
    DEFAULT_CONTRASTS,
    EngineOracle,
    TwinSimulator,
    behaviour_policy_for,
    cf_benchmark,
    choose_cases,
    load_strategy,
    what_if,
)
from organsim.data import Cohort
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
TARGET_SIGN_ACCURACY = 0.8
TARGET_COVERAGE = 0.8
HEADLINE_OUTCOMES = ("sofa_at_24h", "map_at_6h")
MATCH_STRATEGIES = ("observed_care", "early_norepinephrine", "restrictive_fluids")


def headline(metrics: dict[str, Any], horizons: list[str]) -> dict[str, Any]:
    """nRMSE by horizon (mean over systems), coverage and the headline effects of one simulator's metrics."""
    nrmse = {}
    for h in horizons:
        values = [by_h[h] for by_h in metrics["nrmse"].values() if by_h.get(h) is not None]
        nrmse[h] = float(np.mean(values)) if values else None
    effects = {contrast: {o: outcomes[o] for o in HEADLINE_OUTCOMES if o in outcomes} for contrast, outcomes in metrics["effects"].items()}
    def mean_of(key: str) -> dict[str, float | None]:
        out = {}
        for o in HEADLINE_OUTCOMES:
            values = [e[o][key] for e in effects.values() if o in e and e[o][key] is not None]
            out[o] = float(np.mean(values)) if values else None
        return out

    def pooled_sign(o: str) -> float | None:
        """Sign accuracy over the real effects of every contrast together (each case counts once)."""
        rows = [e[o] for e in effects.values() if o in e and e[o]["n_effect"]]
        total = sum(r["n_effect"] for r in rows)
        return float(sum(r["sign_accuracy"] * r["n_effect"] for r in rows) / total) if total else None

    return {"nrmse_mean_over_systems": nrmse, "coverage_90": metrics["coverage_90"]["all"],
            "sign_accuracy_pooled": {o: pooled_sign(o) for o in HEADLINE_OUTCOMES},
            "sign_accuracy_mean_over_contrasts": mean_of("sign_accuracy"),
            "null_agreement_mean_over_contrasts": mean_of("null_agreement"),
            "three_way_agreement_mean_over_contrasts": mean_of("three_way_agreement"),
            "effects": effects}


def matched(simulator: TwinSimulator, cohort: Cohort, *, n_stays: int, decision_hour: int, samples: int, seed: int) -> list[dict[str, Any]]:
    """The matched comparison's APACHE II and SOFA differences at 24 h for ``n_stays`` septic test stays."""
    test = cohort.subset(split="test")
    cases = choose_cases(test, n_stays=n_stays, decision_hours=[decision_hour], horizon=24, seed=seed, septic_share=1.0)
    strategies = [load_strategy(name) for name in MATCH_STRATEGIES]
    train = cohort.subset(split="train")
    rows = []
    for stay_id in cases["stay_id"].to_list():
        result = what_if(simulator, cohort, stay_id, decision_hour, strategies, horizon=24, n_samples=samples, seed=seed,
                         match_cohort=train)
        for name, outcome in result.outcomes.items():
            comparison = outcome.matched.comparison.filter(pl.col("horizon_hours") == 24)
            for row in comparison.filter(pl.col("outcome").is_in(["apache_ii", "sofa"])).iter_rows(named=True):
                rows.append({"stay_id": stay_id, "strategy": name, **{k: row[k] for k in (
                    "outcome", "n_matched", "matched_mean", "simulated_mean", "difference", "ci_low", "ci_high")}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--stays", type=int, default=40)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=48)
    parser.add_argument("--decision-hours", default="6,12,24")
    parser.add_argument("--match-stays", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-engine-reference", action="store_true",
                        help="leave out the engine with fresh noise (the reference a perfect simulator of the physiology reaches)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/organsim_cf_bench"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "counterfactual.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    started = time.perf_counter()
    base = TwinSimulator.load(args.model, None, device="cpu", overlap_adjustment=False)
    cohort = split_as_trained(Cohort.load(args.cohort), base.twin.agents)
    behaviour_started = time.perf_counter()
    behaviour = behaviour_policy_for(cohort, args.work / "behaviour")
    behaviour_seconds = time.perf_counter() - behaviour_started
    twin = TwinSimulator(base.twin, behaviour)
    strategies = [load_strategy(name) for name in sorted({n for pair in DEFAULT_CONTRASTS for n in pair})]
    hours = [int(h) for h in args.decision_hours.split(",")]
    bench_started = time.perf_counter()
    test = cohort.subset(split="test")
    simulators = list(twin.variants())
    if not args.no_engine_reference:
        simulators.append(EngineOracle.from_cohort(test, fresh_noise=True))
    report = cf_benchmark(test, simulators, strategies, contrasts=DEFAULT_CONTRASTS, n_stays=args.stays,
                          decision_hours=hours, horizon=args.horizon, n_samples=args.samples, seed=args.seed, out=args.work / "benchmark",
                          progress=lambda done, total: print(f"\r{done}/{total} case-runs", end="", flush=True))
    print()
    bench_seconds = time.perf_counter() - bench_started
    horizons = [str(h) for h in BENCHMARK_HORIZONS if h <= args.horizon]
    figures = {name: headline(metrics, horizons) for name, metrics in report["simulators"].items()}
    twin_figures, blind = figures["twin"], figures["twin_treatment_blind"]
    targets = {
        **{f"sign_accuracy_{o}_at_least_{TARGET_SIGN_ACCURACY}": {
            "pooled": twin_figures["sign_accuracy_pooled"][o] is not None and twin_figures["sign_accuracy_pooled"][o] >= TARGET_SIGN_ACCURACY,
            **{contrast: None if effects[o]["sign_accuracy"] is None else effects[o]["sign_accuracy"] >= TARGET_SIGN_ACCURACY
               for contrast, effects in twin_figures["effects"].items()}}
           for o in HEADLINE_OUTCOMES},
        f"coverage_90_at_least_{TARGET_COVERAGE}": twin_figures["coverage_90"] >= TARGET_COVERAGE,
        "nrmse_below_treatment_blind_at_every_horizon": all(
            twin_figures["nrmse_mean_over_systems"][h] < blind["nrmse_mean_over_systems"][h] for h in horizons),
    }
    match_started = time.perf_counter()
    matched_rows = matched(twin, cohort, n_stays=args.match_stays, decision_hour=12, samples=args.samples, seed=args.seed)
    match_seconds = time.perf_counter() - match_started
    apache = [r for r in matched_rows if r["outcome"] == "apache_ii" and r["difference"] is not None]
    result = {
        "benchmark": "counterfactual",
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "model": {"dir": str(args.model), "architecture": {k: getattr(base.twin.agents.config, k) for k in
                                                           ("hidden_size", "num_layers", "context_hours")},
                  "training": base.twin.agents.training.get("state", {}).get("history", []),
                  "coordinated": base.twin.coordinated},
        "cohort": {"dir": str(args.cohort), "provenance": cohort.meta.get("provenance"), "n_stays": cohort.stays.height,
                   "n_test_stays": int((cohort.stays["split"] == "test").sum())},
        "cases": len(report["cases"]), "strategies": report["strategies"], "contrasts": report["contrasts"],
        "horizon": args.horizon, "samples": args.samples, "seed": args.seed, "truth": report["truth"],
        "simulators": figures,
        "targets_met": targets,
        "matched_comparison": {"decision_hour": 12, "horizon_hours": 24, "rows": matched_rows,
                               "apache_ii_difference_mean": float(np.mean([r["difference"] for r in apache])) if apache else None},
        "seconds": {"behaviour_policy": round(behaviour_seconds, 1), "benchmark": round(bench_seconds, 1),
                    "matched": round(match_seconds, 1), "total": round(time.perf_counter() - started, 1)},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                    "load_average_at_start": [round(x, 2) for x in load]},
        "metrics_json": str(args.work / "benchmark" / "metrics.json"),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    for name, f in figures.items():
        print(f"{name:28s} nRMSE {f['nrmse_mean_over_systems']} coverage {f['coverage_90']:.3f} sign (pooled) {f['sign_accuracy_pooled']} "
              f"null agreement {f['null_agreement_mean_over_contrasts']}")
    print(f"targets: {json.dumps(targets)}")
    print(f"matched APACHE II difference (simulated - matched) mean {result['matched_comparison']['apache_ii_difference_mean']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
