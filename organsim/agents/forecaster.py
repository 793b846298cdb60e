"""Trained organ agents as a :class:`~organsim.data.windows.Forecaster`, with free-running rollouts.

All nine agents step together, one hour at a time, with the decoder's key/value cache: the context
is read once (hours before the first measurement are masked out and positions restart at the
first measured hour), each agent predicts the next hour of its own variables, and the joint
forecast is fed back as the next hour (with that hour's planned treatments), from which the hour
after is predicted from the cache. A fed-back hour is measured the way the training data are:
the variables charted in most training hours (``AgentConfig.feedback_variables``: the vital
signs) hold their forecast; the others (labs, drawn every few hours or days) count as not
measured that hour, so the agents keep reading their last real value with its age growing, as
they learned to. Their forecasts are still made at every hour; truth is never fed back. :meth:`AgentForecaster.predict` feeds back predictive means;
:meth:`AgentForecaster.sample_paths` feeds back draws, giving a distribution of futures.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.distribution import BinnedDistribution, center_tensor
from organsim.agents.features import leading_empty_mask
from organsim.agents.model import REFERENCE_MODES, reference_sets
from organsim.data.windows import ForecastBatch
from organsim.utils.devices import resolve_device


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
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.name = name or f"agents_{label}"
        self.model = agents.model.to(self.device).eval()
        self.encoder = agents.encoder
        config = agents.config
        width = max(max(a, b) for a, b in zip(config.bin_counts, config.change_bin_counts, strict=True))
        self.value_centers = center_tensor(agents.tokenizer, config.variables, width).to(self.device)  # (V, K)
        self.change_centers = center_tensor(agents.changes, config.variables, width).to(self.device)  # (V, K)
        self.change_scales = torch.from_numpy(agents.changes.scales[agents.changes.columns_of(config.variables)]).to(self.device)
        self.feedback = np.isin(np.array(agents.config.variables), agents.config.feedback_variables)  # (V,)

    # ------------------------------------------------------------------ public API
    def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        """``(B, horizon, V)`` float32 predictive means in raw units; steps 2.. feed the means back."""
        out = np.empty((batch.size, horizon, len(batch.variables)), dtype=np.float32)
        for index in self._chunks(batch, self.batch_size):
            paths, _ = self._rollout(batch.select(index), horizon, BinnedDistribution.mean)  # (b, H, V_model)
            out[index] = self._to_batch_layout(paths, batch)
        return out

    def next_hour(self, batch: ForecastBatch) -> BinnedDistribution:
        """The predictive distribution of hour t+1 (``(B, V_model, K)`` probabilities and values, model variable order)."""
        shape = (batch.size, len(self.agents.config.variables), self.value_centers.shape[1])
        probs = torch.empty(shape, dtype=torch.float64)
        centers = torch.empty(shape, dtype=torch.float64)
        for index in self._chunks(batch, self.batch_size):
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
        for index in self._chunks(batch, max(1, self.batch_size // n_samples)):
            part = batch.select(np.repeat(index, n_samples))
            paths, _ = self._rollout(part, horizon, lambda dist: dist.sample(1, generator)[0])  # (b * n, H, V)
            paths = self._to_batch_layout(paths, batch).reshape(len(index), n_samples, horizon, len(batch.variables))
            out[:, index] = paths.transpose(1, 0, 2, 3)
        return out

    @staticmethod
    def _chunks(batch: ForecastBatch, size: int) -> list[np.ndarray]:
        """Problem indices in chunks of ``size``, problems with similar measured context lengths together.

        Hours before a context's first measurement are masked, and hours masked for every problem
        of a chunk are not computed at all, so grouping by length saves most of the padding.
        """
        measured_hours = leading_empty_mask(batch.values).sum(axis=1)  # (B,)
        order = np.argsort(measured_hours, kind="stable")
        return [order[lo : lo + size] for lo in range(0, batch.size, size)]

    # ------------------------------------------------------------------ rollout
    def _centers(self, last_values: np.ndarray, relative: torch.Tensor) -> torch.Tensor:
        """``(b, V, K)`` bin values: last value + scale * change center where ``relative``, else value centers."""
        last = torch.from_numpy(np.nan_to_num(last_values)).to(self.device)  # (b, V); 0 where relative is False
        anchored = last[:, :, None] + self.change_scales[None, :, None] * self.change_centers[None]
        return torch.where(relative[:, :, None], anchored, self.value_centers[None].expand_as(anchored))

    def _model_columns(self, batch: ForecastBatch) -> np.ndarray:
        """Index of each model variable in the batch's variables."""
        position = {v: i for i, v in enumerate(batch.variables)}
        missing = [v for v in self.agents.config.variables if v not in position]
        if missing:
            raise ValueError(f"the batch lacks variables the agents need: {missing}")
        return np.array([position[v] for v in self.agents.config.variables])

    def _to_batch_layout(self, paths: np.ndarray, batch: ForecastBatch) -> np.ndarray:
        """``(b, H, V_model)`` -> ``(b, H, V_batch)``; batch variables the model lacks are NaN."""
        out = np.full((*paths.shape[:2], len(batch.variables)), np.nan, dtype=np.float32)
        out[:, :, self._model_columns(batch)] = paths
        return out

    @torch.inference_mode()
    def _rollout(
        self, batch: ForecastBatch, horizon: int, choose: Callable[[BinnedDistribution], torch.Tensor]
    ) -> tuple[np.ndarray, BinnedDistribution]:
        """``(b, horizon, V_model)`` float32 path and the step-1 distribution.

        Step 1 is predicted from the context; each later step from the hour ``choose(dist)`` fed back.
        """
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if batch.horizon < horizon:
            raise ValueError(f"the batch plans treatments for {batch.horizon} hours; horizon {horizon} asked")
        config = self.agents.config
        columns = self._model_columns(batch)
        treatment_columns = [batch.treatment_codes.index(c) for c in config.treatment_codes]
        static_columns = [batch.static_codes.index(c) for c in config.static_codes]
        # Keep every position of the rollout inside the trained window length.
        context = max(1, min(batch.context_hours, config.context_hours, config.window_hours - horizon + 1))
        offset = batch.context_hours - context
        values = batch.values[:, offset:, :][:, :, columns]  # (b, C, V)
        started = leading_empty_mask(values)  # (b, C)
        skip = int(np.argmax(started.any(axis=0)))  # leading hours masked for every problem: left out
        context, offset, values, started = context - skip, offset + skip, values[:, skip:], started[:, skip:]
        treatments = batch.treatments[:, offset:, :][:, :, treatment_columns]  # (b, C + H, T)
        static = batch.static[:, static_columns]
        b = batch.size
        hours = batch.start_hours.astype(np.int64)[:, None] + np.arange(-context + 1, 1)[None, :]  # (b, C)
        inputs = self.encoder.encode(values, treatments[:, :context], treatments[:, 1 : context + 1], static, hours)
        state = self.encoder.carry_state(values)
        mask = torch.from_numpy(started).to(self.device)  # (b, C)
        positions = (mask.cumsum(1) - 1).clamp_min(0)  # (b, C)
        references = self.reference_matrix.to(self.device).expand(b, -1, -1)
        paths = np.empty((b, horizon, len(config.variables)), dtype=np.float32)
        cache, first = None, None
        step_inputs, step_positions = inputs.to(self.device), positions
        for step in range(horizon):
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda")):
                out = self.model(step_inputs, references, attention_mask=mask, position_ids=step_positions, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            dist = BinnedDistribution.from_logits(out.logits, self._centers(state.values, out.relative))  # (b, V, K)
            first = first or dist
            chosen = choose(dist).float().cpu().numpy()  # (b, V)
            paths[:, step] = chosen
            if step + 1 == horizon:
                break
            # the fed-back hour t + step + 1, given its planned treatment, planning the one after
            hour = batch.start_hours.astype(np.int64)[:, None] + step + 1  # (b, 1)
            given = treatments[:, context + step : context + step + 1]
            planned = treatments[:, context + step + 1 : context + step + 2]
            measured = np.where(self.feedback[None, :], chosen, np.nan)  # (b, V): hourly-charted variables only
            step_inputs, state = self.encoder.encode_step(state, measured, given, planned, static, hour)
            step_inputs = step_inputs.to(self.device)
            mask = torch.cat([mask, torch.ones(b, 1, dtype=mask.dtype, device=self.device)], dim=1)
            step_positions = step_positions[:, -1:] + 1
        return paths, first
