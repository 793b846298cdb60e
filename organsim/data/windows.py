"""Forecast problems cut from a cohort: the contract every organ forecaster is trained and scored on.

A forecast problem ends its context at hour ``t`` (inclusive; ``t`` is the stay's ICU hour index as
in ``hourly.parquet``) and asks for hours ``t+1 .. t+H``. :func:`choose_starts` picks the hours
``t``, :func:`forecast_batch` gives a model everything it may see (the context values, the treatments
given in the context and *planned* for the future hours, the statics) and :func:`forecast_targets`
gives the truth it is scored against. The truth is never part of a :class:`ForecastBatch`, so a
forecaster cannot peek at it while rolling forward.

A :class:`Forecaster` returns point forecasts in raw catalog units. Step 1 is conditioned on the
true history; steps 2..H are free-running: the model's own predictions are fed back.

>>> starts = choose_starts(cohort, horizon=6, per_stay=4, min_context=1, seed=0)   # doctest: +SKIP
>>> batch = forecast_batch(cohort, starts, context_hours=24, horizon=6)             # doctest: +SKIP
>>> truth = forecast_targets(cohort, starts, horizon=6)                             # (B, 6, V)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from organsim.data.cohort import Cohort

STARTS_SCHEMA = {"stay_id": pl.Int64, "hour": pl.Int32}
"""Column schema of the start table returned by :func:`choose_starts`."""


@dataclass(frozen=True)
class ForecastBatch:
    """B forecast problems. Each ends its context at hour t (inclusive) and asks for hours t+1..t+H.

    Attributes
    ----------
    stay_ids : np.ndarray
        ``(B,)`` int64, the stay of each problem.
    start_hours : np.ndarray
        ``(B,)`` int32, ``t`` = the last context hour (ICU hour index).
    values : np.ndarray
        ``(B, C, V)`` float32 in raw catalog units, NaN = not measured: the ``C`` hours ending at
        ``t`` (``values[:, -1]`` is hour ``t``). Hours before the stay's first hour are NaN.
    treatments : np.ndarray
        ``(B, C + H, T)`` float32: the treatments given over the ``C`` context hours, then the
        *planned* treatments of the ``H`` future hours (what was recorded for those hours). Hours
        without a recorded row, including hours outside the stay, hold the catalog default.
    static : np.ndarray
        ``(B, S)`` float32: the catalog statics (age in years, sex 0/1, weight in kg,
        hosp_adm_hours in h); NaN = unknown.
    variables : tuple[str, ...]
        The ``V`` catalog variable codes, in catalog order.
    treatment_codes : tuple[str, ...]
        The ``T`` treatment codes, in catalog order.
    static_codes : tuple[str, ...]
        The ``S`` static codes, in catalog order.
    """

    stay_ids: np.ndarray
    start_hours: np.ndarray
    values: np.ndarray
    treatments: np.ndarray
    static: np.ndarray
    variables: tuple[str, ...]
    treatment_codes: tuple[str, ...]
    static_codes: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.stay_ids)
        if self.values.ndim != 3 or self.values.shape[0] != n or self.values.shape[2] != len(self.variables):
            raise ValueError(f"values must be (B={n}, C, V={len(self.variables)}), got {self.values.shape}")
        context = self.values.shape[1]
        if (
            self.treatments.ndim != 3
            or self.treatments.shape[0] != n
            or self.treatments.shape[1] < context
            or self.treatments.shape[2] != len(self.treatment_codes)
        ):
            raise ValueError(
                f"treatments must be (B={n}, C+H >= {context}, T={len(self.treatment_codes)}), got {self.treatments.shape}"
            )
        if self.static.shape != (n, len(self.static_codes)):
            raise ValueError(f"static must be (B={n}, S={len(self.static_codes)}), got {self.static.shape}")
        if self.start_hours.shape != (n,):
            raise ValueError(f"start_hours must be (B={n},), got {self.start_hours.shape}")

    @property
    def size(self) -> int:
        """B, the number of problems."""
        return len(self.stay_ids)

    @property
    def context_hours(self) -> int:
        """C, the number of context hours."""
        return self.values.shape[1]

    @property
    def horizon(self) -> int:
        """H, the number of planned future hours in :attr:`treatments`."""
        return self.treatments.shape[1] - self.values.shape[1]

    def select(self, index: np.ndarray | slice) -> ForecastBatch:
        """The sub-batch of the problems at ``index`` (an index array, boolean mask or slice)."""
        return ForecastBatch(
            stay_ids=self.stay_ids[index],
            start_hours=self.start_hours[index],
            values=self.values[index],
            treatments=self.treatments[index],
            static=self.static[index],
            variables=self.variables,
            treatment_codes=self.treatment_codes,
            static_codes=self.static_codes,
        )


@runtime_checkable
class Forecaster(Protocol):
    """Anything that forecasts the next hours of every catalog variable from a :class:`ForecastBatch`."""

    name: str

    def predict(self, batch: ForecastBatch, horizon: int) -> np.ndarray:
        """(B, H, V) point forecasts (predictive means) in raw units for hours t+1..t+H.

        Step 1 uses the true history; steps 2..H are free-running: the model's own predictions are
        fed back (never the truth). ``horizon`` may be smaller than ``batch.horizon``.
        """
        ...


class HourlyArrays:
    """A cohort laid out as dense per-stay hour blocks, for cutting many windows fast.

    Every stay covers the hours from its first to its last ``hourly.parquet`` row (gaps are NaN).
    The blocks of all stays are stacked into one ``(rows + 1, V)`` array whose last row is NaN, so
    a window is a single fancy-indexing gather. Build it once with :meth:`from_cohort` when cutting
    many batches from the same cohort (training loops); :func:`forecast_batch` and
    :func:`forecast_targets` build one per call.

    Attributes
    ----------
    stay_ids : np.ndarray
        ``(N,)`` int64, sorted; stays without any hourly row are left out.
    first_hour, last_hour : np.ndarray
        ``(N,)`` int64, first and last ICU hour index of each stay.
    offsets : np.ndarray
        ``(N,)`` int64, row of each stay's first hour in :attr:`values`.
    values : np.ndarray
        ``(rows + 1, V)`` float32, NaN = not measured; the last row is all NaN.
    treatments : np.ndarray
        ``(rows + 1, T)`` float32, catalog default where nothing was recorded; the last row holds
        the defaults. Treatment rows outside a stay's hourly span are not used.
    static : np.ndarray
        ``(N, S)`` float32, NaN = unknown.
    """

    def __init__(
        self,
        *,
        stay_ids: np.ndarray,
        first_hour: np.ndarray,
        last_hour: np.ndarray,
        values: np.ndarray,
        treatments: np.ndarray,
        static: np.ndarray,
        variables: tuple[str, ...],
        treatment_codes: tuple[str, ...],
        static_codes: tuple[str, ...],
    ) -> None:
        self.stay_ids = stay_ids
        self.first_hour = first_hour
        self.last_hour = last_hour
        lengths = last_hour - first_hour + 1
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.values = values
        self.treatments = treatments
        self.static = static
        self.variables = variables
        self.treatment_codes = treatment_codes
        self.static_codes = static_codes
        self._position = {int(s): i for i, s in enumerate(stay_ids)}

    @classmethod
    def from_cohort(cls, cohort: Cohort) -> HourlyArrays:
        """Lay out ``cohort`` (its hourly, treatments and stays tables) as dense hour blocks."""
        catalog = cohort.catalog
        variables = catalog.variable_codes
        treatment_codes = catalog.treatment_codes
        static_codes = tuple(s.code for s in catalog.statics)
        spans = (
            cohort.hourly.group_by("stay_id")
            .agg(pl.col("hour").min().alias("first"), pl.col("hour").max().alias("last"))
            .sort("stay_id")
        )
        stay_ids = spans["stay_id"].to_numpy().astype(np.int64)
        first = spans["first"].to_numpy().astype(np.int64)
        last = spans["last"].to_numpy().astype(np.int64)
        lengths = last - first + 1
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        n_rows = int(lengths.sum())
        span_frame = pl.DataFrame(
            {"stay_id": stay_ids, "first": first, "last": last, "offset": offsets},
            schema={"stay_id": pl.Int64, "first": pl.Int64, "last": pl.Int64, "offset": pl.Int64},
        )

        def rows_of(frame: pl.DataFrame) -> pl.DataFrame:
            joined = frame.join(span_frame, on="stay_id", how="inner")
            joined = joined.filter((pl.col("hour") >= pl.col("first")) & (pl.col("hour") <= pl.col("last")))
            return joined.with_columns((pl.col("offset") + pl.col("hour") - pl.col("first")).alias("row"))

        values = np.full((n_rows + 1, len(variables)), np.nan, dtype=np.float32)
        hourly = rows_of(cohort.hourly)
        values[hourly["row"].to_numpy()] = hourly.select(variables).to_numpy().astype(np.float32)

        defaults = np.array([catalog.treatment(code).default for code in treatment_codes], dtype=np.float32)
        treatments = np.tile(defaults, (n_rows + 1, 1))
        given = rows_of(cohort.treatments)
        if given.height:
            recorded = given.select(treatment_codes).to_numpy().astype(np.float32)
            recorded = np.where(np.isnan(recorded), defaults, recorded)
            treatments[given["row"].to_numpy()] = recorded

        stays = pl.DataFrame({"stay_id": stay_ids}, schema={"stay_id": pl.Int64}).join(
            cohort.stays.select(["stay_id", *static_codes]), on="stay_id", how="left"
        )
        static = stays.select(static_codes).cast(pl.Float32).to_numpy().astype(np.float32)
        return cls(
            stay_ids=stay_ids,
            first_hour=first,
            last_hour=last,
            values=values,
            treatments=treatments,
            static=static,
            variables=variables,
            treatment_codes=treatment_codes,
            static_codes=static_codes,
        )

    # ------------------------------------------------------------------ gathering
    def positions_of(self, stay_ids: np.ndarray) -> np.ndarray:
        """``(B,)`` int64 position of each stay in :attr:`stay_ids`; a stay without hourly rows is a ``KeyError``."""
        try:
            return np.array([self._position[int(s)] for s in stay_ids], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"stay {exc.args[0]} has no hourly rows in this cohort") from None

    def rows_of(self, positions: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """Row index into :attr:`values` / :attr:`treatments` of each (stay, hour).

        ``positions`` is ``(B,)`` (from :meth:`positions_of`), ``hours`` is ``(B, L)`` ICU hours;
        returns ``(B, L)`` int64, the pad row (NaN values, default treatments) outside the stay.
        """
        first = self.first_hour[positions][:, None]
        last = self.last_hour[positions][:, None]
        rows = self.offsets[positions][:, None] + hours - first
        inside = (hours >= first) & (hours <= last)
        return np.where(inside, rows, len(self.values) - 1)

    def batch(self, starts: pl.DataFrame, *, context_hours: int, horizon: int) -> ForecastBatch:
        """See :func:`forecast_batch`."""
        if context_hours < 1:
            raise ValueError(f"context_hours must be >= 1, got {context_hours}")
        if horizon < 0:
            raise ValueError(f"horizon must be >= 0, got {horizon}")
        stay_ids, start_hours = _check_starts(starts)
        positions = self.positions_of(stay_ids)
        offsets = np.arange(-context_hours + 1, horizon + 1, dtype=np.int64)  # (C + H,)
        hours = start_hours.astype(np.int64)[:, None] + offsets[None, :]  # (B, C + H)
        rows = self.rows_of(positions, hours)
        return ForecastBatch(
            stay_ids=stay_ids,
            start_hours=start_hours,
            values=self.values[rows[:, :context_hours]],  # (B, C, V)
            treatments=self.treatments[rows],  # (B, C + H, T)
            static=self.static[positions],  # (B, S)
            variables=self.variables,
            treatment_codes=self.treatment_codes,
            static_codes=self.static_codes,
        )

    def targets(self, starts: pl.DataFrame, *, horizon: int) -> np.ndarray:
        """See :func:`forecast_targets`."""
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        stay_ids, start_hours = _check_starts(starts)
        positions = self.positions_of(stay_ids)
        hours = start_hours.astype(np.int64)[:, None] + np.arange(1, horizon + 1)[None, :]  # (B, H)
        return self.values[self.rows_of(positions, hours)]  # (B, H, V)

    def starts(self, *, horizon: int, per_stay: int | None, min_context: int, seed: int) -> pl.DataFrame:
        """See :func:`choose_starts`."""
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if min_context < 1:
            raise ValueError(f"min_context must be >= 1, got {min_context}")
        if per_stay is not None and per_stay < 1:
            raise ValueError(f"per_stay must be >= 1 or None, got {per_stay}")
        lo = self.first_hour + min_context - 1  # at least min_context stay hours in the context
        hi = self.last_hour - horizon  # t + horizon <= last hour
        counts = np.clip(hi - lo + 1, 0, None)
        owner = np.repeat(np.arange(len(self.stay_ids)), counts)
        hour = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        stay_ids = self.stay_ids[owner]
        if per_stay is not None and len(owner):
            key = _hash_keys(seed, stay_ids, hour)
            order = np.lexsort((key, owner))  # by stay, then by seeded key
            rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
            keep = np.sort(order[rank < per_stay])  # back to (stay, hour) order
            stay_ids, hour = stay_ids[keep], hour[keep]
        return pl.DataFrame({"stay_id": stay_ids, "hour": hour}, schema=STARTS_SCHEMA)


def _check_starts(starts: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in STARTS_SCHEMA if c not in starts.columns]
    if missing:
        raise ValueError(f"starts must have columns {list(STARTS_SCHEMA)}; missing {missing}")
    if starts["stay_id"].null_count() or starts["hour"].null_count():
        raise ValueError("starts must not contain nulls")
    return starts["stay_id"].to_numpy().astype(np.int64), starts["hour"].to_numpy().astype(np.int32)


def _hash_keys(seed: int, stay_ids: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """A seeded pseudo-random uint64 per (stay, hour) (splitmix64), independent of the other stays.

    Keying on the stay and hour rather than drawing from one generator means a stay gets the same
    start hours whichever other stays share the cohort (a subset keeps its starts).
    """
    with np.errstate(over="ignore"):
        x = (
            np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
            ^ stay_ids.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
            ^ hours.astype(np.uint64) * np.uint64(0x94D049BB133111EB)
        )
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
        return x ^ (x >> np.uint64(31))


def choose_starts(cohort: Cohort, *, horizon: int, per_stay: int | None, min_context: int, seed: int) -> pl.DataFrame:
    """Pick forecast start hours: up to ``per_stay`` seeded random hours ``t`` per stay.

    A candidate ``t`` has at least ``min_context`` of the stay's own hours in its context
    (``t >= first_hour + min_context - 1``) and its whole horizon inside the stay
    (``t + horizon <= last_hour``). Stays with no candidate are left out. The choice is a seeded
    hash of (seed, stay_id, hour), so the same seed gives the same starts and a stay keeps its
    starts in any sub-cohort.

    Parameters
    ----------
    cohort
        The cohort to draw from.
    horizon
        H in hours (>= 1).
    per_stay
        Most start hours per stay; ``None`` keeps every candidate hour.
    min_context
        Fewest stay hours in the context (>= 1).
    seed
        The seed.

    Returns
    -------
    pl.DataFrame
        Columns ``stay_id`` (Int64) and ``hour`` (Int32, = t), sorted by (stay_id, hour).
    """
    return HourlyArrays.from_cohort(cohort).starts(horizon=horizon, per_stay=per_stay, min_context=min_context, seed=seed)


def forecast_batch(cohort: Cohort, starts: pl.DataFrame, *, context_hours: int, horizon: int) -> ForecastBatch:
    """Cut the problems ``starts`` (from :func:`choose_starts`) out of ``cohort``.

    Parameters
    ----------
    cohort
        The cohort.
    starts
        ``stay_id`` and ``hour`` (= t, the last context hour) per problem.
    context_hours
        C, the context length in hours; context hours before the stay's first hour are NaN.
    horizon
        H, the number of future hours whose planned treatments the batch carries.

    Returns
    -------
    ForecastBatch
        Values ``(B, C, V)``, treatments ``(B, C + H, T)``, statics ``(B, S)``; never the future values.
    """
    return HourlyArrays.from_cohort(cohort).batch(starts, context_hours=context_hours, horizon=horizon)


def forecast_targets(cohort: Cohort, starts: pl.DataFrame, *, horizon: int) -> np.ndarray:
    """The truth for ``starts``: ``(B, H, V)`` float32 observed values at t+1..t+H, NaN where not measured."""
    return HourlyArrays.from_cohort(cohort).targets(starts, horizon=horizon)
