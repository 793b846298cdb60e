"""Benchmark: organ-agent training throughput (tokens and samples per second) per preset and device.

One optimiser step = forward, loss, backward, gradient clipping and AdamW on a batch of windows cut
from the cohort's train split (random reference sets, as in ``organsim train``). A *sample* is one
window of up to ``window_hours`` hours; a *token* is one (agent, hour) position of the decoder, so
a batch of B windows of T hours is ``B * 9 * T`` tokens; *targets* are the observed next-hour values
the loss is computed on. Each figure is the median over ``--steps`` timed steps after ``--warmup``
untimed ones. CPU runs use ``--threads`` torch threads (1 is faster than 2 on a 2-core machine
that other jobs share). Beside wall-clock figures, CPU runs report the process's CPU seconds per
step and the throughputs per CPU second: on a machine shared with other jobs the wall clock
measures the load as much as the model, the CPU time much less so. CUDA runs use bf16 autocast, as training does; they are skipped without a GPU.

Usage::

    .venv/bin/python bench/train.py [--cohort DIR | --archive PATH] [--presets micro,tiny,small]
        [--batch-size 32] [--steps 8] [--warmup 2] [--threads 1] [--out bench/results/train.json]

The default data is the PhysioNet 2019 archive in ../shared (6,000 real stays). Writes a JSON
object: one entry per (preset, device) with steps/s, samples/s, tokens/s, targets/s, parameter
count and the padded batch shape, plus the machine (CPU count, load average, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from organsim.agents.model import sample_reference_sets
from organsim.agents.training import (
    TrainConfig,
    make_accelerator,
    prepare_agents,
    random_windows,
    split_batch,
    window_tensors,
)
from organsim.data import Cohort, read_physionet2019
from organsim.data.windows import HourlyArrays
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "physionet2019" / "training_setB_part.tar.gz"


def time_preset(cohort: Cohort, preset: str, device: str, *, batch_size: int, steps: int, warmup: int, seed: int) -> dict:
    """Median step time of ``preset`` on ``device`` and the throughputs it implies."""
    config = TrainConfig(batch_size=batch_size, seed=seed)
    agents, split = prepare_agents(cohort, preset=preset, train_config=config)
    accelerator = make_accelerator(device)
    arrays = HourlyArrays.from_cohort(split.subset(split="train"))
    rng = np.random.default_rng(seed)
    windows = random_windows(arrays, agents.config.window_hours, rng)
    model = agents.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    n_systems = len(agents.config.systems)
    generator = torch.Generator().manual_seed(seed)
    timings, cpu_timings, samples, tokens, targets = [], [], [], [], []
    for step in range(warmup + steps):
        index = rng.choice(len(windows.positions), size=batch_size, replace=False)
        batch = window_tensors(arrays, windows, index, agents.encoder)
        batch["references"] = sample_reference_sets(batch_size, n_systems, generator)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        inputs, target, target_z, refs = split_batch(batch)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        started, cpu_started = time.perf_counter(), time.process_time()
        with accelerator.autocast():
            out = model(inputs, refs, target, target_z)
        accelerator.backward(out.loss + config.mean_loss_weight * out.squared_error)
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            timings.append(time.perf_counter() - started)
            cpu_timings.append(time.process_time() - cpu_started)
            samples.append(batch_size)
            tokens.append(batch_size * n_systems * inputs.last_ids.shape[1])
            targets.append(int(out.n_targets))
    seconds = statistics.median(timings)
    cpu_seconds = statistics.median(cpu_timings)
    return {
        "preset": preset,
        "device": str(accelerator.device),
        "device_name": torch.cuda.get_device_name() if accelerator.device.type == "cuda" else platform.processor() or "cpu",
        "mixed_precision": accelerator.mixed_precision,
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "batch_size": batch_size,
        "mean_hours_per_window": float(np.mean([t / (batch_size * n_systems) for t in tokens])),
        "median_step_seconds": seconds,
        "steps_per_second": 1 / seconds,
        "samples_per_second": statistics.median(samples) / seconds,
        "tokens_per_second": statistics.median(tokens) / seconds,
        "targets_per_second": statistics.median(targets) / seconds,
        "timed_steps": steps,
        "median_step_cpu_seconds": cpu_seconds,
        "samples_per_cpu_second": statistics.median(samples) / cpu_seconds,
        "tokens_per_cpu_second": statistics.median(tokens) / cpu_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", type=Path, help="A cohort directory (default: ingest --archive).")
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--presets", default="micro,tiny,small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "train.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.cohort is not None:
        cohort, source = Cohort.load(args.cohort), str(args.cohort)
    elif args.archive.is_file():
        cohort, source = read_physionet2019(args.archive), str(args.archive)
    else:
        raise SystemExit(f"no data: give --cohort DIR, or put the PhysioNet archive at {args.archive}")
    load_at_start = os.getloadavg()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        for preset in args.presets.split(","):
            result = time_preset(cohort, preset, device, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup, seed=args.seed)
            results.append(result)
            print(f"{preset:>6} on {result['device']:>6}: {result['samples_per_second']:8.1f} samples/s "
                  f"{result['tokens_per_second']:10.0f} tokens/s ({result['median_step_seconds']:.3f} s/step, "
                  f"{result['median_step_cpu_seconds']:.3f} CPU s/step: {result['tokens_per_cpu_second']:.0f} tokens per CPU second)")
    import transformers

    document = {
        "benchmark": "organ-agent training throughput",
        "data": source,
        "stays": cohort.stays.height,
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
