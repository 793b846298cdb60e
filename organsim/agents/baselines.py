"""Baseline forecasters every organ agent is reported beside: LOCF, a ridge autoregression and a GRU.

All three implement :class:`organsim.data.windows.Forecaster` (``predict(batch, horizon)`` returns
``(B, H, V)`` raw-unit forecasts; steps 2..H feed the model's own predictions back) and have
``fit(train, validation=None) -> self``. They forecast every catalog variable at once, so they
cover all nine systems.

Shared input encoding (:func:`encode_history`), in z-score space (training mean and std from a
:class:`~organsim.data.normalize.Normaliser` fitted on the training cohort):

- ``filled``: the value forward-filled within the window; before a variable's first observation in
  the window, 0 (= the training mean).
- ``observed``: 1 where the variable was measured that hour, else 0.
- ``since``: hours since the last observation, capped at ``since_cap_hours`` and divided by it
  (1 = never observed in the window or at least the cap ago).

In free-running steps a predicted value counts as observed (``observed = 1``, ``since = 0``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from scipy.linalg import LinAlgWarning
from sklearn.linear_model import Ridge
from torch import nn

from organsim.data.cohort import Cohort
from organsim.data.normalize import Normaliser
from organsim.data.windows import STARTS_SCHEMA, ForecastBatch, HourlyArrays
from organsim.utils.devices import resolve_device
from organsim.utils.seeding import seed_everything

DEFAULT_SINCE_CAP_HOURS = 48.0
LOSS_WEIGHTINGS = ("targets", "variables")


def _check_training_cohort(cohort: Cohort, role: str) -> None:
    """Refuse a training cohort that holds test stays (a leak that silently flatters every metric)."""
    if (cohort.stays["split"] == "test").any():
        raise ValueError(
            f"the {role} cohort contains test stays; pass cohort.subset(split='train') "
            "(and split='validation' for the validation cohort)"
        )


def encode_history(z: np.ndarray, since_cap_hours: float = DEFAULT_SINCE_CAP_HOURS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward-fill a z-scored window and describe its missingness.

    Parameters
    ----------
    z
        ``(B, L, V)`` z-scored values, NaN = not measured.
    since_cap_hours
        Cap of the hours-since-last-observation feature.

    Returns
    -------
    filled, observed, since
        Each ``(B, L, V)`` float32: forward-filled z (0 before the first observation), the
        observation indicator, and hours since the last observation / cap, in [0, 1].
    """
    observed = ~np.isnan(z)
    position = np.arange(z.shape[1])[None, :, None]
    last = np.maximum.accumulate(np.where(observed, position, -1), axis=1)  # (B, L, V) last observed index
    filled = np.take_along_axis(z, np.clip(last, 0, None), axis=1)
    filled = np.where(last >= 0, filled, 0.0)
    since = np.where(last >= 0, np.minimum(position - last, since_cap_hours), since_cap_hours) / since_cap_hours
    return filled.astype(np.float32), observed.astype(np.float32), since.astype(np.float32)


def _fed_back_since(predicted, since, since_cap_hours: float):
    """The since feature of a fed-back hour: 0 where a value was predicted, one hour older elsewhere.

    Works on numpy arrays and torch tensors alike (``predicted`` is 0/1, ``since`` in [0, 1]).
    """
    older = (since + 1.0 / since_cap_hours).clip(max=1.0)
    return older * (1 - predicted)


def _static_features(static: np.ndarray, codes: tuple[str, ...], normaliser: Normaliser) -> np.ndarray:
    """``(B, 2S)`` from raw statics ``(B, S)``: z-scores (0 where unknown) and known-indicators."""
    known = ~np.isnan(static)
    z = np.where(known, normaliser.zscore(static, codes), 0.0)
    return np.concatenate([z, known], axis=1).astype(np.float32)


