"""Supervised fine-tuning (SFT) of the organ agents on a cohort.

The cohort is split by patient (``Cohort.split``, stratified on sepsis) unless it already is. On
the train split only: the value tokenizer, the change tokenizer (changes between consecutive
measurements) and the normaliser are fitted, every head starts at its bins' training frequencies,
and the per-variable loss weights are set. The model learns next-hour bins on train windows and
stops early on the validation loss; the test split is never read.

Each epoch cuts ``ceil((hours - 1) / window_hours)`` windows of up to ``window_hours`` hours from
every training stay at seeded random offsets, groups windows of similar length into batches (less
padding) and shuffles the batches. The loss is the weighted cross-entropy over bins of every
observed next-hour value (unobserved targets do not count; a target's weight falls with how often
its variable is measured, ``loss_balance``) plus ``mean_loss_weight`` times the weighted squared
error of the predictive mean in z units (the forecasts are scored on the mean; cross-entropy alone
leaves it to the calibration of dozens of bins). Reference sets are sampled per window and agent
(``references="random"``: none, all, or a random subset, so one model serves any subset) or fixed.
With ``scheduled_sampling`` p > 0, a first pass without gradients draws the model's own forecast
of every hour and, with probability p per window and hour, the measured vital signs (the
fed-back variables) are read as that draw instead (:mod:`organsim.agents.scheduled_sampling`),
so training sees what free-running rollouts feed back.

Optimisation: AdamW, linear warmup then cosine decay (``transformers.get_cosine_schedule_with_warmup``),
gradient-norm clipping, bf16 autocast on CUDA, through :class:`accelerate.Accelerator` so
``accelerate launch`` runs the same code on several GPUs. After every epoch the model directory is
rewritten atomically (best weights + ``last/`` for ``resume``). Everything random is drawn from
generators seeded by (seed, epoch), so an interrupted run resumed from ``last/`` ends with exactly
the weights of an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from accelerate import Accelerator
from transformers import get_cosine_schedule_with_warmup

from organsim.agents.checkpoint import (
    LAST_DIR,
    TrainedAgents,
    read_config,
    read_last_state,
    weights_to_save,
    write_model_dir,
)
from organsim.agents.features import FeatureEncoder, carry_forward
from organsim.agents.model import (
    AgentConfig,
    HourInputs,
    OrganAgents,
    base_model_hidden_size,
    count_parameters,
    reference_sets,
    sample_reference_sets,
)
from organsim.agents.scheduled_sampling import sampled_input_values
from organsim.data.cohort import Cohort
from organsim.data.normalize import Normaliser
from organsim.data.tokenizers import BIN_METHODS, BinTokenizer, ChangeTokenizer
from organsim.data.windows import STARTS_SCHEMA, HourlyArrays
from organsim.utils.devices import resolve_device
from organsim.utils.progress import progress_bar

TRAIN_REFERENCES = ("random", "none", "all")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of :func:`train_agents` (stored in config.json under ``training.config``).

    Attributes
    ----------
    max_epochs
        Upper bound on epochs.
    patience
        Stop after this many epochs without a lower validation loss.
    batch_size
        Windows per optimiser step (per process under ``accelerate launch``).
    learning_rate
        Peak AdamW learning rate.
    weight_decay
        AdamW weight decay.
    warmup_fraction
        Share of all steps spent warming the learning rate up linearly from 0.
    grad_clip
        Largest gradient norm.
    references
        ``"random"`` (per window and agent: none, all or a random subset), ``"none"`` or ``"all"``.
    n_bins, bin_method
        Value tokenizer settings (see :class:`~organsim.data.tokenizers.BinTokenizer`).
    n_change_bins
        Change bins per variable (see :class:`~organsim.data.tokenizers.ChangeTokenizer`).
    loss_balance
        Exponent of the per-variable loss weights (:func:`balanced_loss_weights`): 0 = every
        target alike, 1 = every variable alike.
    mean_loss_weight
        Weight of the predictive mean's squared error (z units) beside the cross-entropy in the
        training and validation loss (0 = cross-entropy only).
    split_fractions, split_seed
        Train/validation/test fractions and seed used when the cohort has no split yet.
    seed
        Seed of initialisation, windows, reference sets and dropout.
    bucket_batches
        Sort windows by length within groups of this many batches before batching.
    scheduled_sampling
        Chance, per training window and hour, that the hour's measured fed-back variables (the
        vital signs a rollout feeds back) are read as the model's own sampled forecast instead of
        their real values (:mod:`organsim.agents.scheduled_sampling`); 0 = teacher forcing only
        (training as without it, bit for bit). The validation loss stays teacher-forced.
    """

    max_epochs: int = 20
    patience: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    references: str = "random"
    n_bins: int = 64
    n_change_bins: int = 32
    loss_balance: float = 0.5
    mean_loss_weight: float = 1.0
    bin_method: str = "quantile"
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    seed: int = 0
    bucket_batches: int = 50
    scheduled_sampling: float = 0.0

    def __post_init__(self) -> None:
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("max_epochs, patience and batch_size must be >= 1")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.grad_clip <= 0:
            raise ValueError("learning_rate and grad_clip must be > 0 and weight_decay >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.references not in TRAIN_REFERENCES:
            raise ValueError(f"references must be one of {TRAIN_REFERENCES}, got {self.references!r}")
        if self.bin_method not in BIN_METHODS:
            raise ValueError(f"bin_method must be one of {BIN_METHODS}, got {self.bin_method!r}")
        if self.mean_loss_weight < 0:
            raise ValueError(f"mean_loss_weight must be >= 0, got {self.mean_loss_weight}")
        if not 0 <= self.loss_balance <= 1:
            raise ValueError(f"loss_balance must be in [0, 1], got {self.loss_balance}")
        if self.n_bins < 2 or self.n_change_bins < 2:
            raise ValueError("n_bins and n_change_bins must be >= 2")
        if self.bucket_batches < 1:
            raise ValueError("bucket_batches must be >= 1")
        if not 0 <= self.scheduled_sampling <= 1:
            raise ValueError(f"scheduled_sampling must be in [0, 1], got {self.scheduled_sampling}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class EpochRecord:
    """One line of the training history."""

    epoch: int
    train_loss: float
    validation_loss: float
    steps: int
    seconds: float
    learning_rate: float


@dataclass
class TrainResult:
    """What :func:`train_agents` did.

    Attributes
    ----------
    model_dir
        Where the model directory was written.
    history
        One record per epoch (including epochs from before a resume).
    best_epoch, best_validation_loss
        The epoch whose weights are in model.safetensors, and its validation loss.
    stopped_early
        True when patience ran out before ``max_epochs``.
    n_parameters
        Trainable parameters.
    n_train_stays, n_validation_stays
        Stays per split.
    """

    model_dir: Path
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_validation_loss: float = math.inf
    stopped_early: bool = False
    n_parameters: int = 0
    n_train_stays: int = 0
    n_validation_stays: int = 0


# ============================================================================ windows
@dataclass(frozen=True)
class Windows:
    """Training windows: ``positions`` into an :class:`HourlyArrays`, first hour and length of each."""

    positions: np.ndarray  # (N,) int64
    start_hours: np.ndarray  # (N,) int64
    lengths: np.ndarray  # (N,) int64, input hours (each with its next hour as target)


def random_windows(arrays: HourlyArrays, window_hours: int, rng: np.random.Generator) -> Windows:
    """``ceil((n - 1) / window_hours)`` windows per stay of n hours, at uniform random offsets."""
    spans = arrays.last_hour - arrays.first_hour  # hours that have a next hour
    keep = spans >= 1
    counts = np.where(keep, -(-spans // window_hours), 0)
    positions = np.repeat(np.arange(len(spans)), counts)
    latest = np.maximum(arrays.last_hour - window_hours, arrays.first_hour)[positions]
    first = arrays.first_hour[positions]
    starts = first + (rng.random(len(positions)) * (latest - first + 1)).astype(np.int64)
    lengths = np.minimum(window_hours, arrays.last_hour[positions] - starts)
    return Windows(positions=positions, start_hours=starts, lengths=lengths)


def tiled_windows(arrays: HourlyArrays, window_hours: int) -> Windows:
    """Consecutive non-overlapping windows covering every stay (fixed, for the validation loss)."""
    spans = arrays.last_hour - arrays.first_hour
    counts = np.where(spans >= 1, -(-spans // window_hours), 0)
    positions = np.repeat(np.arange(len(spans)), counts)
    rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    starts = arrays.first_hour[positions] + rank * window_hours
    lengths = np.minimum(window_hours, arrays.last_hour[positions] - starts)
    return Windows(positions=positions, start_hours=starts, lengths=lengths)


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, bucket_batches: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffle, sort by length within groups of ``bucket_batches`` batches, cut, shuffle the batches.

    Batches are lists of ints, as ``accelerate``'s batch-sampler sharding expects.
    """
    order = rng.permutation(len(lengths))
    group = batch_size * bucket_batches
    batches = []
    for lo in range(0, len(order), group):
        chunk = order[lo : lo + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass(frozen=True)
class WindowValues:
    """The raw hours of B training windows of up to T input hours, padded with NaN at the end.

    Attributes
    ----------
    values : np.ndarray
        ``(B, T + 1, V)`` raw values (NaN = not measured): inputs ``[:, :T]``, targets ``[:, 1:]``.
    treatments : np.ndarray
        ``(B, T + 1, n_treatments)`` treatments given at each hour.
    static : np.ndarray
        ``(B, n_statics)`` statics.
    hours : np.ndarray
        ``(B, T)`` ICU hour index of each input position.
    """

    values: np.ndarray
    treatments: np.ndarray
    static: np.ndarray
    hours: np.ndarray

    def tensors(self, encoder: FeatureEncoder, input_values: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """Inputs and targets as a dict of CPU tensors: the :class:`HourInputs` fields, ``targets``
        (``(B, T, V)`` 0-based bins, -100 unobserved) and ``target_z`` (``(B, T, V)`` the next values
        in z units, see :meth:`FeatureEncoder.target_z`).

        ``input_values`` (``(B, T, V)``, default the real ``values[:, :T]``) are the values the
        inputs are built from; the targets are always the real next values, as changes from the
        last of ``input_values``.
        """
        length = self.hours.shape[1]
        if input_values is None:
            input_values = self.values[:, :length]
        inputs = encoder.encode(input_values, self.treatments[:, :length], self.treatments[:, 1 : length + 1], self.static, self.hours)
        carried, _ = carry_forward(input_values)
        next_values = self.values[:, 1:]
        return {**vars(inputs), "targets": encoder.targets(next_values, carried), "target_z": encoder.target_z(next_values, carried)}


def window_values(arrays: HourlyArrays, windows: Windows, index: np.ndarray) -> WindowValues:
    """The raw hours of the windows ``index``, padded to their longest."""
    length = int(windows.lengths[index].max())
    positions = windows.positions[index]
    starts = windows.start_hours[index]
    # one batch of context length+1 ending at the last target hour: inputs [:length], targets [1:]
    frame = pl.DataFrame({"stay_id": arrays.stay_ids[positions], "hour": starts + length}, schema=STARTS_SCHEMA)
    batch = arrays.batch(frame, context_hours=length + 1, horizon=1)
    # (B, length + 1, V); a shorter window ends its stay, so its padding is NaN
    return WindowValues(values=batch.values, treatments=batch.treatments, static=batch.static,
                        hours=starts[:, None] + np.arange(length)[None, :])


def window_tensors(arrays: HourlyArrays, windows: Windows, index: np.ndarray, encoder: FeatureEncoder) -> dict[str, torch.Tensor]:
    """Inputs and targets of the windows ``index``, padded to their longest (see :meth:`WindowValues.tensors`)."""
    return window_values(arrays, windows, index).tensors(encoder)


class _WindowDataset(torch.utils.data.Dataset):
    """Indexable windows; a batch is collated by :func:`window_tensors` plus its reference sets
    (and, with ``keep_values``, its :class:`WindowValues` under ``"window"``, for scheduled sampling)."""

    def __init__(self, arrays: HourlyArrays, windows: Windows, encoder: FeatureEncoder, references: torch.Tensor,
                 keep_values: bool = False) -> None:
        self.arrays, self.windows, self.encoder, self.references = arrays, windows, encoder, references
        self.keep_values = keep_values

    def __len__(self) -> int:
        return len(self.windows.positions)

    def __getitem__(self, i: int) -> int:
        return i

    def collate(self, items: list[int]) -> dict[str, Any]:
        index = np.asarray(items, dtype=np.int64)
        window = window_values(self.arrays, self.windows, index)
        batch: dict[str, Any] = {**window.tensors(self.encoder), "references": self.references[index]}
        if self.keep_values:
            batch["window"] = window
        return batch


def split_batch(batch: dict[str, torch.Tensor]) -> tuple[HourInputs, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A collated batch dict -> (inputs, targets, target_z, reference sets)."""
    fields = {k: v for k, v in batch.items() if k not in ("targets", "target_z", "references")}
    return HourInputs(**fields), batch["targets"], batch["target_z"], batch["references"]


# ============================================================================ training
def prepare_agents(
    cohort: Cohort,
    *,
    preset: str,
    train_config: TrainConfig,
    agent_fields: dict[str, Any] | None = None,
) -> tuple[TrainedAgents, Cohort]:
    """Split (when needed), fit tokenizer and normaliser on the train split, build a fresh model.

    Returns the untrained agents and the split cohort.
    """
    if cohort.stays["split"].null_count() == cohort.stays.height:
        cohort = cohort.split(train_config.split_fractions, seed=train_config.split_seed)
    train = cohort.subset(split="train")
    if train.stays.height == 0 or cohort.subset(split="validation").stays.height == 0:
        raise ValueError("training needs stays in both the train and the validation split; the cohort is too small or badly split")
    tokenizer = BinTokenizer.fit_cohort(train, split=None, n_bins=train_config.n_bins, method=train_config.bin_method)
    normaliser = Normaliser.fit(train, split=None)
    train_arrays = HourlyArrays.from_cohort(train)
    scales = normaliser.std[normaliser.index(tokenizer.variables)]
    changes = ChangeTokenizer.fit(consecutive_changes(train_arrays), tokenizer.variables, scales, n_bins=train_config.n_change_bins)
    catalog = cohort.catalog
    charted = train.hourly.select(pl.col(tokenizer.variables).is_not_null().mean()).row(0)  # share of hours measured
    fields = {"feedback_variables": tuple(v for v, share in zip(tokenizer.variables, charted, strict=True) if share >= 0.5)}
    fields.update(agent_fields or {})
    if fields.get("base_model"):
        fields["hidden_size"] = base_model_hidden_size(fields["base_model"])
    config = AgentConfig.from_preset(
        preset,
        variables=tokenizer.variables,
        variable_systems=tuple(catalog.variable(v).system for v in tokenizer.variables),
        bin_counts=tokenizer.bin_counts,
        change_bin_counts=changes.bin_counts,
        treatment_codes=catalog.treatment_codes,
        static_codes=catalog.static_codes,
        **fields,
    )
    torch.manual_seed(train_config.seed)
    model = OrganAgents(config)
    agents = TrainedAgents(model=model, tokenizer=tokenizer, changes=changes, normaliser=normaliser)
    value_counts, change_counts = target_counts(train_arrays, agents.encoder)
    model.init_output_priors(value_counts, change_counts)
    n_targets = np.array([a.sum() + b.sum() for a, b in zip(value_counts, change_counts, strict=True)], dtype=np.float64)
    model.loss_weights.copy_(torch.from_numpy(balanced_loss_weights(n_targets, train_config.loss_balance)))
    return agents, cohort


def balanced_loss_weights(n_targets: np.ndarray, exponent: float) -> np.ndarray:
    """Per-variable target weights ``(n_v / mean n) ** -exponent``, scaled so a target weighs 1 on average.

    ``exponent`` 0 weighs every target alike (vital signs, charted hourly, then dominate the loss);
    1 weighs every variable alike; in between shifts weight toward the rarely measured labs.
    Variables without a training target get weight 1.
    """
    weights = np.ones(len(n_targets))
    seen = n_targets > 0
    if seen.any():
        weights[seen] = (n_targets[seen] / n_targets[seen].mean()) ** -exponent
        weights[seen] *= n_targets[seen].sum() / (weights[seen] * n_targets[seen]).sum()
    return weights.astype(np.float32)


def consecutive_changes(arrays: HourlyArrays) -> list[np.ndarray]:
    """Per variable, the raw changes between consecutive measurements within each stay."""
    stay_of_row = np.repeat(np.arange(len(arrays.stay_ids)), arrays.last_hour - arrays.first_hour + 1)
    values = arrays.values[:-1]  # the last row is padding
    changes = []
    for v in range(values.shape[1]):
        rows = np.flatnonzero(~np.isnan(values[:, v]))
        same_stay = stay_of_row[rows[1:]] == stay_of_row[rows[:-1]]
        changes.append(np.diff(values[rows, v].astype(np.float64))[same_stay])
    return changes


def target_counts(arrays: HourlyArrays, encoder: FeatureEncoder) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per variable, how often each value bin and each change bin is a training target.

    The first measurement of a stay is a value-bin target; every later one a change-bin target
    (from the measurement before it), as in training windows that start at the stay's start.
    """
    values = arrays.values[:-1]
    stay_of_row = np.repeat(np.arange(len(arrays.stay_ids)), arrays.last_hour - arrays.first_hour + 1)
    value_ids, observed, _ = encoder.tokenizer.encode(values, encoder.variables)
    value_counts, change_counts = [], []
    for v, (n_values, n_changes) in enumerate(zip(encoder.tokenizer.bin_counts, encoder.changes.bin_counts, strict=True)):
        rows = np.flatnonzero(observed[:, v])
        later = np.zeros(len(rows), dtype=bool)
        later[1:] = stay_of_row[rows[1:]] == stay_of_row[rows[:-1]]
        previous = np.full(len(rows), np.nan)
        previous[1:] = values[rows[:-1], v]
        previous[~later] = np.nan
        change_ids, _, _ = encoder.changes.encode(values[rows, v][:, None], previous[:, None], [encoder.variables[v]])
        value_counts.append(np.bincount(value_ids[rows[~later], v] - 1, minlength=n_values))
        change_counts.append(np.bincount(change_ids[later, 0] - 1, minlength=n_changes))
    return value_counts, change_counts


def make_accelerator(device: str) -> Accelerator:
    """An :class:`accelerate.Accelerator` for ``device``: bf16 mixed precision on CUDA, none on CPU."""
    resolved = resolve_device(device)
    cuda = resolved.startswith("cuda")
    return Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no")


def _references_for(mode: str, n: int, n_systems: int, generator: torch.Generator) -> torch.Tensor:
    if mode == "random":
        return sample_reference_sets(n, n_systems, generator)
    return reference_sets(mode, n, n_systems)


def train_agents(
    cohort: Cohort,
    out_dir: str | Path,
    *,
    preset: str = "tiny",
    train_config: TrainConfig | None = None,
    agent_fields: dict[str, Any] | None = None,
    device: str = "auto",
    resume: bool = False,
    show_progress: bool = True,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train organ agents on ``cohort`` and write the model directory ``out_dir``.

    Parameters
    ----------
    cohort
        The cohort; split by patient with ``train_config.split_*`` when it has no split.
    out_dir
        The model directory (see :mod:`organsim.agents.checkpoint`).
    preset
        Size preset (:data:`~organsim.agents.model.PRESETS`).
    train_config
        Optimisation settings.
    agent_fields
        Overrides of :class:`AgentConfig` fields (e.g. ``backbone_sharing``, ``base_model``,
        ``lora_r``, ``context_hours``).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (``accelerate launch`` picks the GPU per process).
    resume
        Continue from ``out_dir/last`` (same settings); a finished run is left as it is.
    show_progress
        Show a rich progress bar (main process only).
    on_epoch
        Called with each epoch's record.

    Returns
    -------
    TrainResult
    """
    out_dir = Path(out_dir)
    train_config = train_config or TrainConfig()
    accelerator = make_accelerator(device)
    state: dict[str, Any]
    if resume and (out_dir / LAST_DIR).is_dir():
        agents, cohort, state, optimizer_state = _resume(out_dir, cohort, train_config)
    else:
        agents, cohort = prepare_agents(cohort, preset=preset, train_config=train_config, agent_fields=agent_fields)
        state = {"epoch": 0, "best_epoch": 0, "best_validation_loss": None, "bad_epochs": 0, "history": [], "finished": False}
        optimizer_state = None
    train_arrays = HourlyArrays.from_cohort(cohort.subset(split="train"))
    validation_arrays = HourlyArrays.from_cohort(cohort.subset(split="validation"))
    result = TrainResult(
        model_dir=out_dir,
        history=[EpochRecord(**r) for r in state["history"]],
        best_epoch=state["best_epoch"],
        best_validation_loss=state["best_validation_loss"] if state["best_validation_loss"] is not None else math.inf,
        n_parameters=count_parameters(agents.model),
        n_train_stays=len(train_arrays.stay_ids),
        n_validation_stays=len(validation_arrays.stay_ids),
    )
    if state["finished"]:
        return result

    config, encoder, model = agents.config, agents.encoder, agents.model
    n_systems = len(config.systems)
    window_hours = config.window_hours
    steps_per_epoch = _steps_per_epoch(train_arrays, window_hours, train_config, accelerator.num_processes)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=train_config.learning_rate, weight_decay=train_config.weight_decay
    )
    total_steps = steps_per_epoch * train_config.max_epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(train_config.warmup_fraction * total_steps), total_steps)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(state["scheduler"])
    model, optimizer = accelerator.prepare(model, optimizer)

    validation_windows = tiled_windows(validation_arrays, window_hours)
    validation_modes = ("none", "all") if train_config.references == "random" else (train_config.references,)

    with progress_bar(disable=not (show_progress and accelerator.is_main_process)) as bar:
        task = bar.add_task("training", total=steps_per_epoch * (train_config.max_epochs - state["epoch"]))
        for epoch in range(state["epoch"] + 1, train_config.max_epochs + 1):
            started = time.perf_counter()
            rng = np.random.default_rng([train_config.seed, epoch])
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            torch.manual_seed(int(rng.integers(2**62)))  # dropout
            windows = random_windows(train_arrays, window_hours, rng)
            references = _references_for(train_config.references, len(windows.positions), n_systems, generator)
            dataset = _WindowDataset(train_arrays, windows, encoder, references, keep_values=train_config.scheduled_sampling > 0)
            sampling_generator = torch.Generator().manual_seed(int(np.random.default_rng([train_config.seed, epoch, 1]).integers(2**62)))
            batches = length_bucketed_batches(windows.lengths, train_config.batch_size, train_config.bucket_batches, rng)
            loader = accelerator.prepare_data_loader(
                torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=dataset.collate)
            )
            model.train()
            loss_sum, target_sum, steps = 0.0, 0.0, 0
            for batch in loader:
                window = batch.pop("window", None)
                inputs, targets, target_z, refs = split_batch(batch)
                if window is not None:
                    inputs, targets, target_z = scheduled_sampling_batch(
                        accelerator, model, encoder, window, inputs, refs, train_config.scheduled_sampling, sampling_generator
                    )
                with accelerator.autocast():
                    out = model(inputs, refs, targets, target_z)
                loss = out.loss + train_config.mean_loss_weight * out.squared_error
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), train_config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += float(loss.detach()) * float(out.n_targets)
                target_sum += float(out.n_targets)
                steps += 1
                bar.update(task, advance=1, description=f"epoch {epoch}/{train_config.max_epochs} loss {loss_sum / max(target_sum, 1):.3f}")
            train_loss = _reduce_mean(accelerator, loss_sum, target_sum)
            validation_loss = float(np.mean([
                validation_loss_of(accelerator, model, validation_arrays, validation_windows, encoder, mode, train_config.batch_size,
                                   mean_loss_weight=train_config.mean_loss_weight)
                for mode in validation_modes
            ]))
            record = EpochRecord(
                epoch=epoch, train_loss=train_loss, validation_loss=validation_loss, steps=steps,
                seconds=time.perf_counter() - started, learning_rate=float(scheduler.get_last_lr()[0]),
            )
            result.history.append(record)
            improved = validation_loss < result.best_validation_loss
            if improved:
                result.best_epoch, result.best_validation_loss = epoch, validation_loss
                state["bad_epochs"] = 0
            else:
                state["bad_epochs"] += 1
            stop = state["bad_epochs"] >= train_config.patience
            finished = stop or epoch == train_config.max_epochs
            result.stopped_early = stop and epoch < train_config.max_epochs
            if accelerator.is_main_process:
                _write_epoch(accelerator, agents, model, optimizer, scheduler, out_dir, train_config, result, state, epoch, improved, finished, cohort)
            accelerator.wait_for_everyone()
            if on_epoch is not None:
                on_epoch(record)
            if finished:
                break
    agents.model = accelerator.unwrap_model(model)
    return result


def scheduled_sampling_batch(
    accelerator: Accelerator,
    model: torch.nn.Module,
    encoder: FeatureEncoder,
    window: WindowValues,
    inputs: HourInputs,
    references: torch.Tensor,
    probability: float,
    generator: torch.Generator,
) -> tuple[HourInputs, torch.Tensor, torch.Tensor]:
    """A training batch with some fed-back inputs read as the model's own draws
    (:mod:`organsim.agents.scheduled_sampling`): (inputs, targets, target_z) on the accelerator's device."""
    length = window.hours.shape[1]
    replaced_values, _ = sampled_input_values(
        accelerator.unwrap_model(model), encoder, inputs, references, window.values[:, :length], probability, generator
    )
    tensors = {k: v.to(accelerator.device) for k, v in window.tensors(encoder, replaced_values).items()}
    targets, target_z = tensors.pop("targets"), tensors.pop("target_z")
    return HourInputs(**tensors), targets, target_z


def _steps_per_epoch(arrays: HourlyArrays, window_hours: int, config: TrainConfig, processes: int) -> int:
    spans = arrays.last_hour - arrays.first_hour
    n_windows = int(np.where(spans >= 1, -(-spans // window_hours), 0).sum())
    return max(1, math.ceil(math.ceil(n_windows / config.batch_size) / processes))


def _reduce_mean(accelerator: Accelerator, loss_sum: float, count: float) -> float:
    totals = accelerator.reduce(torch.tensor([loss_sum, float(count)], device=accelerator.device), reduction="sum")
    return float(totals[0] / totals[1].clamp_min(1))


@torch.no_grad()
def validation_loss_of(
    accelerator: Accelerator,
    model: torch.nn.Module,
    arrays: HourlyArrays,
    windows: Windows,
    encoder: FeatureEncoder,
    mode: str,
    batch_size: int,
    *,
    mean_loss_weight: float = 0.0,
) -> float:
    """Mean next-hour loss over the observed targets of ``windows`` with fixed references ``mode``:
    cross-entropy plus ``mean_loss_weight`` times the predictive mean's squared error (z units)."""
    model.eval()
    order = np.argsort(windows.lengths, kind="stable")
    rank, world = accelerator.process_index, accelerator.num_processes
    loss_sum, count = 0.0, 0.0
    n_systems = len(accelerator.unwrap_model(model).config.systems)
    for i, lo in enumerate(range(0, len(order), batch_size)):
        if i % world != rank:
            continue
        index = order[lo : lo + batch_size]
        tensors = window_tensors(arrays, windows, index, encoder)
        targets = tensors.pop("targets").to(accelerator.device)
        target_z = tensors.pop("target_z").to(accelerator.device)
        inputs = HourInputs(**tensors).to(accelerator.device)
        refs = reference_sets(mode, len(index), n_systems, device=accelerator.device)
        with accelerator.autocast():
            out = model(inputs, refs, targets, target_z)
        loss_sum += float(out.loss + mean_loss_weight * out.squared_error) * float(out.n_targets)
        count += float(out.n_targets)
    return _reduce_mean(accelerator, loss_sum, count)


def _write_epoch(accelerator, agents, model, optimizer, scheduler, out_dir, train_config, result, state, epoch, improved, finished, cohort) -> None:
    unwrapped = accelerator.unwrap_model(model)
    weights = weights_to_save(unwrapped)
    state.update(
        epoch=epoch,
        best_epoch=result.best_epoch,
        best_validation_loss=result.best_validation_loss,
        history=[asdict(r) for r in result.history],
        finished=finished,
        stopped_early=result.stopped_early,
    )
    agents.model = unwrapped
    agents.training = {
        "config": train_config.to_dict(),
        "state": {k: v for k, v in state.items() if k != "scheduler"},
        "split": {
            "stays": {s: int((cohort.stays["split"] == s).sum()) for s in ("train", "validation", "test")},
            "cohort_meta_split": cohort.meta.get("split"),
            "source": cohort.meta.get("source"),
        },
        "n_parameters": result.n_parameters,
    }
    trainer = {**state, "scheduler": scheduler.state_dict()}
    write_model_dir(
        out_dir,
        agents,
        best_weights=weights if improved else None,
        last_state={"weights": weights, "optimizer": optimizer.state_dict(), "trainer": trainer},
    )


def _resume(out_dir: Path, cohort: Cohort, train_config: TrainConfig):
    document = read_config(out_dir)
    stored = TrainConfig.from_dict(document["training"]["config"])
    if stored != train_config:
        changed = sorted(k for k, v in asdict(stored).items() if getattr(train_config, k) != v)
        raise ValueError(f"cannot resume {out_dir}: training settings differ from the stored run ({changed}); use the same settings")
    agents = TrainedAgents.load(out_dir, weights=f"{LAST_DIR}/model.safetensors")
    agents.training = document["training"]
    optimizer_state, trainer = read_last_state(out_dir)
    if cohort.stays["split"].null_count() == cohort.stays.height:
        cohort = cohort.split(train_config.split_fractions, seed=train_config.split_seed)
    agents.model.train()
    return agents, cohort, trainer, optimizer_state


def split_as_trained(cohort: Cohort, agents: TrainedAgents) -> Cohort:
    """``cohort`` with the train/validation/test split the agents were trained on.

    A cohort without a split is split with the fractions and seed stored with the model (as
    :func:`train_agents` did); a ValueError when the train split then differs in size from the
    model's record, i.e. another cohort.
    """
    if cohort.stays["split"].null_count() == cohort.stays.height:
        stored = agents.training.get("config")
        if stored is None:
            raise ValueError("the cohort has no split and the model does not record how it split its training cohort")
        config = TrainConfig.from_dict(stored)
        cohort = cohort.split(config.split_fractions, seed=config.split_seed)
    expected = agents.training.get("split", {}).get("stays", {}).get("train")
    got = int((cohort.stays["split"] == "train").sum())
    if expected is not None and expected != got:
        raise ValueError(f"the cohort's train split has {got} stays but the model was trained on {expected}: is it the same cohort?")
    return cohort
