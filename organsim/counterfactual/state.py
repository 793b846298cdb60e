"""The state a strategy reads, and the same state built from recorded (or simulated) frames.

A strategy decides ICU hour ``h`` from what a bedside team knows before it. It reads that through
a small interface, :class:`StrategyState`, which the physiology engine's
:class:`~organsim.physiology.ObservedState` already satisfies (so the engine's oracle runs
strategies as they are) and which any simulator's state must offer to run them:

- ``n`` (patients), ``stay_ids`` ``(n,)``, ``weight`` ``(n,)`` kg, ``hours_seen`` (= ``h - 1``);
- ``latest(code, max_age_hours)`` ``(n,)``: the latest observed value of a catalog variable,
  NaN when never measured or older than ``max_age_hours`` (age = ``h - t`` for a value of hour
  ``t``);
- ``previous_treatment(code)`` ``(n,)``: the treatment of hour ``h - 1`` (what ran on arrival, for
  hour 1); ``treatment_history(code)`` ``(n, h - 1)``: hours ``1 .. h-1``.

:class:`RecordedStates` builds such states (as ``ObservedState`` objects) from frames in the
canonical cohort layout, hour by hour: the strategy's view of a recorded stay, or of a simulated
trajectory written in the same layout. Those states carry no random numbers, so policies that draw
them (the engine's clinician) cannot run on them; strategies never draw any.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.physiology import ObservedState
from organsim.utils.errors import DataError


@runtime_checkable
class StrategyState(Protocol):
    """What a strategy reads when deciding ICU hour ``h`` (see the module docstring)."""

    stay_ids: np.ndarray
    weight: np.ndarray

    @property
    def n(self) -> int: ...

    @property
    def hours_seen(self) -> int: ...

    def latest(self, code: str, max_age_hours: float | None = None) -> np.ndarray: ...

    def previous_treatment(self, code: str) -> np.ndarray: ...

    def treatment_history(self, code: str) -> np.ndarray: ...


class RecordedStates:
    """Per-hour :class:`~organsim.physiology.ObservedState` views of stays recorded as frames.

    Parameters
    ----------
    hourly
        ``(stay_id, hour, <catalog variables>...)``, hours 1-based; null = not measured.
    treatments
        ``(stay_id, hour, <catalog treatments>...)``; hours without a row get the catalog default.
    stays
        ``(stay_id, age, sex, weight, ...)`` one row per stay of ``hourly``.
    catalog
        Variable and treatment codes (default :func:`load_catalog`).

    Attributes
    ----------
    stay_ids
        ``(n,)`` the stays, in ``stays`` order.
    values, carried, carried_hour
        ``(n, H, V)`` observed values, the latest value at or before each hour and its hour (NaN =
        none), for ICU hours ``1 .. H``.
    treatment_values
        ``(n, H, T)``.
    """

    def __init__(
        self,
        hourly: pl.DataFrame,
        treatments: pl.DataFrame,
        stays: pl.DataFrame,
        *,
        catalog: Catalog | None = None,
    ) -> None:
        catalog = catalog or load_catalog()
        self.variables = tuple(catalog.variable_codes)
        self.treatment_codes = tuple(catalog.treatment_codes)
        self.stay_ids = stays["stay_id"].to_numpy().astype(np.int64)
        position = {int(s): i for i, s in enumerate(self.stay_ids)}
        n_hours = max(int(hourly["hour"].max() or 0) if hourly.height else 0,
                      int(treatments["hour"].max() or 0) if treatments.height else 0)
        n, n_vars = len(self.stay_ids), len(self.variables)
        self.values = np.full((n, n_hours, n_vars), np.nan)
        defaults = np.array([catalog.treatment(c).default for c in self.treatment_codes])
        self.treatment_values = np.tile(defaults, (n, n_hours, 1))
        self.defaults = defaults
        for name, frame, codes, target in (("hourly", hourly, self.variables, self.values),
                                           ("treatments", treatments, self.treatment_codes, self.treatment_values)):
            if not frame.height:
                continue
            missing = [c for c in codes if c not in frame.columns]
            if missing:
                raise DataError(f"the {name} frame lacks column(s) {missing}", file=f"<{name}>", column=missing[0])
            ids = frame["stay_id"].to_numpy()
            unknown = [int(s) for s in np.unique(ids) if int(s) not in position]
            if unknown:
                raise DataError(f"stay ids {unknown[:10]} of the {name} frame are not in the stays frame",
                                file=f"<{name}>", column="stay_id")
            hours = frame["hour"].to_numpy().astype(np.int64)
            if hours.min() < 1:
                row = int(np.argmax(hours < 1)) + 1
                raise DataError("ICU hours are 1-based here", file=f"<{name}>", row=row, column="hour")
            rows = np.array([position[int(s)] for s in ids])
            values = frame.select(codes).to_numpy().astype(np.float64)  # (rows, codes), NaN for null
            if name == "treatments":
                values = np.where(np.isnan(values), defaults, values)  # a null treatment is "not given"
            target[rows, hours - 1] = values
        measured = ~np.isnan(self.values)
        index = np.where(measured, np.arange(n_hours)[None, :, None], -1)
        index = np.maximum.accumulate(index, axis=1)
        self.carried = np.where(index >= 0, np.take_along_axis(self.values, np.maximum(index, 0), axis=1), np.nan)
        self.carried_hour = np.where(index >= 0, index + 1.0, np.nan)
        statics = stays.select(
            pl.col("age").cast(pl.Float64) if "age" in stays.columns else pl.lit(np.nan).alias("age"),
            pl.col("sex").cast(pl.Float64) if "sex" in stays.columns else pl.lit(np.nan).alias("sex"),
            pl.col("weight").cast(pl.Float64) if "weight" in stays.columns else pl.lit(np.nan).alias("weight"),
        )
        self.age, self.sex, self.weight = (statics[c].to_numpy() for c in ("age", "sex", "weight"))

    @property
    def n_hours(self) -> int:
        """``H``, the last hour the frames cover."""
        return int(self.values.shape[1])

    def at(self, hour: int) -> ObservedState:
        """The state when deciding ICU ``hour`` (``1 .. H + 1``): everything recorded before it."""
        if not 1 <= hour <= self.n_hours + 1:
            raise ValueError(f"hour must lie in 1..{self.n_hours + 1} (the frames cover hours 1..{self.n_hours}), got {hour}")
        n = len(self.stay_ids)
        seen = slice(0, hour - 1)
        return ObservedState(
            stay_ids=self.stay_ids,
            variables=self.variables,
            treatment_codes=self.treatment_codes,
            history=self.values[:, seen],
            carried=self.carried[:, seen],
            carried_hour=self.carried_hour[:, seen],
            treatments=self.treatment_values[:, seen],
            at_admission=np.tile(self.defaults, (n, 1)),
            age=self.age,
            sex=self.sex,
            weight=self.weight,
            alive=np.ones(n, dtype=bool),
            random=np.zeros((n, self.n_hours, 0)),
            random_stay=np.zeros((n, 0)),
        )