# ====================================================================== LOCF
class LastObservationForecaster:
    """Last observation carried forward.

    Each variable's forecast for every future hour is its last observed value in the context; a
    variable never observed in the context is forecast at its training mean (the Normaliser's
    mean, so the catalog fallback for a variable never seen in training). Free-running it stays flat.
    """

    name = "locf"

    def __init__(self) -> None:
        self.normaliser_: Normaliser | None = None

    def fit(self, train: Cohort, validation: Cohort | None = None) -> LastObservationForecaster:
        """Learn the training means (``validation`` is not needed by LOCF and is ignored)."""
        _check_training_cohort(train, "training")
        self.normaliser_ = Normaliser.fit(train)
        return self

    def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        """``(B, horizon, V)`` raw-unit forecasts: the last context value (or training mean), repeated."""
        if self.normaliser_ is None:
            raise RuntimeError("call fit() before predict()")
        observed = ~np.isnan(batch.values)  # (B, C, V)
        last = np.maximum.accumulate(np.where(observed, np.arange(batch.context_hours)[None, :, None], -1), axis=1)[:, -1]
        value = np.take_along_axis(batch.values, np.clip(last, 0, None)[:, None, :], axis=1)[:, 0]  # (B, V)
        mean = self.normaliser_.mean[self.normaliser_.index(batch.variables)].astype(np.float32)
        value = np.where(last >= 0, value, mean)
        return np.repeat(value[:, None, :], horizon, axis=1).astype(np.float32)


# ====================================================================== start tables
def _starts_frame(stay_ids: np.ndarray, hours: np.ndarray) -> pl.DataFrame:
    """A start table (see :func:`~organsim.data.windows.choose_starts`) from two arrays."""
    return pl.DataFrame({"stay_id": stay_ids, "hour": hours}, schema=STARTS_SCHEMA)


# ====================================================================== ridge
def elapsed_hours(since: np.ndarray, since_cap_hours: float = DEFAULT_SINCE_CAP_HOURS) -> np.ndarray:
    """Hours from each variable's last observation to the next hour: ``since * cap + 1``.

    ``since`` is the scaled feature of :func:`encode_history` (hours since the last observation /
    cap), so the result is 1 for a variable observed in the last hour and ``cap + 1`` for one never
    observed (or observed at least the cap ago).
    """
    return since * np.float32(since_cap_hours) + np.float32(1.0)


