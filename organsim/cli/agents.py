"""``organsim train`` and ``organsim evaluate``: fit the organ agents on a cohort and score them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.model import BACKBONE_SHARING, PRESETS, REFERENCE_MODES
from organsim.agents.training import TRAIN_REFERENCES, TrainConfig, split_as_trained, train_agents
from organsim.cli.app import app, console, friendly_errors
from organsim.data import Cohort
from organsim.evaluate.accuracy import summary_table
from organsim.evaluate.forecast_report import BASELINES, evaluate_agents
from organsim.evaluate.twin_report import twin_summary
from organsim.twin import PatientTwin
from organsim.utils.io import atomic_write_text


@app.command()
@friendly_errors
def train(
    cohort: Annotated[Path, typer.Option("--cohort", help="Canonical cohort directory (split by patient here if it is not split).")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write (config.json, model.safetensors, last/).")],
    preset: Annotated[str, typer.Option(help=f"Backbone size: {', '.join(PRESETS)}.")] = "tiny",
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    references: Annotated[str, typer.Option(help=f"Reference systems during training: {', '.join(TRAIN_REFERENCES)}.")] = "random",
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from MODEL_DIR/last (same settings).")] = False,
    epochs: Annotated[int, typer.Option(help="Most epochs.")] = TrainConfig.max_epochs,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation loss.")] = TrainConfig.patience,
    batch_size: Annotated[int, typer.Option(help="Windows per step.")] = TrainConfig.batch_size,
    learning_rate: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = TrainConfig.learning_rate,
    n_bins: Annotated[int, typer.Option(help="Value bins per variable (before clinical cut-offs are added).")] = TrainConfig.n_bins,
    mean_loss_weight: Annotated[float, typer.Option(
        help="Weight of the predictive mean's squared error (z units) beside the bins' cross-entropy (0: cross-entropy only).")
    ] = TrainConfig.mean_loss_weight,
    backbone: Annotated[str, typer.Option(help=f"One decoder for all agents or one each: {', '.join(BACKBONE_SHARING)}.")] = "shared",
    base_model: Annotated[Path | None, typer.Option("--base-model", help="Local causal-LM checkpoint to use as the decoder.")] = None,
    lora_r: Annotated[int, typer.Option(help="LoRA rank on the base model (0 = fine-tune all its weights).")] = 0,
    scheduled_sampling: Annotated[float, typer.Option(
        "--scheduled-sampling", min=0.0, max=1.0,
        help="Chance per window and hour that the measured vital signs are read as the model's own sampled forecast "
             "(scheduled sampling; 0: teacher forcing only). See organsim.agents.scheduled_sampling for what it does on PhysioNet.")
    ] = TrainConfig.scheduled_sampling,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, windows and reference sets.")] = 0,
) -> None:
    """Train the nine organ agents (SFT) and write MODEL_DIR."""
    data = Cohort.load(cohort)
    config = TrainConfig(
        max_epochs=epochs, patience=patience, batch_size=batch_size, learning_rate=learning_rate,
        references=references, n_bins=n_bins, mean_loss_weight=mean_loss_weight, seed=seed,
        scheduled_sampling=scheduled_sampling,
    )
    fields: dict[str, object] = {"backbone_sharing": backbone}
    if base_model is not None:
        fields.update(base_model=str(base_model.resolve()), lora_r=lora_r)
    elif lora_r:
        raise ValueError("--lora-r adapts a pretrained decoder: give --base-model DIR as well")
    started = time.perf_counter()
    result = train_agents(data, out, preset=preset, train_config=config, agent_fields=fields, device=device, resume=resume)
    table = Table(title=f"organ agents trained: {out}")
    table.add_column("epoch", justify="right")
    table.add_column("train loss", justify="right")
    table.add_column("validation loss", justify="right")
    table.add_column("seconds", justify="right")
    for record in result.history:
        mark = " *" if record.epoch == result.best_epoch else ""
        table.add_row(f"{record.epoch}{mark}", f"{record.train_loss:.4f}", f"{record.validation_loss:.4f}", f"{record.seconds:.0f}")
    console.print(table)
    console.print(
        f"{result.n_parameters:,} trainable parameters; {result.n_train_stays:,} train / {result.n_validation_stays:,} validation stays; "
        f"best epoch {result.best_epoch} (* above){' after early stopping' if result.stopped_early else ''}; "
        f"{time.perf_counter() - started:.0f} s this run.\n"
        f"Wrote {out}/config.json, {out}/model.safetensors (best) and {out}/last/ (for --resume)."
    )


@app.command()
@friendly_errors
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="Model directory written by `organsim train` (and `organsim coordinate`).")],
    cohort: Annotated[Path, typer.Option("--cohort", help="Cohort directory; its test split is scored.")],
    out: Annotated[Path, typer.Option("--out", help="Report directory (metrics.json, twin.json, plots).")],
    references: Annotated[str, typer.Option(help=f"Reference setting of the primary agents: {', '.join(REFERENCE_MODES)}.")] = "all",
    baselines: Annotated[str, typer.Option(help=f"Comma-separated baselines fitted on the train split: {', '.join(BASELINES)} (empty: none).")] = ",".join(BASELINES),
    twin: Annotated[bool, typer.Option("--twin/--no-twin", help="Also score the coordinated twin (learned references + error correction) and write its report.")] = True,
    per_stay: Annotated[int, typer.Option(help="Forecast start hours per test stay and horizon.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of start hours, baseline training and the twin's sampled futures.")] = 0,
) -> None:
    """Score the agents (references none and all), the coordinated twin and the baselines on the test split."""
    if references not in REFERENCE_MODES:
        raise ValueError(f"--references must be one of {REFERENCE_MODES}, got {references!r}")
    chosen = [b for b in (x.strip() for x in baselines.split(",")) if b]
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {BASELINES}")
    coordinated = PatientTwin.load(model, device=device) if twin else None
    agents = coordinated.agents if coordinated is not None else TrainedAgents.load(model)
    data = split_as_trained(Cohort.load(cohort), agents)
    results, written = evaluate_agents(agents, data, out, references=references, baselines=chosen, per_stay=per_stay,
                                       device=device, seed=seed, twin=coordinated)
    written.append(atomic_write_text(out / "model.json", json.dumps({"model_dir": str(model.resolve()), "training": agents.training}, indent=2) + "\n"))
    console.print(summary_table(results))
    if "twin" in results:
        console.print(twin_summary(results["twin"]))
    console.print(f"Scored {results['settings']['n_stays']:,} test stays. Wrote " + ", ".join(str(p) for p in written) + ".")
