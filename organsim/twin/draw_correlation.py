"""Correlated draws within a simulated hour: a Gaussian copula over the agents' predictive distributions.

The twin draws each variable of a simulated hour by inverting its predictive distribution at a
uniform number ``u = Phi(z)`` (:class:`organsim.twin.twin.PersistentDraws`). With independent
normal scores ``z`` the draws of one hour are independent given the past, but real vitals co-move:
SBP, DBP and MAP come from one arterial waveform, and heart rate and blood pressure respond
together. In a synthetic PhysioNet 2019 cohort (``bench/synthesize.py``, seed 0) the hour-to-hour
changes of SBP and DBP were uncorrelated (0.02; real stays 0.50), and MAP (derived from them in
:mod:`organsim.synth.consistency`) changed less from hour to hour than in real stays (median
per-stay mean absolute change 6.3 against 7.4 mmHg), the real-vs-synthetic detector's top feature.
With the correlation below fitted on the validation split: 0.51 and 7.8 mmHg, detection AUROC
0.980 -> 0.967, and the twin's raw 90 % bands covered 76.4 % of held-out values instead of 73.8 %.

:class:`DrawCorrelation` is the ``(V, V)`` correlation ``R`` of the normal scores of the agents'
one-step forecast errors, fitted by :func:`fit_draw_correlation`:

1. teacher-forced one-step forecasts over windows of the given stays (pass the validation split:
   stays the agents did not learn from), every agent reading every other system (``"all"``
   references: the twin's setting without a reference policy); the windows are cut and encoded as
   in training (:func:`organsim.agents.training.tiled_windows`, :func:`window_tensors`), and one
   window batch is read hour by hour with the decoder's key/value cache;
2. the randomized probability integral transform (PIT) of each observed value under its binned
   predictive distribution, in the bin the tokenizer assigns it (a value bin, or a change bin from
   the last observed value): ``u = F(k - 1) + V p_k`` with ``V ~ U(0, 1)``, where ``F`` is the
   cumulative probability over bins in index order (the order the twin's draws invert) and ``p_k``
   the probability of the observed bin; if the forecasts are calibrated, ``u`` is uniform and
   ``z = Phi^-1(u)`` standard normal (:func:`randomized_pit`);
3. the Pearson correlation of ``z`` between each pair of variables over the hours where both are
   observed, where at least ``min_pairs`` such hours exist, else 0
   (:func:`pairwise_complete_correlation`);
4. the nearest positive-definite correlation matrix: eigenvalues clipped at
   :data:`MIN_EIGENVALUE`, then rescaled to a unit diagonal (:func:`nearest_correlation`; numpy's
   ``eigh``: no installed library offers it; statsmodels' ``corr_clipped`` is the same method).

The twin then draws the hour's normal scores as ``e @ L.T`` with ``L`` the Cholesky factor of
``R`` and ``e`` independent standard normals: each score stays standard normal (``R`` has a unit
diagonal), so every variable's draw keeps its predictive distribution, and only the joint
distribution changes.

The same scores, read in consecutive hours of a window, give each variable's serial (lag-1)
correlation (:func:`serial_correlation`, :attr:`DrawCorrelation.serial`). On PhysioNet 2019 the
one-step forecasts of the vitals revert less to the stay's recent level than the next real hour
does (teacher forced, test stays: slope of the change on the deviation from the last 24 hours'
mean -0.21 for the heart rate against -0.27 real, SBP -0.36 against -0.48, MAP -0.44 against
-0.52), so an hour the forecast did not expect is followed by one it did not expect in the other
direction: the serial correlation of the validation scores was -0.10 (HR), -0.09 (SBP), -0.07
(DBP), -0.06 (MAP) (about 0 at lags 2 and 3). The twin draws the fed-back variables' scores of
consecutive hours with their serial correlation (:class:`organsim.twin.twin.PersistentDraws`, an
AR(1) process of the scores) instead of independently, which keeps each hour's predictive
distribution and puts back the reversion its forecasts miss: in free-running 32-hour rollouts
from 439 test stays the median per-window SD went from 9.15 to 8.81 bpm (HR; real 7.13), 15.4 to
14.7 mmHg (SBP; 13.6) and 10.4 to 9.9 mmHg (MAP; 9.2), the lag-1 autocorrelation within a window
from 0.73 to 0.68 (HR; real 0.62), with hour-to-hour changes as large as before (root mean square
7.5 -> 7.8 bpm, real 7.7). The rest of the excess is the forecasts' own conditional mean (free
running they revert less still: slope -0.17 against -0.27 real for HR, -0.21 with the serial
correlation), which only training can change. The serial correlation acts within one rollout and
across the rollout calls that hand on the rollout's draw state (``draws`` of
:meth:`organsim.twin.PatientTwin.rollout`, :attr:`organsim.twin.Rollout.draws`), as the
synthetic-cohort generator (:mod:`organsim.synth.generate`, one hour per call) does for the vitals
of every stay. In its PhysioNet 2019 cohort (4,200 stays, ``bench/synthesize.py``, seed 0) that
took the median per-stay SD from 9.11 to 8.75 bpm (HR; real 7.33), 15.8 to 15.3 mmHg (SBP; 13.6)
and 10.5 to 10.3 mmHg (MAP; 9.3), with the mean absolute hour-to-hour change a little larger (MAP
7.87 -> 8.03, real 7.38) and the detection AUROC as it was (0.967 -> 0.968). The correlation is saved beside the model (``draw_correlation.json``;
``organsim calibrate``) and loaded with it (:meth:`organsim.twin.PatientTwin.load`); a model
without one draws independently, exactly as before.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from organsim.agents.checkpoint import TrainedAgents
from organsim.agents.forecaster import AgentRuntime
from organsim.agents.model import HourInputs, reference_sets
from organsim.agents.training import tiled_windows, window_tensors
from organsim.data import Cohort
from organsim.data.windows import HourlyArrays
from organsim.twin.saved_module import read_saved_json
from organsim.utils.errors import DataError
from organsim.utils.io import atomic_write_text

if TYPE_CHECKING:
    from organsim.twin.twin import PatientTwin

DRAW_CORRELATION_FILE = "draw_correlation.json"
DRAW_CORRELATION_FORMAT = "organsim.draw_correlation/1"
MIN_PAIRS = 200
"""Fewest hours with both variables observed for their correlation to be estimated (else 0)."""
MIN_EIGENVALUE = 1e-4
"""Smallest eigenvalue kept by :func:`nearest_correlation` (before rescaling to a unit diagonal)."""
PIT_EPSILON = 1e-9
"""PIT values are kept in ``[eps, 1 - eps]`` so their normal scores stay finite (|z| <= 6)."""
REFERENCES = "all"
"""Reference setting of the one-step forecasts the correlation is fitted on."""


def randomized_pit(probs: torch.Tensor, bins: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Randomized probability integral transform of observed bins under binned distributions.

    Parameters
    ----------
    probs
        ``(..., K)`` probabilities over bins (the order the twin's draws invert: bin index).
    bins
        ``(...)`` int64 0-based observed bin.
    noise
        ``(...)`` uniform numbers in ``[0, 1)``, one per value.

    Returns
    -------
    torch.Tensor
        ``(...)`` float64 ``u = F(k - 1) + noise * p_k`` in ``[PIT_EPSILON, 1 - PIT_EPSILON]``:
        uniform on (0, 1) when the observed bins follow ``probs``.
    """
    probs = probs.double()
    index = bins[..., None]
    p_observed = torch.gather(probs, -1, index)[..., 0]
    below = torch.gather(probs.cumsum(-1), -1, index)[..., 0] - p_observed
    return (below + noise.double() * p_observed).clamp(PIT_EPSILON, 1 - PIT_EPSILON)


