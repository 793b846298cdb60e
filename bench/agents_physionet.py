"""Benchmark: organ-agent forecast accuracy on real data (PhysioNet 2019) or any cohort, against the baselines.

Ingests the 6,000-stay PhysioNet 2019 archive (or loads ``--cohort``), trains the agents with
``organsim train``'s code on a patient-level train/validation split (70/15/15, seed 0; the test
15% is never seen in training), then scores on the held-out test split the agents with references
``none`` and ``all`` (one model, trained with random reference sets) and the baselines (LOCF, ridge
and GRU, fitted on the same train split): per-system and mean nMSE and min-max MSE at 1, 6 and 24
hours (6 and 24 free-running), exactly as ``organsim evaluate`` does. The targets of issue 4 are
checked and reported: the agents beat every baseline at every horizon, beat LOCF by >= 15% in mean
nMSE at 1 hour, and every system's min-max MSE is below 0.16 at every horizon.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/agents_physionet.py [--archive PATH | --cohort DIR]
        [--preset tiny] [--epochs 8] [--out bench/results/agents_physionet.json] [--work DIR]
        [--model DIR]

``--model DIR`` scores a model directory already trained on the same cohort (its training record is
read from its config.json) instead of training one. Writes the JSON (settings, training history and
time, the full metrics of every forecaster, the target checks, per-system tables of nMSE and
min-max MSE) and leaves the model directory and report (metrics.json, plots) under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.training import TrainConfig, split_as_trained, train_agents
from organsim.catalog import SYSTEMS
from organsim.data import Cohort, read_physionet2019
from organsim.evaluate import BASELINES, evaluate_agents
from organsim.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "physionet2019" / "training_setB_part.tar.gz"
HORIZONS = ("1", "6", "24")


def target_checks(results: dict, primary: str, baselines: list[str]) -> dict:
    """Issue 4's targets, figure by figure, for both reference settings."""
    scored = results["forecasters"]
    checks: dict = {}
    for agent in (name for name in scored if name.startswith("agents_")):
        mean = scored[agent]["mean_nmse"]
        beats = {b: {h: mean[h] < scored[b]["mean_nmse"][h] for h in HORIZONS} for b in baselines}
        gain = 1 - mean["1"] / scored["locf"]["mean_nmse"]["1"] if "locf" in scored else None
        worst_minmax = {
            h: max((v["mse_minmax"][h] for v in scored[agent]["systems"].values() if v["mse_minmax"][h] is not None), default=None)
            for h in HORIZONS
        }
        checks[agent] = {
            "beats_every_baseline_at_every_horizon": all(all(v.values()) for v in beats.values()),
            "beats": beats,
            "gain_over_locf_at_1h": gain,
            "gain_over_locf_at_least_15_percent": gain is not None and gain >= 0.15,
            "worst_system_mse_minmax": worst_minmax,
            "every_system_mse_minmax_below_0_16": all(v is not None and v < 0.16 for v in worst_minmax.values()),
        }
    checks["primary"] = primary
    return checks


def table(results: dict, metric: str = "nmse") -> str:
    """A plain-text per-system table of ``metric`` (``"nmse"`` or ``"mse_minmax"``; rows: forecaster x horizon)."""
    systems = list(SYSTEMS)
    lines = [f"{metric:<14}  h  " + " ".join(f"{s[:6]:>7}" for s in systems) + "     mean"]
    for name, figures in results["forecasters"].items():
        for h in HORIZONS:
            cells = [figures["systems"][s][metric][h] for s in systems]
            text = " ".join("      -" if c is None else f"{c:7.3f}" for c in cells)
            lines.append(f"{name:<14} {h:>2}  {text}  {figures[f'mean_{metric}'][h]:7.3f}")
    return "\n".join(lines)


