"""Benchmark: simulated patient-hours per second of the coordinated twin against a naive loop.

Both simulate the same problems with the same model, all nine agents, the reference-selection
policy deciding every hour and the error corrector on (draws fed back):

- ``twin``: :meth:`organsim.twin.PatientTwin.rollout`: every (stay, sample) row in one batch, one
  incremental decoder step per hour with the key/value cache;
- ``batched_no_cache``: the same batch, re-encoding the whole window every hour
  (``use_cache=False``): what the cache alone buys;
- ``naive``: one (stay, sample) at a time, re-encoding the whole window every hour, as a loop that
  calls the agents' ``generate`` once per hour without caching or batching would (the nine agents
  still share one forward pass per hour, which favours the naive loop). It is timed on
  ``--naive-rows`` rows, and its rate (patient-hours per second) compared.

A patient-hour is one simulated hour of one (stay, sample). Each figure is the best of ``--repeats``
runs (the machine is shared; the best run is the least disturbed). The model is the ``--preset``
architecture with tokenizers fitted on the cohort and untrained weights (speed does not depend on
training), or ``--model DIR``; without a saved policy a freshly initialised one decides (same cost).
CPU runs use ``--threads`` torch threads; CUDA runs (bf16 autocast) run when a GPU is present.

Usage::

    .venv/bin/python bench/simulate.py [--cohort DIR | --model DIR --cohort DIR] [--stays 32] [--samples 16]
        [--horizon 24] [--context 24] [--naive-rows 8] [--repeats 3] [--threads 1] [--out bench/results/simulate.json]

Without ``--cohort`` an engine cohort of 300 stays x 72 hours is generated (seed 0); problems come from its test split.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.training import TrainConfig, prepare_agents
from organsim.data import Cohort
from organsim.data.windows import choose_starts, forecast_batch
from organsim.physiology import EngineConfig, PhysiologyEngine
from organsim.twin import ErrorCorrector, PatientTwin, ReferencePolicy, ReferencePolicyConfig
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]


def best_seconds(run, repeats: int) -> float:
    """The shortest wall-clock time of ``repeats`` calls of ``run``."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(twin: PatientTwin, batch, *, samples: int, horizon: int, naive_rows: int, repeats: int) -> dict:
    """Patient-hours per second of the cached batched rollout, the batched re-encoding one and the naive loop."""
    options = {"references": "policy", "correct": True, "seed": 0}
    twin.rollout(batch.select(np.arange(min(2, batch.size))), 2, **options)  # warm-up (allocations, lazy imports)
    rows = batch.size * samples
    cached = best_seconds(lambda: twin.rollout(batch, horizon, n_samples=samples, **options), repeats)
    reencoded = best_seconds(lambda: twin.rollout(batch, horizon, n_samples=samples, use_cache=False, **options), repeats)
    naive_problems = np.arange(naive_rows) % batch.size

    def naive() -> None:
        for problem in naive_problems:  # one (stay, sample) per call: no batching, no cache
            twin.rollout(batch.select(np.array([problem])), horizon, n_samples=1, use_cache=False, **options)

    naive_seconds = best_seconds(naive, repeats)
    rates = {
        "twin": rows * horizon / cached,
        "batched_no_cache": rows * horizon / reencoded,
        "naive": naive_rows * horizon / naive_seconds,
    }
    return {
        "device": twin.device,
        "rows": rows,
        "naive_rows": naive_rows,
        "seconds": {"twin": cached, "batched_no_cache": reencoded, "naive": naive_seconds},
        "patient_hours_per_second": rates,
        "speedup_vs_naive": rates["twin"] / rates["naive"],
        "speedup_of_the_cache_alone": rates["twin"] / rates["batched_no_cache"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", type=Path, help="A cohort directory (default: a generated engine cohort).")
    parser.add_argument("--model", type=Path, help="A model directory (default: untrained --preset agents).")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--stays", type=int, default=32)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--horizon", type=int, default=24)
    parser.add_argument("--context", type=int, default=24)
    parser.add_argument("--naive-rows", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "simulate.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.cohort is not None:
        cohort, source = Cohort.load(args.cohort), str(args.cohort)
    else:
        cohort, source = PhysiologyEngine(EngineConfig(n_patients=300, hours=72, seed=0)).generate(), "engine 300 x 72 h, seed 0"
    if args.model is not None:
        agents, model_source = TrainedAgents.load(args.model), str(args.model)
        cohort = cohort if cohort.stays["split"].null_count() < cohort.stays.height else cohort.split((0.7, 0.15, 0.15), seed=0)
    else:
        agents, cohort = prepare_agents(cohort, preset=args.preset, train_config=TrainConfig(seed=0))
        model_source = f"untrained {args.preset} preset"
    test = cohort.subset(split="test") if cohort.subset(split="test").stays.height else cohort
    starts = choose_starts(test, horizon=args.horizon, per_stay=1, min_context=args.context, seed=0).head(args.stays)
    if starts.height < args.stays:
        raise SystemExit(f"only {starts.height} stays have {args.context} + {args.horizon} hours; lower --stays or use a longer cohort")
    batch = forecast_batch(test, starts, context_hours=args.context, horizon=args.horizon)
    load_at_start = os.getloadavg()
    results = []
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        twin = PatientTwin(agents, corrector=ErrorCorrector.from_catalog(cohort.catalog), device=device, batch_size=args.stays * args.samples)
        if args.model is not None:
            twin = PatientTwin.load(args.model, device=device, batch_size=args.stays * args.samples)
        if twin.policy is None:
            torch.manual_seed(0)
            twin.policy = ReferencePolicy(ReferencePolicyConfig(systems=agents.config.systems)).to(twin.device)
        result = measure(twin, batch, samples=args.samples, horizon=args.horizon, naive_rows=args.naive_rows, repeats=args.repeats)
        results.append(result)
        rates = result["patient_hours_per_second"]
        print(f"{result['device']:>6}: twin {rates['twin']:9.1f} patient-h/s, batched without cache {rates['batched_no_cache']:8.1f}, "
              f"naive {rates['naive']:7.1f}; speed-up {result['speedup_vs_naive']:.1f}x (cache alone {result['speedup_of_the_cache_alone']:.1f}x)")
    import transformers

    document = {
        "benchmark": "coordinated twin rollout throughput (patient-hours per second)",
        "data": source,
        "model": model_source,
        "preset": agents.config.preset,
        "stays": args.stays,
        "samples_per_stay": args.samples,
        "horizon_hours": args.horizon,
        "context_hours": args.context,
        "references": "policy (decided every hour)",
        "error_correction": True,
        "results": results,
        "cuda_available": torch.cuda.is_available(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    atomic_write_text(args.out, json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
