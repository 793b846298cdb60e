"""Trained organ agents as a :class:`~organsim.data.windows.Forecaster`, with free-running rollouts.

All nine agents step together, one hour at a time, with the decoder's key/value cache
(:class:`AgentStepper`): the context is read once (hours before the first measurement are masked
out and positions restart at the first measured hour), each agent predicts the next hour of its
own variables, and the joint forecast is fed back as the next hour (with that hour's planned
treatments), from which the hour after is predicted from the cache. A fed-back hour is measured
the way the training data are: the variables charted in most training hours
(``AgentConfig.feedback_variables``: the vital signs) hold their forecast; the others (labs, drawn
every few hours or days) count as not measured that hour, so the agents keep reading their last
real value with its age growing, as they learned to. Their forecasts are still made at every hour;
truth is never fed back. :meth:`AgentForecaster.predict` feeds back predictive means;
:meth:`AgentForecaster.sample_paths` feeds back draws, giving a distribution of futures.

:class:`AgentStepper` is the stepping loop itself, with the hooks a caller needs between hours
(the coordinated twin in :mod:`organsim.twin` uses them): the reference sets of each hour, the
treatments of each simulated hour, and the values fed back.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.distribution import BinnedDistribution, center_tensor
from organsim.agents.features import CarryState, leading_empty_mask
from organsim.agents.model import REFERENCE_MODES, HourInputs, reference_sets
from organsim.data.windows import ForecastBatch
from organsim.utils.devices import resolve_device


class AgentRuntime:
    """Trained agents placed on a device with what a rollout needs to turn logits into values.

    Parameters
    ----------
    agents
        Trained agents (:meth:`TrainedAgents.load`).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``; bf16 autocast on CUDA.

    Attributes
    ----------
    model
        The network on ``device``, in eval mode.
    value_centers, change_centers
        ``(V, K)`` float64 bin values (catalog units) and change-bin centers (in units of each
        variable's change scale).
    change_scales
        ``(V,)`` float64 change scale of each variable.
    feedback
        ``(V,)`` bool: the variable's forecast is fed back as measured in free-running steps.
    """

    def __init__(self, agents: TrainedAgents, *, device: str = "auto") -> None:
        self.agents = agents
        self.device = resolve_device(device)
        self.model = agents.model.to(self.device).eval()
        self.encoder = agents.encoder
        config = agents.config
        width = max(max(a, b) for a, b in zip(config.bin_counts, config.change_bin_counts, strict=True))
        self.value_centers = center_tensor(agents.tokenizer, config.variables, width).to(self.device)  # (V, K)
        self.change_centers = center_tensor(agents.changes, config.variables, width).to(self.device)  # (V, K)
        self.change_scales = torch.from_numpy(agents.changes.scales[agents.changes.columns_of(config.variables)]).to(self.device)
        self.feedback = config.fed_back  # (V,)

    @property
    def autocast(self) -> bool:
        """bf16 autocast is on (a CUDA device)."""
        return self.device.startswith("cuda")

    def centers(self, last_values: np.ndarray, relative: torch.Tensor) -> torch.Tensor:
        """``(b, V, K)`` bin values: last value + scale * change center where ``relative``, else value centers."""
        last = torch.from_numpy(np.nan_to_num(last_values)).to(self.device)  # (b, V); 0 where relative is False
        anchored = last[:, :, None] + self.change_scales[None, :, None] * self.change_centers[None]
        return torch.where(relative[:, :, None], anchored, self.value_centers[None].expand_as(anchored))

    def model_columns(self, variables: tuple[str, ...]) -> np.ndarray:
        """Index of each model variable in ``variables`` (a batch's); a missing one is a ValueError."""
        position = {v: i for i, v in enumerate(variables)}
        missing = [v for v in self.agents.config.variables if v not in position]
        if missing:
            raise ValueError(f"the batch lacks variables the agents need: {missing}")
        return np.array([position[v] for v in self.agents.config.variables])

    def to_batch_layout(self, paths: np.ndarray, variables: tuple[str, ...]) -> np.ndarray:
        """``(..., V_model)`` -> ``(..., V_batch)`` in the order of ``variables``; variables the model lacks are NaN."""
        out = np.full((*paths.shape[:-1], len(variables)), np.nan, dtype=np.float32)
        out[..., self.model_columns(variables)] = paths
        return out


class AgentStepper:
    """One free-running rollout of B problems, one simulated hour per :meth:`predict` / :meth:`feed` pair.

    ``predict(references)`` gives the distribution of the next hour; ``feed(values)`` appends that
    hour, as measured (only the variables in ``feedback`` are read as measured, the others count
    as not measured), to the sequence the next :meth:`predict` continues from. With
    ``use_cache=True`` every hour costs one incremental decoder step (the key/value cache holds the
    earlier hours); with ``use_cache=False`` the whole window is re-encoded at every hour (the
    slow reference the cached loop is checked against).

    References may change from hour to hour. With the cache, each hour is encoded with the
    references given to the :meth:`predict` call that first reads it (the context with the first
    call's), and cached hours keep them; re-encoding reads every hour with the current call's.
    With the same references at every hour both give the same numbers.

    Parameters
    ----------
    runtime
        The agents on their device.
    batch
        The problems; its planned treatments fill :attr:`treatments` (change them with
        :meth:`set_treatments` before they are read).
    horizon
        Hours to simulate (``batch.horizon >= horizon``).
    use_cache
        Step with the decoder's key/value cache (default) or re-encode the window every hour.

    Attributes
    ----------
    context
        Context hours kept (at most ``config.context_hours``, so that every position of the
        rollout stays within the trained window length; leading hours empty for every problem
        are dropped).
    treatments
        ``(b, context + horizon, T_model)`` float32 treatments, model treatment order: given in the
        context hours, then those of the simulated hours ``t+1 .. t+horizon``.
    state
        Per problem and variable, the last measured value and hours since it, after the last hour
        read (the context's last hour, then each fed-back hour).
    step
        Number of hours predicted so far.
    """

    def __init__(self, runtime: AgentRuntime, batch: ForecastBatch, horizon: int, *, use_cache: bool = True) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if batch.horizon < horizon:
            raise ValueError(f"the batch plans treatments for {batch.horizon} hours; horizon {horizon} asked")
        config = runtime.agents.config
        self.runtime = runtime
        self.horizon = horizon
        self.use_cache = use_cache
        columns = runtime.model_columns(batch.variables)
        treatment_columns = [batch.treatment_codes.index(c) for c in config.treatment_codes]
        static_columns = [batch.static_codes.index(c) for c in config.static_codes]
        # Keep every position of the rollout inside the trained window length.
        context = max(1, min(batch.context_hours, config.context_hours, config.window_hours - horizon + 1))
        offset = batch.context_hours - context
        values = batch.values[:, offset:, :][:, :, columns]  # (b, C, V)
        started = leading_empty_mask(values)  # (b, C)
        skip = int(np.argmax(started.any(axis=0)))  # leading hours masked for every problem: left out
        self.context, offset = context - skip, offset + skip
        self.values = values[:, skip:]  # (b, C, V) the context; fed-back hours are appended (re-encoding only)
        self.started = started[:, skip:]
        self.treatments = np.ascontiguousarray(batch.treatments[:, offset : offset + self.context + horizon][:, :, treatment_columns])
        self.static = batch.static[:, static_columns]
        self.start_hours = batch.start_hours.astype(np.int64)
        self.size = batch.size
        self.state: CarryState = runtime.encoder.carry_state(self.values)
        self.step = 0
        self._fed_hours = 0
        self._read_through = -1  # last column of treatments read into the model's inputs
        self._cache = None
        self._pending: HourInputs | None = None  # the hours the next cached predict reads
        self._mask = torch.from_numpy(self.started).to(runtime.device)  # (b, C + fed hours)
        self._positions = (self._mask.cumsum(1) - 1).clamp_min(0)  # (b, C) positions of the pending hours

    def set_treatments(self, step: int, treatments: np.ndarray) -> None:
        """Set the treatments of simulated hour ``t + step + 1`` (``(b, T_model)``, model treatment order).

        Hour ``t+1``'s (``step=0``) is read by the first :meth:`predict` (as the plan of the last
        context hour); hour ``t + step + 1``'s by the :meth:`feed` of hour ``t + step``. Setting
        them after they were read is a ValueError.
        """
        column = self.context + step
        if column <= self._read_through:
            raise ValueError(f"the treatments of simulated hour {step + 1} were already read")
        self.treatments[:, column] = treatments

    def _hour_indices(self, n_hours: int) -> np.ndarray:
        """``(b, n_hours)`` ICU hour index of the first ``n_hours`` positions of the sequence."""
        return self.start_hours[:, None] + np.arange(-self.context + 1, -self.context + 1 + n_hours)[None, :]

    def predict(self, references: torch.Tensor) -> BinnedDistribution:
        """The ``(b, V, K)`` distribution of the next simulated hour, read with ``references`` ``(b, S, S)`` bool."""
        if self.step >= self.horizon:
            raise ValueError(f"all {self.horizon} hours were predicted already")
        if self._fed_hours != self.step:
            raise ValueError("feed the last predicted hour before predicting the next")
        runtime = self.runtime
        references = references.to(runtime.device)
        if self.use_cache and self.step > 0:
            inputs, positions = self._pending, self._positions
        else:
            n = self.values.shape[1]  # the context, then the fed-back hours when re-encoding
            inputs = runtime.encoder.encode(
                self.values, self.treatments[:, :n], self.treatments[:, 1 : n + 1], self.static, self._hour_indices(n)
            )
            positions = (self._mask.cumsum(1) - 1).clamp_min(0)  # (b, n)
            self._read_through = n
        with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=runtime.autocast):
            out = runtime.model(
                inputs.to(runtime.device), references, attention_mask=self._mask, position_ids=positions,
                past_key_values=self._cache, use_cache=self.use_cache,
            )
        self._cache = out.past_key_values if self.use_cache else None
        self._positions = positions[:, -1:]
        self.step += 1
        return BinnedDistribution.from_logits(out.logits, runtime.centers(self.state.values, out.relative))

    def feed(self, values: np.ndarray) -> None:
        """Append the hour just predicted, ``(b, V)`` raw values (model variable order), as measured.

        Only the hourly-charted variables (:attr:`AgentRuntime.feedback`) count as measured; the
        hour is read with its treatments and the plan of the hour after.
        """
        if self._fed_hours != self.step - 1 or self.step >= self.horizon:
            raise ValueError(f"feed follows each predict but the last (hour {self.step} of {self.horizon} is predicted, {self._fed_hours} fed)")
        runtime = self.runtime
        measured = np.where(runtime.feedback[None, :], values, np.nan)  # (b, V): hourly-charted variables only
        column = self.context + self.step - 1  # the fed hour's treatments
        given, planned = self.treatments[:, column : column + 1], self.treatments[:, column + 1 : column + 2]
        hour = self.start_hours[:, None] + self.step  # (b, 1)
        self._pending, self.state = runtime.encoder.encode_step(self.state, measured, given, planned, self.static, hour)
        self._read_through = column + 1
        self._positions = self._positions + 1
        self._fed_hours += 1
        if not self.use_cache:
            self.values = np.concatenate([self.values, measured[:, None]], axis=1)
        self._mask = torch.cat([self._mask, torch.ones(self.size, 1, dtype=self._mask.dtype, device=runtime.device)], dim=1)


class AgentForecaster:
    """Organ agents behind the Forecaster protocol, with one fixed reference setting.

    Parameters
    ----------
    agents
        Trained agents (:meth:`TrainedAgents.load`).
    references
        ``"none"`` (each agent sees only its own system), ``"all"`` (every other system too), or
        a ``(S, S)`` bool array (``[s, r]``: agent ``s`` consults system ``r``).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``; bf16 autocast on CUDA.
    batch_size
        Problems per forward pass.
    name
        Forecaster name (default ``agents_<references>``).
    """

    def __init__(
        self,
        agents: TrainedAgents,
        *,
        references: str | np.ndarray = "all",
        device: str = "auto",
        batch_size: int = 256,
        name: str | None = None,
    ) -> None:
        n_systems = len(agents.config.systems)
        if isinstance(references, str):
            if references not in REFERENCE_MODES:
                raise ValueError(f"references must be one of {REFERENCE_MODES} or an (S, S) bool array, got {references!r}")
            self.reference_matrix = reference_sets(references, 1, n_systems)[0]
            label = references
        else:
            matrix = torch.as_tensor(np.asarray(references, dtype=bool))
            if matrix.shape != (n_systems, n_systems):
                raise ValueError(f"a reference matrix must be ({n_systems}, {n_systems}), got {tuple(matrix.shape)}")
            self.reference_matrix = matrix
            label = "custom"
        self.agents = agents
        self.runtime = AgentRuntime(agents, device=device)
        self.device = self.runtime.device
        self.batch_size = batch_size
        self.name = name or f"agents_{label}"

    # ------------------------------------------------------------------ public API
    def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        """``(B, horizon, V)`` float32 predictive means in raw units; steps 2.. feed the means back."""
        out = np.empty((batch.size, horizon, len(batch.variables)), dtype=np.float32)
        for index in measured_length_chunks(batch, self.batch_size):
            paths, _ = self._rollout(batch.select(index), horizon, BinnedDistribution.mean)  # (b, H, V_model)
            out[index] = self.runtime.to_batch_layout(paths, batch.variables)
        return out

    def next_hour(self, batch: ForecastBatch) -> BinnedDistribution:
        """The predictive distribution of hour t+1 (``(B, V_model, K)`` probabilities and values, model variable order)."""
        shape = (batch.size, len(self.agents.config.variables), self.runtime.value_centers.shape[1])
        probs = torch.empty(shape, dtype=torch.float64)
        centers = torch.empty(shape, dtype=torch.float64)
        for index in measured_length_chunks(batch, self.batch_size):
            _, first = self._rollout(batch.select(index), 1, BinnedDistribution.mean)
            probs[torch.from_numpy(index)] = first.probs.cpu()
            centers[torch.from_numpy(index)] = first.centers.cpu()
        return BinnedDistribution(probs=probs, centers=centers)

    def sample_paths(self, batch: ForecastBatch, horizon: int, n_samples: int, *, seed: int = 0) -> np.ndarray:
        """``(n_samples, B, horizon, V)`` float32 sampled futures: each step feeds its own draw back.

        The same seed gives the same paths.
        """
        generator = torch.Generator(device=self.device).manual_seed(seed)
        out = np.empty((n_samples, batch.size, horizon, len(batch.variables)), dtype=np.float32)
        for index in measured_length_chunks(batch, max(1, self.batch_size // n_samples)):
            part = batch.select(np.repeat(index, n_samples))
            paths, _ = self._rollout(part, horizon, lambda dist: dist.sample(1, generator)[0])  # (b * n, H, V)
            paths = self.runtime.to_batch_layout(paths, batch.variables).reshape(len(index), n_samples, horizon, len(batch.variables))
            out[:, index] = paths.transpose(1, 0, 2, 3)
        return out

    # ------------------------------------------------------------------ rollout
    def _rollout(
        self, batch: ForecastBatch, horizon: int, choose: Callable[[BinnedDistribution], torch.Tensor]
    ) -> tuple[np.ndarray, BinnedDistribution]:
        """``(b, horizon, V_model)`` float32 path and the step-1 distribution.

        Step 1 is predicted from the context; each later step from the hour ``choose(dist)`` fed back.
        """
        stepper = AgentStepper(self.runtime, batch, horizon)
        references = self.reference_matrix.expand(batch.size, -1, -1)
        paths = np.empty((batch.size, horizon, len(self.agents.config.variables)), dtype=np.float32)
        first = None
        for step in range(horizon):
            dist = stepper.predict(references)  # (b, V, K)
            first = first or dist
            paths[:, step] = choose(dist).float().cpu().numpy()
            if step + 1 < horizon:
                stepper.feed(paths[:, step])
        return paths, first


def measured_length_chunks(batch: ForecastBatch, size: int) -> list[np.ndarray]:
    """Problem indices in chunks of ``size``, problems with similar measured context lengths together.

    Hours before a context's first measurement are masked, and hours masked for every problem
    of a chunk are not computed at all, so grouping by length saves most of the padding.
    """
    measured_hours = leading_empty_mask(batch.values).sum(axis=1)  # (B,)
    order = np.argsort(measured_hours, kind="stable")
    return [order[lo : lo + size] for lo in range(0, batch.size, size)]