def markdown_table(results: dict, metric: str = "nmse") -> str:
    """The same figures as a markdown table (README-ready); systems without a scored variable are left out."""
    scored = results["forecasters"]
    systems = [s for s in SYSTEMS if any(f["systems"][s][metric][h] is not None for f in scored.values() for h in HORIZONS)]
    lines = ["| forecaster | h | " + " | ".join(systems) + " | mean |", "|" + "---|" * (len(systems) + 3)]
    for name, figures in scored.items():
        for h in HORIZONS:
            cells = [figures["systems"][s][metric][h] for s in systems]
            text = " | ".join("-" if c is None else f"{c:.3f}" for c in cells)
            lines.append(f"| {name} | {h} | {text} | {figures[f'mean_{metric}'][h]:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Path:
    """Run the benchmark; returns the JSON path written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--cohort", type=Path, help="A cohort directory instead of the archive (e.g. from `organsim generate`).")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    parser.add_argument("--mean-loss-weight", type=float, default=TrainConfig.mean_loss_weight)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--model", type=Path, help="Score this model directory (trained on the same cohort) instead of training.")
    parser.add_argument("--backbone", default="shared")
    parser.add_argument("--baselines", default=",".join(BASELINES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, help="Where the model and report go (default: a temporary directory).")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "agents_physionet.json")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="organsim-agents-"))
    if args.cohort is not None:
        cohort, source = Cohort.load(args.cohort), str(args.cohort)
    elif args.archive.is_file():
        cohort, source = read_physionet2019(args.archive), str(args.archive)
    else:
        raise SystemExit(f"no data: give --cohort DIR, or put the PhysioNet archive at {args.archive}")
    load_at_start = os.getloadavg()
    if args.model is None:
        config = TrainConfig(max_epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                             learning_rate=args.learning_rate, mean_loss_weight=args.mean_loss_weight, seed=args.seed)
        started = time.perf_counter()
        trained = train_agents(cohort, work / "model", preset=args.preset, train_config=config,
                               agent_fields={"backbone_sharing": args.backbone, "dropout": args.dropout}, device=args.device,
                               on_epoch=lambda r: print(f"epoch {r.epoch}: train {r.train_loss:.4f} validation {r.validation_loss:.4f} ({r.seconds:.0f} s)", flush=True))
        training = {"seconds": time.perf_counter() - started, "best_epoch": trained.best_epoch, "stopped_early": trained.stopped_early,
                    "parameters": trained.n_parameters, "history": [vars(r) for r in trained.history]}
        model_dir = work / "model"
    else:
        model_dir = args.model
    agents = TrainedAgents.load(model_dir)
    if args.model is not None:
        config = TrainConfig.from_dict(agents.training["config"])
        state = agents.training["state"]
        training = {"seconds": sum(r["seconds"] for r in state["history"]), "best_epoch": state["best_epoch"],
                    "stopped_early": state["stopped_early"], "parameters": agents.training["n_parameters"], "history": state["history"],
                    "model_dir": str(args.model)}
    baselines = [b for b in args.baselines.split(",") if b]
    started = time.perf_counter()
    results, _ = evaluate_agents(agents, split_as_trained(cohort, agents), work / "report", baselines=baselines,
                                 device=args.device, seed=args.seed)
    evaluate_seconds = time.perf_counter() - started
    checks = target_checks(results, "agents_all", baselines)
    text = table(results)
    print(text)
    print(table(results, "mse_minmax"))
    print(json.dumps(checks, indent=1))
    import transformers

    document = {
        "benchmark": "organ-agent forecast accuracy (nMSE on z-scores, observed targets; 6 and 24 h free-running)",
        "data": source,
        "stays": cohort.stays.height,
        "preset": agents.config.preset,
        "agent_config": {k: v for k, v in agents.config.to_dict().items() if k not in ("variables", "variable_systems", "bin_counts")},
        "train_config": config.to_dict(),
        "training": training,
        "evaluate_seconds": evaluate_seconds,
        "checks": checks,
        "table": text.splitlines(),
        "table_mse_minmax": table(results, "mse_minmax").splitlines(),
        "markdown": {"nmse": markdown_table(results), "mse_minmax": markdown_table(results, "mse_minmax")},
        "results": results,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_average_at_start": load_at_start,
                    "load_average_at_end": os.getloadavg(), "python": platform.python_version(), "torch": torch.__version__,
                    "transformers": transformers.__version__, "cuda": torch.cuda.is_available()},
        "work_dir": str(work),
    }
    atomic_write_text(args.out, json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.out}; model and report in {work}")
    return args.out


if __name__ == "__main__":
    main()
