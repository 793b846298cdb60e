"""The observation model: which simulated values a care team would have charted, hour by hour.

The twin simulates every variable every hour; a real record holds a vital sign most hours and a
lab every few hours or days. :class:`ObservationModel` learns, from the training cohort, the
probability that variable ``v`` is charted in an hour given

- the hours since ``v`` was last charted (:data:`SINCE_EDGES_H` buckets) or, before its first
  charting in the stay, the hours since the stay began (the same buckets): labs are drawn soon
  after admission (on PhysioNet 90 % of first creatinine values fall in the first 16 hours), and
  one per-hour rate for "never charted yet" left 21 % of synthetic stays without any creatinine
  against 8 % of real ones (17 % with this bucketing; charting the train stays' own values),
- whether its last charted value lay outside the catalog's normal range (abnormal results are
  re-checked sooner), and
- whether its *parent* is charted in the same hour. Charting comes in panels: on PhysioNet SBP,
  DBP and MAP are charted together in 99 % of hours, creatinine with BUN, potassium, glucose and
  calcium (a metabolic panel), haemoglobin with haematocrit, platelets and WBC (a blood count), pH
  with PaCO2 and SaO2 (a blood gas). Variables are drawn in order of their charting rate; the
  parent of each (but the first, the *anchor*, heart rate on PhysioNet) is the earlier variable
  whose charting tells most about its own (largest mutual information of the two hourly charted
  indicators in the training rows), so a panel is charted together through a chain of parents
  and an hour without the anchor is usually an hour without anything. Conditioning every variable
  on the anchor alone charted each lab of a panel in a different hour;
- the stay's charting style for the variable: the sextile (:data:`N_STYLES`) of the stay's share of
  charted hours among the training stays. Stays differ: on PhysioNet most stays chart temperature
  every 4 hours or so, one in ten nearly every hour (a probe); with terciles the top one mixed
  the two and synthetic stays charted temperature in between (charting alone told apart from real
  stays with AUROC 0.926 with terciles, 0.914 with sextiles, 0.911 with deciles). Septic stays
  chart more (on PhysioNet the median septic stay charts lactate in 1.5 % of its hours and pH in
  3.3 %, the median other stay never), so styles are drawn in the shares of the stay's sepsis
  stratum (:attr:`ObservationModel.stratum_style_shares_`). A synthetic stay draws its style
  per variable from correlated normals (one shared stay factor; its weight is the mean correlation
  of the training stays' charting shares across variables, :attr:`ObservationModel.shared_`), so
  a stay charted intensively in one variable tends to be in others.

A charted value is written at the resolution the training data record it with
(:attr:`ObservationModel.resolution_`: the coarsest of :data:`RESOLUTIONS` that at least
:data:`RESOLUTION_SHARE` of the variable's training values are multiples of; heart rate in whole
beats, SpO2 in whole percent), so repeated readings repeat exactly as they do at the bedside.

Probabilities are counts with a Beta prior (strength :data:`PRIOR_HOURS` hours) centred on the
same cell pooled over styles, itself centred on the variable's overall rate, so rare cells fall
back to those. :meth:`ObservationModel.mask`
draws the variables in :attr:`ObservationModel.order_`, each given its parent's draw in the same
hour; its :class:`ObservationState` carries the last charted hour and value across rollout segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

from organsim.catalog import Catalog
from organsim.data import Cohort

SINCE_EDGES_H = (1, 2, 3, 4, 6, 8, 12, 24, 48)
"""Upper edges (inclusive, hours) of the hours-since-last-charted buckets; beyond the last edge is
one more bucket. "Never charted in this stay" has as many buckets again, by hours since the stay began."""
NEVER_BUCKET = len(SINCE_EDGES_H) + 1
"""The first "never charted" bucket (the stay's first hour); the stay's later hours follow it."""
N_SINCE_BUCKETS = 2 * NEVER_BUCKET
PRIOR_HOURS = 4.0
N_STYLES = 6
RESOLUTIONS = (100.0, 50.0, 10.0, 5.0, 1.0, 0.5, 0.1, 0.05, 0.01)
"""Candidate recording resolutions, coarsest first."""
RESOLUTION_SHARE = 0.9


def recording_resolution(values: np.ndarray) -> float:
    """The coarsest of :data:`RESOLUTIONS` that at least :data:`RESOLUTION_SHARE` of ``values`` are
    multiples of (to 1e-4 of a step); 0.0 when none is (values recorded at full precision)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0
    for step in RESOLUTIONS:
        ratio = values / step
        if (np.abs(ratio - np.rint(ratio)) < 1e-4 * np.maximum(1.0, np.abs(ratio))).mean() >= RESOLUTION_SHARE:
            return step
    return 0.0


def since_bucket(hours_since: np.ndarray, stay_hours: np.ndarray | None = None) -> np.ndarray:
    """Bucket index of hours since the last charted value; where that is NaN (never charted), the
    "never" bucket of ``stay_hours``, the hours since the stay began (1 in its first hour; None: 1)."""
    edges = np.asarray(SINCE_EDGES_H, dtype=np.float64)
    bucket = np.searchsorted(edges, np.nan_to_num(hours_since, nan=0.0), side="left")
    never = NEVER_BUCKET
    if stay_hours is not None:
        never = NEVER_BUCKET + np.searchsorted(edges, np.nan_to_num(np.broadcast_to(stay_hours, np.shape(hours_since)), nan=1.0),
                                               side="left")
    return np.where(np.isfinite(hours_since), bucket, never).astype(np.int64)


def charting_parents(charted: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each variable's parent: of the variables before it in ``order``, the one whose hourly charted
    indicator has the largest mutual information (nats) with its own; -1 for the first.

    Parameters
    ----------
    charted
        ``(R, V)`` bool, variable charted in each training row (hour).
    order
        ``(V,)`` variable indices in drawing order.

    Returns
    -------
    np.ndarray
        ``(V,)`` int64 parent index per variable (-1: none).
    """
    x = charted.astype(np.float64)
    rows = max(len(x), 1)
    both = x.T @ x / rows  # (V, V) P(i and j charted)
    rate = np.diag(both)
    cells = [both, rate[:, None] - both, rate[None, :] - both, 1 - rate[:, None] - rate[None, :] + both]
    margins = [(rate[:, None], rate[None, :]), (rate[:, None], 1 - rate[None, :]),
               (1 - rate[:, None], rate[None, :]), (1 - rate[:, None], 1 - rate[None, :])]
    information = np.zeros_like(both)
    with np.errstate(divide="ignore", invalid="ignore"):
        for joint, (left, right) in zip(cells, margins, strict=True):
            term = joint * np.log(joint / (left * right))
            information += np.where(joint > 0, np.nan_to_num(term), 0.0)
    parent = np.full(len(order), -1, dtype=np.int64)
    for position in range(1, len(order)):
        earlier = order[:position]
        parent[order[position]] = earlier[int(np.argmax(information[order[position], earlier]))]
    return parent


@dataclass
class ObservationState:
    """Per stay and variable, the last charted hour and value (NaN = never charted).

    Attributes
    ----------
    last_hour, last_value
        ``(n, V)`` float64.
    style
        ``(n, V)`` int, the stay's charting style per variable (``0 .. N_STYLES - 1``).
    first_hour
        ``(n,)`` float64 ICU hour each stay began; None: unknown (never-charted variables then
        count as in the stay's first hour).
    """

    last_hour: np.ndarray
    last_value: np.ndarray
    style: np.ndarray
    first_hour: np.ndarray | None = None

    @classmethod
    def from_history(cls, values: np.ndarray, hours: np.ndarray, style: np.ndarray) -> ObservationState:
        """The state after the charted hours ``values`` ``(n, L, V)`` (NaN = not charted) at ICU hours
        ``hours`` ``(n, L)``, for stays of charting ``style`` ``(n, V)`` (:meth:`ObservationModel.draw_styles`)."""
        charted = np.isfinite(values)  # (n, L, V)
        any_charted = charted.any(axis=1)
        last_index = values.shape[1] - 1 - np.argmax(charted[:, ::-1, :], axis=1)  # (n, V)
        rows = np.arange(values.shape[0])[:, None]
        last_hour = np.where(any_charted, hours[rows, last_index], np.nan).astype(np.float64)
        last_value = np.where(any_charted, values[rows, last_index, np.arange(values.shape[2])[None, :]], np.nan)
        return cls(last_hour=last_hour, last_value=last_value.astype(np.float64), style=np.asarray(style, dtype=np.int64),
                   first_hour=np.asarray(hours[:, 0], dtype=np.float64))

    def select(self, index: np.ndarray) -> ObservationState:
        """The state of the stays at ``index``."""
        return ObservationState(self.last_hour[index], self.last_value[index], self.style[index],
                                None if self.first_hour is None else self.first_hour[index])

    def stay_hours(self, now: np.ndarray) -> np.ndarray | None:
        """``(n, 1)`` hours since each stay began at ICU hours ``now`` ``(n, 1)`` (1 in the first hour), or None."""
        return None if self.first_hour is None else now - self.first_hour[:, None] + 1


@dataclass
class ObservationModel:
    """Per-variable charting probabilities learned from a cohort (module docstring).

    Attributes
    ----------
    variables
        The ``V`` variable codes, in the order of the arrays it masks.
    normal_low, normal_high
        ``(V,)`` catalog normal range of each variable.
    plausible_low, plausible_high
        ``(V,)`` catalog plausible range (a rounded value is kept inside it).
    anchor_
        Index of the anchor variable (the most often charted; it has no parent).
    order_
        ``(V,)`` variable indices in the order they are drawn (charting rate, highest first).
    parent_
        ``(V,)`` index of each variable's parent (module docstring); -1 for the anchor.
    probability_
        ``(V, N_SINCE_BUCKETS, 2, 2, N_STYLES)`` probability of being charted, indexed by
        (variable, since bucket, last value abnormal, parent charted this hour, stay's style). The
        anchor's row does not depend on the parent axis.
    shared_
        Weight of the shared stay factor in the style draws (0 = styles independent across variables).
    stratum_style_shares_
        ``(2, V, N_STYLES)`` the same among the training stays without sepsis (0) and with (1); a
        stratum without stays has the pooled shares.
    style_shares_
        ``(V, N_STYLES)`` share of training stays in each style (not a sixth each where many stays
        tie, e.g. never charted a lab).
    rate_
        ``(V,)`` share of hours in which each variable is charted.
    resolution_
        ``(V,)`` recording resolution of each variable (0 = full precision).
    """

    variables: tuple[str, ...]
    normal_low: np.ndarray
    normal_high: np.ndarray
    plausible_low: np.ndarray
    plausible_high: np.ndarray
    anchor_: int = 0
    order_: np.ndarray | None = None
    parent_: np.ndarray | None = None
    probability_: np.ndarray | None = None
    rate_: np.ndarray | None = None
    resolution_: np.ndarray | None = None
    shared_: float = 0.0
    style_shares_: np.ndarray | None = None
    stratum_style_shares_: np.ndarray | None = None

    @classmethod
    def for_catalog(cls, variables: tuple[str, ...], catalog: Catalog) -> ObservationModel:
        """An unfitted model over ``variables`` with the catalog's normal and plausible ranges."""
        normal = np.array([catalog.variable(v).normal for v in variables], dtype=np.float64).reshape(len(variables), 2)
        plausible = np.array([catalog.variable(v).plausible for v in variables], dtype=np.float64).reshape(len(variables), 2)
        return cls(variables=variables, normal_low=normal[:, 0], normal_high=normal[:, 1],
                   plausible_low=plausible[:, 0], plausible_high=plausible[:, 1])

    def _abnormal(self, last_value: np.ndarray) -> np.ndarray:
        return ((last_value < self.normal_low) | (last_value > self.normal_high)).astype(np.int64)

    def fit(self, cohort: Cohort) -> ObservationModel:
        """Count charting on every hour of ``cohort`` (pass the train split). Returns self."""
        hourly = cohort.hourly.sort("stay_id", "hour")
        if hourly.height == 0:
            raise ValueError("the observation model needs hourly rows to learn from; the cohort has none")
        hour = pl.col("hour").cast(pl.Float64)
        since, last = [], []
        for code in self.variables:
            charted_hour = pl.when(pl.col(code).is_not_null()).then(hour)
            since.append((hour - charted_hour.forward_fill().shift(1).over("stay_id")).alias(f"{code}__since"))
            last.append(pl.col(code).cast(pl.Float64).forward_fill().shift(1).over("stay_id").alias(f"{code}__last"))
        frame = hourly.select(
            *[pl.col(c).is_not_null().alias(c) for c in self.variables], *since, *last,
            (hour - hour.min().over("stay_id") + 1).alias("__stay_hours"))
        charted = frame.select(self.variables).to_numpy().astype(bool)  # (R, V)
        buckets = since_bucket(frame.select([f"{c}__since" for c in self.variables]).to_numpy().astype(np.float64),
                               frame["__stay_hours"].to_numpy()[:, None])
        abnormal = self._abnormal(frame.select([f"{c}__last" for c in self.variables]).to_numpy().astype(np.float64))
        self.rate_ = charted.mean(axis=0)
        self.resolution_ = np.array([recording_resolution(hourly[c].to_numpy()) for c in self.variables])
        self.order_ = np.argsort(-self.rate_, kind="stable")
        self.anchor_ = int(self.order_[0])
        self.parent_ = charting_parents(charted, self.order_)
        parent_charted = charted[:, np.maximum(self.parent_, 0)].astype(np.int64)  # (R, V)
        parent_charted[:, self.anchor_] = 0  # the anchor has no parent
        septic_stays = cohort.stays.filter(pl.col("sepsis").fill_null(False))["stay_id"].to_numpy()
        style = self._training_styles(hourly["stay_id"].to_numpy(), charted, septic_stays)
        shape = (len(self.variables), N_SINCE_BUCKETS, 2, 2, N_STYLES)
        cells = np.ravel_multi_index(
            (np.broadcast_to(np.arange(len(self.variables)), charted.shape), buckets, abnormal, parent_charted, style), shape)
        size = int(np.prod(shape))
        totals = np.bincount(cells.ravel(), minlength=size).reshape(shape).astype(np.float64)
        hits = np.bincount(cells.ravel(), weights=charted.ravel().astype(np.float64), minlength=size).reshape(shape)
        pooled = (hits.sum(axis=-1) + PRIOR_HOURS * self.rate_[:, None, None, None]) / (totals.sum(axis=-1) + PRIOR_HOURS)
        probability = (hits + PRIOR_HOURS * pooled[..., None]) / (totals + PRIOR_HOURS)
        probability[self.anchor_, :, :, 1] = probability[self.anchor_, :, :, 0]
        self.probability_ = probability
        return self

    def _training_styles(self, stay_ids: np.ndarray, charted: np.ndarray, septic_stays: np.ndarray) -> np.ndarray:
        """``(R, V)`` style of each training row's stay (sextile of the stay's charted share); sets
        :attr:`shared_` and the style shares (pooled and per sepsis stratum; ``septic_stays``: their ids)."""
        stays, row_stay = np.unique(stay_ids, return_inverse=True)
        hours = np.bincount(row_stay, minlength=len(stays)).astype(np.float64)
        shares = np.stack([np.bincount(row_stay, weights=charted[:, v], minlength=len(stays)) for v in range(charted.shape[1])],
                          axis=1) / hours[:, None]  # (stays, V)
        ranks = stats.rankdata(shares, axis=0, method="average") / (len(stays) + 1)  # (stays, V) in (0, 1)
        style = np.minimum((ranks * N_STYLES).astype(np.int64), N_STYLES - 1)
        def shares_of(rows: np.ndarray) -> np.ndarray:
            return np.stack([np.bincount(style[rows, v], minlength=N_STYLES) for v in range(style.shape[1])]) / max(len(rows), 1)

        self.style_shares_ = shares_of(np.arange(len(stays)))
        septic = np.isin(stays, septic_stays)
        self.stratum_style_shares_ = np.stack(
            [shares_of(np.flatnonzero(septic == stratum)) if (septic == stratum).any() else self.style_shares_
             for stratum in (False, True)])
        scores = stats.norm.ppf(ranks)
        varying = scores.std(axis=0) > 1e-9  # variables whose charting differs between stays
        self.shared_ = 0.0
        if varying.sum() >= 2:
            correlation = np.corrcoef(scores[:, varying].T)
            off_diagonal = correlation[~np.eye(len(correlation), dtype=bool)]
            self.shared_ = float(np.clip(off_diagonal.mean(), 0.0, 1.0))
        return style[row_stay]

    def draw_styles(self, n: int, rng: np.random.Generator, septic: np.ndarray | None = None) -> np.ndarray:
        """``(n, V)`` charting styles of new stays: normals sharing one stay factor, cut at the cumulative
        style shares of each variable, those of each stay's sepsis stratum (``septic`` ``(n,)`` bool)
        or, without ``septic``, the pooled ones."""
        shared = rng.standard_normal((n, 1))
        own = rng.standard_normal((n, len(self.variables)))
        uniforms = stats.norm.cdf(np.sqrt(self.shared_) * shared + np.sqrt(1 - self.shared_) * own)  # (n, V)
        if septic is None:
            cuts = np.broadcast_to(np.cumsum(self.style_shares_, axis=1)[None, :, :-1], (n, len(self.variables), N_STYLES - 1))
        else:
            cuts = np.cumsum(self.stratum_style_shares_, axis=2)[np.asarray(septic, dtype=np.int64), :, :-1]  # (n, V, N_STYLES - 1)
        return (uniforms[:, :, None] > cuts).sum(axis=2).astype(np.int64)

    def record(self, values: np.ndarray) -> np.ndarray:
        """``values`` (``(..., V)``) rounded to each variable's recording resolution, kept in the plausible range."""
        step = np.where(self.resolution_ > 0, self.resolution_, 1.0)
        rounded = np.where(self.resolution_ > 0, np.rint(values / step) * step, values)
        return np.clip(rounded, self.plausible_low, self.plausible_high)

    def mask(
        self, values: np.ndarray, hours: np.ndarray, state: ObservationState, rng: np.random.Generator
    ) -> np.ndarray:
        """Chart simulated hours: ``(n, L, V)`` values at their recording resolution, the uncharted ones NaN.

        Parameters
        ----------
        values
            ``(n, L, V)`` simulated values in raw units, in :attr:`variables` order (NaN: the
            simulator has no value; never charted).
        hours
            ``(n, L)`` ICU hour of each simulated hour.
        state
            Last charted hour and value per stay and variable before these hours; updated in place.
        rng
            Random generator (same state -> same mask).
        """
        if self.probability_ is None:
            raise RuntimeError("the observation model is not fitted; call fit(cohort) first")
        n, length, n_vars = values.shape
        out = np.full(values.shape, np.nan, dtype=np.float32)
        for step in range(length):
            now = hours[:, step].astype(np.float64)[:, None]  # (n, 1)
            buckets = since_bucket(now - state.last_hour, state.stay_hours(now))  # (n, V)
            abnormal = self._abnormal(state.last_value)
            uniforms = rng.random((n, n_vars))
            charted = np.zeros((n, n_vars), dtype=bool)
            for v in self.order_:
                parent = self.parent_[v]
                parent_charted = charted[:, parent].astype(np.int64) if parent >= 0 else np.zeros(n, dtype=np.int64)
                p = self.probability_[v, buckets[:, v], abnormal[:, v], parent_charted, state.style[:, v]]
                charted[:, v] = (uniforms[:, v] < p) & np.isfinite(values[:, step, v])
            written = self.record(values[:, step])
            out[:, step] = np.where(charted, written, np.nan)
            state.last_hour = np.where(charted, now, state.last_hour)
            state.last_value = np.where(charted, written, state.last_value)
        return out