def pairwise_complete_correlation(scores: np.ndarray, min_pairs: int = MIN_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of every pair of columns over the rows where both are observed.

    Parameters
    ----------
    scores
        ``(N, V)`` values, NaN = not observed.
    min_pairs
        Fewest rows with both columns observed for a pair's correlation to be estimated.

    Returns
    -------
    correlation
        ``(V, V)`` float64, 1 on the diagonal, 0 for pairs with fewer than ``min_pairs`` rows or
        a column constant over them.
    n_pairs
        ``(V, V)`` int64 rows with both columns observed (the diagonal: rows with the column observed).
    """
    observed = ~np.isnan(scores)
    mask = observed.astype(np.float64)
    values = np.where(observed, scores, 0.0).astype(np.float64)
    n_pairs = mask.T @ mask  # (V, V)
    sums = values.T @ mask  # [i, j]: sum of column i over rows where j is observed too
    squares = (values**2).T @ mask
    cross = values.T @ values
    with np.errstate(invalid="ignore", divide="ignore"):
        covariance = n_pairs * cross - sums * sums.T
        variance = n_pairs * squares - sums**2  # [i, j]: of column i over the rows shared with j
        correlation = covariance / np.sqrt(variance * variance.T)
    estimated = (n_pairs >= min_pairs) & np.isfinite(correlation)
    correlation = np.clip(np.where(estimated, correlation, 0.0), -1.0, 1.0)
    np.fill_diagonal(correlation, 1.0)
    return correlation, n_pairs.round().astype(np.int64)


def nearest_correlation(matrix: np.ndarray, min_eigenvalue: float = MIN_EIGENVALUE) -> np.ndarray:
    """The positive-definite correlation matrix nearest ``matrix`` by eigenvalue clipping.

    The symmetric part's eigenvalues are clipped at ``min_eigenvalue`` and the result rescaled to a
    unit diagonal (``D^-1/2 A D^-1/2``, which keeps it positive definite). A matrix already
    positive definite with eigenvalues above the floor comes back unchanged (up to rounding).

    Parameters
    ----------
    matrix
        ``(V, V)`` symmetric, unit diagonal (e.g. pairwise-complete correlations, possibly indefinite).
    min_eigenvalue
        Floor of the eigenvalues, > 0.

    Returns
    -------
    np.ndarray
        ``(V, V)`` float64 symmetric positive-definite matrix with a unit diagonal.
    """
    if min_eigenvalue <= 0:
        raise ValueError(f"min_eigenvalue must be > 0, got {min_eigenvalue}")
    symmetric = (np.asarray(matrix, dtype=np.float64) + np.asarray(matrix, dtype=np.float64).T) / 2
    eigenvalues, eigenvectors = np.linalg.eigh(symmetric)
    clipped = (eigenvectors * np.maximum(eigenvalues, min_eigenvalue)) @ eigenvectors.T
    scale = 1.0 / np.sqrt(np.diag(clipped))
    out = clipped * scale[:, None] * scale[None, :]
    out = (out + out.T) / 2
    np.fill_diagonal(out, 1.0)
    return out


@dataclass(frozen=True)
class DrawCorrelation:
    """The correlation of the normal scores of one simulated hour's draws (see the module docstring).

    Attributes
    ----------
    variables
        Variable codes, the order of both axes (the model's variables).
    correlation
        ``(V, V)`` float64 symmetric positive-definite correlation with a unit diagonal.
    n_pairs
        ``(V, V)`` hours with both variables observed (the diagonal: observed values of each).
    min_pairs
        Fewest such hours that estimated a pair's correlation; pairs with fewer are 0 before the
        positive-definite projection.
    score_sd
        ``(V,)`` standard deviation of each variable's normal scores (NaN without observed values):
        near 1 when its one-step forecasts are calibrated.
    meta
        How it was fitted (stays, windows, hours, references, seed).
    serial
        ``(V,)`` correlation of each variable's normal scores in consecutive hours of a window
        (:func:`serial_correlation`; 0 where fewer than ``min_pairs`` such hour pairs were observed,
        and in files written before it was fitted). The twin draws the scores of the variables it
        feeds back with it.
    """

    variables: tuple[str, ...]
    correlation: np.ndarray
    n_pairs: np.ndarray
    min_pairs: int
    score_sd: np.ndarray
    meta: dict[str, Any]
    serial: np.ndarray | None = None

    def __post_init__(self) -> None:
        serial = np.zeros(len(self.variables)) if self.serial is None else np.asarray(self.serial, dtype=np.float64)
        if serial.shape != (len(self.variables),) or not np.all(np.abs(serial) < 1):
            raise ValueError(f"serial must hold {len(self.variables)} correlations in (-1, 1), got {serial}")
        object.__setattr__(self, "serial", serial)

    @property
    def estimated(self) -> np.ndarray:
        """``(V, V)`` bool: the pair had at least :attr:`min_pairs` hours (the diagonal is False)."""
        out = self.n_pairs >= self.min_pairs
        np.fill_diagonal(out, False)
        return out

    @property
    def pairs_estimated(self) -> int:
        """Number of variable pairs (unordered) whose correlation was estimated."""
        return int(np.triu(self.estimated, k=1).sum())

    def cholesky(self) -> np.ndarray:
        """``(V, V)`` float64 lower-triangular ``L`` with ``L @ L.T == correlation``."""
        return np.linalg.cholesky(self.correlation)

    def strongest(self, count: int) -> list[tuple[str, str, float, int]]:
        """Up to ``count`` estimated pairs with the largest absolute correlation: ``(a, b, r, hours)``, strongest first."""
        rows, columns = np.nonzero(np.triu(self.estimated, k=1))
        order = np.argsort(-np.abs(self.correlation[rows, columns]), kind="stable")[:count]
        return [(self.variables[rows[i]], self.variables[columns[i]], float(self.correlation[rows[i], columns[i]]),
                 int(self.n_pairs[rows[i], columns[i]])) for i in order]

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DRAW_CORRELATION_FORMAT, "variables": list(self.variables), "min_pairs": self.min_pairs,
            "correlation": self.correlation.tolist(), "n_pairs": self.n_pairs.astype(int).tolist(),
            "score_sd": [None if not np.isfinite(s) else float(s) for s in self.score_sd], "meta": self.meta,
            "serial": [float(s) for s in self.serial],
        }

    def save(self, model_dir: str | Path) -> Path:
        """Write ``draw_correlation.json`` into ``model_dir`` (atomically); returns its path."""
        path = Path(model_dir) / DRAW_CORRELATION_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> DrawCorrelation:
        """The correlation saved in ``model_dir`` (a DataError naming the file when it is malformed)."""
        path = Path(model_dir) / DRAW_CORRELATION_FILE
        data = read_saved_json(path, fmt=DRAW_CORRELATION_FORMAT, what="draw correlation",
                               missing="no draw correlation here: run `organsim calibrate` on the model")
        try:
            variables = tuple(str(v) for v in data["variables"])
            correlation = np.asarray(data["correlation"], dtype=np.float64)
            n_pairs = np.asarray(data["n_pairs"], dtype=np.int64)
            score_sd = np.asarray([np.nan if s is None else s for s in data["score_sd"]], dtype=np.float64)
            min_pairs = int(data["min_pairs"])
            serial = np.asarray(data.get("serial", np.zeros(len(variables))), dtype=np.float64)  # absent: fitted before serial
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed draw correlation: {exc}", file=path) from exc
        size = (len(variables), len(variables))
        if correlation.shape != size or n_pairs.shape != size or score_sd.shape != (len(variables),) or serial.shape != (len(variables),):
            raise DataError(f"correlation and n_pairs must be {size[0]} x {size[0]}, score_sd and serial {size[0]} long (one per variable)",
                            file=path)
        if not np.all(np.abs(serial) < 1):
            raise DataError("the serial correlations must lie in (-1, 1)", file=path)
        if not (np.all(np.isfinite(correlation)) and np.allclose(correlation, correlation.T) and np.allclose(np.diag(correlation), 1.0)):
            raise DataError("the correlation must be a finite symmetric matrix with a unit diagonal", file=path)
        try:
            np.linalg.cholesky(correlation)
        except np.linalg.LinAlgError as exc:
            raise DataError("the correlation is not positive definite: fit it again with `organsim calibrate`", file=path) from exc
        return cls(variables=variables, correlation=correlation, n_pairs=n_pairs, min_pairs=min_pairs, score_sd=score_sd,
                   meta=dict(data.get("meta", {})), serial=serial)


def has_draw_correlation(model_dir: str | Path) -> bool:
    """A draw correlation is saved in ``model_dir``."""
    return (Path(model_dir) / DRAW_CORRELATION_FILE).is_file()


MAX_SERIAL = 0.9
"""Largest absolute serial correlation kept by :func:`serial_correlation` (an AR(1) needs |rho| < 1)."""


def serial_correlation(consecutive: np.ndarray, min_pairs: int = MIN_PAIRS) -> np.ndarray:
    """Each variable's correlation of normal scores between consecutive hours.

    Parameters
    ----------
    consecutive
        ``(N, 2, V)`` scores of an hour and the next hour of the same window, NaN = not observed.
    min_pairs
        Fewest hour pairs with both scores observed for a variable's correlation to be estimated.

    Returns
    -------
    np.ndarray
        ``(V,)`` float64 Pearson correlations, clipped to ``[-MAX_SERIAL, MAX_SERIAL]``; 0 where
        fewer than ``min_pairs`` pairs were observed or a score was constant over them.
    """
    if consecutive.ndim != 3 or consecutive.shape[1] != 2:
        raise ValueError(f"consecutive must be (N, 2, V), got {consecutive.shape}")
    out = np.zeros(consecutive.shape[2])
    for column in range(consecutive.shape[2]):
        first, second = consecutive[:, 0, column], consecutive[:, 1, column]
        both = np.isfinite(first) & np.isfinite(second)
        if both.sum() >= min_pairs and np.std(first[both]) > 0 and np.std(second[both]) > 0:
            out[column] = np.clip(np.corrcoef(first[both], second[both])[0, 1], -MAX_SERIAL, MAX_SERIAL)
    return out


def draw_correlation_from_scores(
    scores: np.ndarray, variables: Sequence[str], *, min_pairs: int = MIN_PAIRS, meta: dict[str, Any] | None = None,
    consecutive: np.ndarray | None = None,
) -> DrawCorrelation:
    """Steps 3 and 4 of the module docstring: the positive-definite correlation of ``(N, V)`` normal scores (NaN = not observed),
    and the serial correlation of ``(M, 2, V)`` scores of consecutive hours when given (else 0)."""
    if scores.ndim != 2 or scores.shape[1] != len(variables):
        raise ValueError(f"scores must be (N, {len(variables)}), got {scores.shape}")
    if min_pairs < 3:
        raise ValueError(f"min_pairs must be >= 3, got {min_pairs}")
    pairwise, n_pairs = pairwise_complete_correlation(scores, min_pairs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a variable with fewer than two observed values: NaN
        score_sd = np.nanstd(scores, axis=0, ddof=1)
    serial = None if consecutive is None else serial_correlation(consecutive, min_pairs)
    return DrawCorrelation(variables=tuple(variables), correlation=nearest_correlation(pairwise), n_pairs=n_pairs,
                           min_pairs=min_pairs, score_sd=score_sd, meta=dict(meta or {}), serial=serial)


def teacher_forced_probs(runtime: AgentRuntime, inputs: HourInputs, references: torch.Tensor) -> Iterator[torch.Tensor]:
    """The agents' distribution of the hour after each position of teacher-forced windows, hour by hour.

    The windows are read one hour per decoder step with the key/value cache (positions ``0..T-1``,
    no padding mask, as in training), which gives at every position what a full forward pass over
    the window up to it gives at its last.

    Parameters
    ----------
    runtime
        The agents on their device.
    inputs
        ``(b, T, ...)`` windows (:func:`organsim.agents.training.window_tensors`), on any device.
    references
        ``(b, S, S)`` bool reference sets.

    Yields
    ------
    torch.Tensor
        ``(b, V, K)`` float64 CPU probabilities over bins (change bins where the variable has a
        last value in the window, else value bins), for positions ``0, 1, .., T-1`` in turn.
    """
    inputs = inputs.to(runtime.device)
    b, n_hours = inputs.hours.shape
    cache = None
    with torch.inference_mode(), torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=runtime.autocast):
        for hour in range(n_hours):
            step = HourInputs(**{k: v if k == "static" else v[:, hour : hour + 1] for k, v in vars(inputs).items()})
            positions = torch.full((b, 1), hour, dtype=torch.long, device=runtime.device)
            out = runtime.model(step, references.to(runtime.device), position_ids=positions, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            yield torch.softmax(out.logits.double(), dim=-1).cpu()


def one_step_scores(
    runtime: AgentRuntime,
    arrays: HourlyArrays,
    windows_index: np.ndarray,
    *,
    generator: torch.Generator,
    batch_size: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1 and 2 of the module docstring: normal scores of every observed next-hour value of some windows.

    Parameters
    ----------
    runtime
        The agents on their device.
    arrays
        The stays (:meth:`HourlyArrays.from_cohort`), laid out in the model's variables.
    windows_index
        Which of ``tiled_windows(arrays, window_hours)`` to read.
    generator
        CPU generator of the PIT's uniform noise.
    batch_size
        Windows read together.
    progress
        ``progress(done, total)`` in windows.

    Returns
    -------
    scores
        ``(N, V)`` float64 normal scores, one row per (window, hour) with at least one observed
        next-hour value, NaN where the value was not observed.
    consecutive
        ``(M, 2, V)`` float64 the scores of hours ``h`` and ``h + 1`` of a window, one row per
        such pair with some variable observed in both.
    """
    config = runtime.agents.config
    windows = tiled_windows(arrays, config.window_hours)
    order = windows_index[np.argsort(windows.lengths[windows_index], kind="stable")]  # similar lengths together: less padding
    n_systems = len(config.systems)
    rows: list[np.ndarray] = []
    pairs: list[np.ndarray] = []
    for first in range(0, len(order), batch_size):
        index = order[first : first + batch_size]
        tensors = window_tensors(arrays, windows, index, runtime.encoder)
        targets = tensors.pop("targets")  # (b, T, V) 0-based bins, -100 not observed
        tensors.pop("target_z")
        inputs = HourInputs(**tensors)
        references = reference_sets(REFERENCES, len(index), n_systems, device=runtime.device)
        observed = targets >= 0
        noise = torch.rand(targets.shape, generator=generator, dtype=torch.float64)
        pit = torch.empty(targets.shape, dtype=torch.float64)
        for hour, probs in enumerate(teacher_forced_probs(runtime, inputs, references)):
            pit[:, hour] = randomized_pit(probs, targets[:, hour].clamp_min(0), noise[:, hour])
        scores = torch.special.ndtri(pit).masked_fill(~observed, torch.nan).numpy()  # (b, T, V)
        keep = observed.any(-1).numpy()
        rows.append(scores[keep])
        consecutive = np.stack([scores[:, :-1], scores[:, 1:]], axis=2)  # (b, T - 1, 2, V)
        pairs.append(consecutive[np.isfinite(consecutive).all(axis=2).any(axis=-1)])
        if progress is not None:
            progress(min(first + batch_size, len(order)), len(order))
    n_variables = len(config.variables)
    return (np.concatenate(rows) if rows else np.empty((0, n_variables)),
            np.concatenate(pairs) if pairs else np.empty((0, 2, n_variables)))


def fit_draw_correlation(
    model: PatientTwin | TrainedAgents,
    cohort: Cohort,
    *,
    max_windows: int = 2000,
    min_pairs: int = MIN_PAIRS,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> DrawCorrelation:
    """Fit the correlation of one hour's draws on teacher-forced one-step forecasts of ``cohort``'s stays.

    Parameters
    ----------
    model
        The twin (its agents on its device) or trained agents.
    cohort
        The stays to fit on: pass the validation split (never the stays the agents learnt from;
        :func:`organsim.agents.training.split_as_trained`, then ``.subset(split="validation")``).
    max_windows
        Windows of ``window_hours`` hours (tiled over every stay, as the validation loss reads
        them) read at most; a seeded sample of them when there are more.
    min_pairs
        Fewest hours with both variables observed for a pair's correlation to be estimated.
    seed
        Seed of the window sample and the PIT's noise: the same seed gives the same correlation.
    device
        For trained agents: ``"auto"``, ``"cpu"`` or ``"cuda"`` (a twin uses its own device).
    batch_size
        Windows read together.
    progress
        ``progress(done, total)`` in windows.

    Returns
    -------
    DrawCorrelation
    """
    if max_windows < 1:
        raise ValueError(f"max_windows must be >= 1, got {max_windows}")
    if cohort.stays.height == 0:
        raise ValueError("the cohort has no stays to fit the draw correlation on (pass the validation split)")
    runtime = AgentRuntime(model, device=device) if isinstance(model, TrainedAgents) else model.runtime
    config = runtime.agents.config
    arrays = HourlyArrays.from_cohort(cohort)
    if tuple(arrays.variables) != tuple(config.variables):
        raise ValueError(f"the cohort's variables {arrays.variables} differ from the model's {config.variables}")
    windows = tiled_windows(arrays, config.window_hours)
    n_windows = len(windows.positions)
    if n_windows == 0:
        raise ValueError("no stay of the cohort has two hours: nothing to forecast")
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(n_windows, size=max_windows, replace=False)) if n_windows > max_windows else np.arange(n_windows)
    generator = torch.Generator().manual_seed(seed)
    scores, consecutive = one_step_scores(runtime, arrays, index, generator=generator, batch_size=batch_size, progress=progress)
    meta = {"stays": int(len(np.unique(windows.positions[index]))), "windows": int(len(index)), "windows_available": n_windows,
            "hours": int(scores.shape[0]), "observed_values": int((~np.isnan(scores)).sum()), "references": REFERENCES,
            "seed": seed}
    return draw_correlation_from_scores(scores, config.variables, min_pairs=min_pairs, meta=meta, consecutive=consecutive)