class RidgeForecaster:
    """A linear autoregression over all variables: one ridge regression per variable.

    Features at the last context hour t (z-scored with the training Normaliser), ``F`` in all:
    forward-filled values of every variable at t-lags+1..t (``lags * V``), their observation
    indicators at t (``V``), hours since each variable's last observation (``V``, capped),
    treatments given at t-lags+1..t and planned for t+1 (``(lags + 1) * T``), statics and their
    known-indicators (``2 S``).

    Model: the change of variable v from its forward-filled z at t to its observed z at t+1 is
    ``e_v * (w_v . x + b_v)``, where ``e_v`` = :func:`elapsed_hours` since v's last observation.
    For an hourly vital (``e = 1``) this is a plain ridge autoregression on the change; for a lab
    drawn every ~24 h it learns a change *per hour*. That is what makes free-running sound: a
    predicted hour counts as observed (``e = 1`` afterwards), so each fed-back step adds one hour
    of change, where a model of the change between two lab draws, re-applied every hour, drifts
    without bound (on PhysioNet 2019 that version reached a 24-hour mean nMSE above 30).

    Fit: one :class:`sklearn.linear_model.Ridge` per variable (no separate intercept: ``b_v`` is
    the coefficient of the ``e_v`` column; the penalty, the same for every variable, is
    ``alpha_per_row`` times the number of training rows, so it scales with the cohort), on the
    training rows where that variable's next-hour value is observed (at most
    ``max_rows_per_variable``, a seeded sample). A variable with no
    more observed targets than features keeps zero coefficients, i.e. persistence (LOCF; the
    training mean where never observed in the context), and in free-running steps it stays
    unobserved (:attr:`predicted_` is False for it). Training rows are every hour t of every
    training (and, when given, validation) stay that has an hour t+1, encoded exactly as a
    forecast context of ``context_hours`` ending at t.

    Parameters
    ----------
    lags
        Hours of forward-filled history in the features (k).
    context_hours
        Forward-fill reach of the training rows (match the evaluation's context length).
    alpha_per_row
        Ridge penalty per training row. The default was chosen on the PhysioNet 2019 validation
        split (152,000 training rows): total penalties of 1e4 to 1e5 gave the same 1-hour mean
        nMSE within 0.002 and larger ones better free-running; 0.2 gives 3e4 there. Scaling the
        penalty with each variable's own row count instead, or standardising the columns,
        under-penalised the rarely measured labs and doubled the 24-hour error.
    max_rows_per_variable
        Most training rows per variable's regression (``None``: all).
    since_cap_hours
        Cap of the hours-since-observation feature.
    seed
        Seed of the row sample.
    """

    name = "ridge"

    def __init__(
        self,
        *,
        lags: int = 3,
        context_hours: int = 24,
        alpha_per_row: float = 0.2,
        max_rows_per_variable: int | None = 60_000,
        since_cap_hours: float = DEFAULT_SINCE_CAP_HOURS,
        seed: int = 0,
    ) -> None:
        if lags < 1:
            raise ValueError(f"lags must be >= 1, got {lags}")
        if context_hours < lags:
            raise ValueError(f"context_hours ({context_hours}) must be >= lags ({lags})")
        if alpha_per_row < 0:
            raise ValueError(f"alpha_per_row must be >= 0, got {alpha_per_row}")
        self.lags = lags
        self.context_hours = context_hours
        self.alpha_per_row = alpha_per_row
        self.max_rows_per_variable = max_rows_per_variable
        self.since_cap_hours = since_cap_hours
        self.seed = seed
        self.normaliser_: Normaliser | None = None
        self.coef_: np.ndarray | None = None  # (F, V): w_v per column
        self.rate_intercept_: np.ndarray | None = None  # (V,): b_v
        self.n_targets_: np.ndarray | None = None  # (V,)
        self.predicted_: np.ndarray | None = None  # (V,) bool: has fitted coefficients

    # ---------------------------------------------------------------- features
    @staticmethod
    def _features(filled: np.ndarray, observed_now: np.ndarray, since_now: np.ndarray, treatments_z: np.ndarray, static: np.ndarray) -> np.ndarray:
        """``(B, F)`` from filled ``(B, lags, V)``, observed and since at t ``(B, V)``,
        treatments ``(B, lags + 1, T)`` and static features ``(B, 2S)``."""
        b = filled.shape[0]
        return np.concatenate([filled.reshape(b, -1), observed_now, since_now, treatments_z.reshape(b, -1), static], axis=1)

    def training_rows(self, cohort: Cohort) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features ``(N, F)``, next-hour z-changes ``(N, V)`` (NaN = not observed) and elapsed hours ``(N, V)``.

        Computed on the whole cohort at once: each variable's last observation is tracked along
        the stacked stay blocks, and a value counts as filled only when that observation lies
        inside the ``context_hours`` window ending at t, so the rows equal the features
        :meth:`predict` computes from a :class:`ForecastBatch` with that context.
        """
        normaliser, k, cap = self.normaliser_, self.lags, self.since_cap_hours
        arrays = HourlyArrays.from_cohort(cohort)
        z = normaliser.zscore(arrays.values, arrays.variables)  # (R + 1, V), last row = pad
        observed = ~np.isnan(z)
        n_rows = len(z)
        lengths = arrays.last_hour - arrays.first_hour + 1
        block_start = np.append(np.repeat(arrays.offsets, lengths), n_rows - 1)  # (R + 1,)
        last = np.maximum.accumulate(np.where(observed, np.arange(n_rows, dtype=np.int64)[:, None], -1), axis=0)
        last = np.where(last >= block_start[:, None], last, -1)  # no carry across stays
        last[-1] = -1
        every = arrays.starts(horizon=1, per_stay=None, min_context=1, seed=0)  # every (stay, t) with a t+1
        stay_ids, hours = every["stay_id"].to_numpy(), every["hour"].to_numpy()
        positions = arrays.positions_of(stay_ids)
        hour_grid = hours.astype(np.int64)[:, None] + np.arange(-k + 1, 2)[None, :]  # (N, k + 1): t-k+1 .. t+1
        rows = arrays.rows_of(positions, hour_grid)
        window_start = rows[:, k - 1] - self.context_hours + 1  # (N,), row of hour t-C+1
        lag_last = last[rows[:, :k]]  # (N, k, V)
        valid = (lag_last >= 0) & (lag_last >= window_start[:, None, None])
        filled = np.where(valid, z[np.clip(lag_last, 0, None), np.arange(z.shape[1])[None, None, :]], 0.0).astype(np.float32)
        now = rows[:, k - 1]
        since = (np.where(valid[:, -1], np.minimum(now[:, None] - lag_last[:, -1], cap), cap) / cap).astype(np.float32)
        treatments_z = normaliser.zscore(arrays.treatments[rows], arrays.treatment_codes)  # (N, k + 1, T)
        static = _static_features(arrays.static[positions], arrays.static_codes, normaliser)
        x = self._features(filled, observed[now].astype(np.float32), since, treatments_z, static)
        y = z[rows[:, k]] - filled[:, -1]  # change from the filled value at t to the observed value at t+1
        return x, y, elapsed_hours(since, cap)

    def _encode(self, batch: ForecastBatch):
        normaliser = self.normaliser_
        z = normaliser.zscore(batch.values, batch.variables)  # (B, C, V)
        filled, observed, since = encode_history(z, self.since_cap_hours)
        treatments_z = normaliser.zscore(batch.treatments, batch.treatment_codes)  # (B, C + H, T)
        return filled, observed, since, treatments_z, _static_features(batch.static, batch.static_codes, normaliser)

    # ---------------------------------------------------------------- fit / predict
    def fit(self, train: Cohort, validation: Cohort | None = None) -> RidgeForecaster:
        """Fit on every one-step problem of ``train`` (and of ``validation``, when given, as extra rows)."""
        _check_training_cohort(train, "training")
        self.normaliser_ = Normaliser.fit(train)
        parts = [self.training_rows(train)]
        if validation is not None:
            _check_training_cohort(validation, "validation")
            parts.append(self.training_rows(validation))
        x, y, elapsed = (np.concatenate([p[i] for p in parts]) for i in range(3))  # (N, F), (N, V), (N, V)
        rng = np.random.default_rng(self.seed)
        n_features, n_variables = x.shape[1], y.shape[1]
        penalty = self.alpha_per_row * len(x)
        self.coef_ = np.zeros((n_features, n_variables), dtype=np.float32)
        self.rate_intercept_ = np.zeros(n_variables, dtype=np.float32)
        self.n_targets_ = np.zeros(n_variables, dtype=np.int64)
        self.predicted_ = np.zeros(n_variables, dtype=bool)
        for v in range(n_variables):
            rows = np.flatnonzero(~np.isnan(y[:, v]))
            self.n_targets_[v] = len(rows)
            if len(rows) <= n_features:
                continue  # too few targets for a stable fit: keep persistence
            self.predicted_[v] = True
            if self.max_rows_per_variable is not None and len(rows) > self.max_rows_per_variable:
                rows = np.sort(rng.choice(rows, self.max_rows_per_variable, replace=False))
            hours = elapsed[rows, v, None].astype(np.float64)  # (n, 1)
            design = np.concatenate([x[rows] * hours, hours], axis=1)  # (n, F + 1): e_v * [x, 1]
            with warnings.catch_warnings():
                # e_v spans 1..cap+1, so the Gram matrix is ill-conditioned; the penalty keeps the
                # float64 Cholesky solve stable and scipy's condition warning is expected here
                warnings.simplefilter("ignore", LinAlgWarning)
                model = Ridge(alpha=penalty, fit_intercept=False, solver="cholesky").fit(design, y[rows, v])
            self.coef_[:, v] = model.coef_[:-1]
            self.rate_intercept_[v] = model.coef_[-1]
        return self

    def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        """``(B, horizon, V)`` raw-unit forecasts; steps 2..H feed predictions back as observed."""
        if self.coef_ is None:
            raise RuntimeError("call fit() before predict()")
        k = self.lags
        if batch.context_hours < k:
            raise ValueError(f"the batch has {batch.context_hours} context hours; the ridge model needs >= lags = {k}")
        if batch.horizon < horizon:
            raise ValueError(f"the batch plans treatments for {batch.horizon} hours; horizon {horizon} asked")
        filled, observed, since, treatments_z, static = self._encode(batch)
        c = batch.context_hours
        filled, observed, since = filled[:, -k:], observed[:, -1], since[:, -1]
        out = np.empty((batch.size, horizon, len(batch.variables)), dtype=np.float32)
        for step in range(horizon):
            # treatments at hours t+step-k+1 .. t+step+1 = batch indices c+step-k .. c+step
            x = self._features(filled, observed, since, treatments_z[:, c + step - k : c + step + 1], static)
            rate = x @ self.coef_ + self.rate_intercept_  # (B, V), z change per hour
            z_next = filled[:, -1] + elapsed_hours(since, self.since_cap_hours) * rate
            out[:, step] = z_next
            filled = np.concatenate([filled[:, 1:], z_next[:, None]], axis=1)
            # a predicted value counts as observed; a carried (unfitted) variable stays unobserved
            observed = np.broadcast_to(self.predicted_, observed.shape).astype(np.float32)
            since = _fed_back_since(observed, since, self.since_cap_hours)
        return self.normaliser_.unzscore(out, batch.variables)


# ====================================================================== GRU
@dataclass(frozen=True)
class GRUConfig:
    """Architecture and training settings of :class:`GRUForecaster`.

    Attributes
    ----------
    hidden_size
        GRU state size.
    num_layers
        Stacked GRU layers.
    dropout
        Dropout between GRU layers (only with ``num_layers > 1``).
    window_hours
        Length of the training windows (one random window per stay and epoch).
    max_epochs
        Upper bound on epochs.
    patience
        Stop after this many epochs without a better validation loss (needs a validation cohort).
    batch_size
        Windows per optimiser step.
    learning_rate
        AdamW learning rate.
    weight_decay
        AdamW weight decay.
    grad_clip
        Gradient-norm clip.
    loss_weighting
        ``"targets"``: every observed target counts once (hourly vitals dominate);
        ``"variables"``: a target's weight is inversely proportional to how often its variable is
        observed in training, so every variable counts about equally, as in the nMSE metric.
    since_cap_hours
        Cap of the hours-since-observation feature.
    """

    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    window_hours: int = 48
    max_epochs: int = 20
    patience: int = 3
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    loss_weighting: str = "variables"
    since_cap_hours: float = DEFAULT_SINCE_CAP_HOURS

    def __post_init__(self) -> None:
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError(f"hidden_size and num_layers must be >= 1, got {self.hidden_size}, {self.num_layers}")
        if self.window_hours < 2:
            raise ValueError(f"window_hours must be >= 2 (an input hour and its next hour), got {self.window_hours}")
        if self.max_epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("max_epochs, patience and batch_size must be >= 1")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {self.loss_weighting!r}")


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: unchanged), then restore."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class GRURegressor(nn.Module):
    """GRU over hourly inputs; predicts each variable's next-hour z-score.

    Input per hour: ``[filled (V), observed (V), since (V), treatments now (T), treatments planned
    next hour (T), static z (S), static known (S)]``. The next-hour prediction ``(B, L, V)`` is
    ``filled + elapsed * predicted * head(gru(inputs))``: the head gives a change per hour, scaled
    by the hours since each variable's last observation (:func:`elapsed_hours`, as in
    :class:`RidgeForecaster`); ``predicted`` (a ``(V,)`` 0/1 buffer) zeroes the change of variables
    the training data cannot teach, which are carried forward. The head starts near zero, so an
    untrained model forecasts persistence.
    ``forward(inputs, filled, elapsed, hidden=None, targets=None, weights=None)`` returns
    ``(prediction, hidden)``, and the MSE weighted by ``weights`` (0 where the target was not
    observed) as a third item when ``targets`` are given.
    """

    def __init__(self, n_inputs: int, predicted: torch.Tensor, config: GRUConfig) -> None:
        super().__init__()
        n_variables = len(predicted)
        self.register_buffer("predicted", predicted.float())
        self.gru = nn.GRU(
            n_inputs, config.hidden_size, num_layers=config.num_layers, batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden_size, n_variables)
        # start near persistence: the change is scaled by up to cap + 1 hours, so a default-sized
        # head would begin with forecasts tens of standard deviations off
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs, filled, elapsed, hidden=None, targets=None, weights=None):
        out, hidden = self.gru(inputs, hidden)  # (B, L, hidden)
        prediction = filled + elapsed * self.predicted * self.head(out)  # (B, L, V)
        if targets is None:
            return prediction, hidden
        loss = ((prediction - targets) ** 2 * weights).sum() / weights.sum().clamp_min(1e-6)
        return prediction, hidden, loss


class GRUForecaster:
    """A GRU multi-output regressor over all variables, trained with a weighted one-step MSE.

    Training: each epoch draws one random window of ``window_hours`` from every training stay
    (seeded), encodes it like a forecast context (:func:`encode_history`, forward fill within the
    window) and minimises the (weighted, see ``loss_weighting``) MSE of the next-hour z-score of
    every *observed* target, with AdamW.
    With a validation cohort the state with the lowest validation loss (on fixed seeded windows)
    is kept and training stops after ``patience`` epochs without improvement.

    Prediction: the GRU reads the context; step 1 comes from the last context hour; each later
    step feeds the previous prediction back as an observed hour (with that hour's planned
    treatments). Variables with fewer than two (or only constant) training values cannot be
    learnt: they are carried forward and stay unobserved (:attr:`predicted_` is False for them).
    Same seed -> same model and forecasts.

    Parameters
    ----------
    config
        :class:`GRUConfig`.
    seed
        Seed for initialisation, window draws and batch order.
    device
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
    num_threads
        torch intra-op CPU threads while fitting and predicting (restored afterwards); ``None``
        keeps torch's setting. On a busy 2-core machine 1 thread was 9x faster than 2.
    progress
        Optional ``callable(epoch, train_loss, validation_loss)`` called after every epoch.
    """

    name = "gru"

    def __init__(
        self,
        config: GRUConfig | None = None,
        *,
        seed: int = 0,
        device: str = "auto",
        num_threads: int | None = None,
        progress: Callable[[int, float, float | None], None] | None = None,
    ) -> None:
        self.config = config or GRUConfig()
        self.seed = seed
        self.device = resolve_device(device)
        self.num_threads = num_threads
        self.progress = progress
        self.normaliser_: Normaliser | None = None
        self.predicted_: np.ndarray | None = None  # (V,) bool
        self.target_weights_: np.ndarray | None = None  # (V,)
        self.model_: GRURegressor | None = None
        self.history_: list[dict[str, float]] = []

    # ---------------------------------------------------------------- encoding
    def _inputs(self, batch: ForecastBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-hour inputs ``(B, C, F)``, filled z, elapsed hours and z values (each ``(B, C, V)``) of a context."""
        normaliser = self.normaliser_
        z = normaliser.zscore(batch.values, batch.variables)
        filled, observed, since = encode_history(z, self.config.since_cap_hours)
        c = batch.context_hours
        treatments_z = normaliser.zscore(batch.treatments, batch.treatment_codes)  # (B, C + H, T), H >= 1
        static = np.repeat(_static_features(batch.static, batch.static_codes, normaliser)[:, None, :], c, axis=1)
        inputs = np.concatenate([filled, observed, since, treatments_z[:, :c], treatments_z[:, 1 : c + 1], static], axis=2)
        return inputs, filled, elapsed_hours(since, self.config.since_cap_hours), z

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)

    def _window_batch(self, arrays: HourlyArrays, positions: np.ndarray, end_hours: np.ndarray):
        """Inputs, filled, elapsed, targets and target-weight tensors of training windows ending at ``end_hours``."""
        starts = _starts_frame(arrays.stay_ids[positions], end_hours.astype(np.int32))
        batch = arrays.batch(starts, context_hours=self.config.window_hours, horizon=1)
        inputs, filled, elapsed, z = self._inputs(batch)
        targets = z[:, 1:]  # next hour of inputs[:, :-1]
        weights = np.where(np.isnan(targets), 0.0, self.target_weights_)  # (B, L - 1, V)
        return (
            self._tensor(inputs[:, :-1]),
            self._tensor(filled[:, :-1]),
            self._tensor(elapsed[:, :-1]),
            self._tensor(np.nan_to_num(targets)),
            self._tensor(weights),
        )

    def _target_weights(self, n_observed: np.ndarray) -> np.ndarray:
        """``(V,)`` loss weight of an observed target of each variable (see ``loss_weighting``)."""
        if self.config.loss_weighting == "targets":
            return np.ones(len(n_observed), dtype=np.float32)
        if self.config.loss_weighting == "variables":
            inverse = np.where(n_observed > 0, 1.0 / np.maximum(n_observed, 1), 0.0)
            return (inverse / inverse[n_observed > 0].mean()).astype(np.float32)
        raise ValueError(f"unknown loss_weighting {self.config.loss_weighting!r}")

    def _draw_ends(self, arrays: HourlyArrays, rng: np.random.Generator) -> np.ndarray:
        """One random window end hour per stay (the whole stay when it is shorter than the window)."""
        lo = np.minimum(arrays.first_hour + self.config.window_hours - 1, arrays.last_hour)
        return rng.integers(lo, arrays.last_hour + 1)

    # ---------------------------------------------------------------- fit / predict
    def fit(self, train: Cohort, validation: Cohort | None = None) -> GRUForecaster:
        """Train on ``train``; with ``validation``, keep the best validation state and stop early."""
        with _torch_threads(self.num_threads):
            return self._fit(train, validation)

    def _fit(self, train: Cohort, validation: Cohort | None) -> GRUForecaster:
        _check_training_cohort(train, "training")
        if validation is not None:
            _check_training_cohort(validation, "validation")
        rng = seed_everything(self.seed)
        cfg = self.config
        self.normaliser_ = Normaliser.fit(train)
        arrays = HourlyArrays.from_cohort(train)
        n_variables = len(arrays.variables)
        n_inputs = 3 * n_variables + 2 * len(arrays.treatment_codes) + 2 * len(arrays.static_codes)
        n_observed = self.normaliser_.n_observed[self.normaliser_.index(arrays.variables)]
        self.predicted_ = n_observed > 0
        self.target_weights_ = self._target_weights(n_observed)
        self.model_ = GRURegressor(n_inputs, torch.from_numpy(self.predicted_), cfg).to(self.device)
        optimiser = torch.optim.AdamW(self.model_.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        validation_windows = None
        if validation is not None:
            val_arrays = HourlyArrays.from_cohort(validation)
            val_rng = np.random.default_rng(self.seed + 1)
            validation_windows = (val_arrays, self._draw_ends(val_arrays, val_rng))
        best_loss, best_state, stale = math.inf, None, 0
        self.history_ = []
        for epoch in range(cfg.max_epochs):
            train_loss = self._train_epoch(arrays, optimiser, rng)
            record = {"epoch": epoch + 1, "train_loss": train_loss}
            if validation_windows is not None:
                val_loss = self._loss(*validation_windows)
                record["validation_loss"] = val_loss
                if val_loss < best_loss - 1e-6:
                    best_loss, best_state, stale = val_loss, copy.deepcopy(self.model_.state_dict()), 0
                else:
                    stale += 1
            self.history_.append(record)
            if self.progress is not None:
                self.progress(epoch + 1, train_loss, record.get("validation_loss"))
            if validation_windows is not None and stale >= cfg.patience:
                break
        if best_state is not None:
            self.model_.load_state_dict(best_state)
        self.model_.eval()
        return self

    def _train_epoch(self, arrays: HourlyArrays, optimiser: torch.optim.Optimizer, rng: np.random.Generator) -> float:
        """One pass over one random window per stay; returns the mean training loss."""
        self.model_.train()
        ends = self._draw_ends(arrays, rng)
        order = rng.permutation(len(arrays.stay_ids))
        losses = []
        for lo in range(0, len(order), self.config.batch_size):
            positions = order[lo : lo + self.config.batch_size]
            loss = self.train_step(arrays, positions, ends[positions], optimiser)
            losses.append(loss)
        return float(np.mean(losses))

    def train_step(self, arrays: HourlyArrays, positions: np.ndarray, end_hours: np.ndarray, optimiser: torch.optim.Optimizer) -> float:
        """One optimiser step on the windows of stays ``positions`` ending at ``end_hours``; returns the loss."""
        inputs, filled, elapsed, targets, weights = self._window_batch(arrays, positions, end_hours)
        _, _, loss = self.model_(inputs, filled, elapsed, targets=targets, weights=weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model_.parameters(), self.config.grad_clip)
        optimiser.step()
        return float(loss.detach())

    @torch.no_grad()
    def _loss(self, arrays: HourlyArrays, ends: np.ndarray) -> float:
        """Weighted one-step MSE over fixed windows (one per stay), as in training."""
        self.model_.eval()
        total, weight = 0.0, 0.0
        for lo in range(0, len(ends), 512):
            positions = np.arange(lo, min(lo + 512, len(ends)))
            inputs, filled, elapsed, targets, weights = self._window_batch(arrays, positions, ends[positions])
            prediction, _ = self.model_(inputs, filled, elapsed)
            total += float((((prediction - targets) ** 2) * weights).sum())
            weight += float(weights.sum())
        return total / max(weight, 1e-6)

    @torch.no_grad()
    def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        """``(B, horizon, V)`` raw-unit forecasts; steps 2..H feed predictions back as observed."""
        if self.model_ is None:
            raise RuntimeError("call fit() before predict()")
        if batch.horizon < horizon:
            raise ValueError(f"the batch plans treatments for {batch.horizon} hours; horizon {horizon} asked")
        self.model_.eval()
        out = np.empty((batch.size, horizon, len(batch.variables)), dtype=np.float32)
        with _torch_threads(self.num_threads):
            for lo in range(0, batch.size, 2048):
                out[lo : lo + 2048] = self._predict_chunk(batch.select(slice(lo, lo + 2048)), horizon)
        return self.normaliser_.unzscore(out, batch.variables)

    def _predict_chunk(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        """z-space forecasts ``(b, horizon, V)`` of one chunk."""
        inputs, filled, elapsed, _ = self._inputs(batch)
        c = batch.context_hours
        treatments_z = self._tensor(self.normaliser_.zscore(batch.treatments, batch.treatment_codes))  # (b, C + H, T)
        static = self._tensor(_static_features(batch.static, batch.static_codes, self.normaliser_))  # (b, 2S)
        prediction, hidden = self.model_(self._tensor(inputs), self._tensor(filled), self._tensor(elapsed))
        z_next = prediction[:, -1]  # (b, V), hour t+1
        steps = [z_next]
        n_variables = z_next.shape[1]
        predicted = self.model_.predicted.expand_as(z_next)
        since = self._tensor(inputs[:, -1, 2 * n_variables : 3 * n_variables])
        ones = torch.ones_like(z_next)
        for step in range(1, horizon):
            since = _fed_back_since(predicted, since, self.config.since_cap_hours)
            # the fed-back hour is t+step; its treatments are batch index c+step-1, planned next c+step
            row = torch.cat([z_next, predicted, since, treatments_z[:, c + step - 1], treatments_z[:, c + step], static], dim=1)
            prediction, hidden = self.model_(row[:, None, :], z_next[:, None, :], ones[:, None, :], hidden)
            z_next = prediction[:, -1]
            steps.append(z_next)
        return torch.stack(steps, dim=1).cpu().numpy()
