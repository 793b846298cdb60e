"""The error-correction agent: checks each simulated hour against physiology and repairs it.

The twin asks the corrector twice per simulated hour. First :meth:`ErrorCorrector.violating` says
which freshly sampled values break a constraint (:mod:`organsim.twin.constraints`), so their agents
can resample them (up to :attr:`ErrorCorrector.max_resamples` times). Then
:meth:`ErrorCorrector.correct` projects whatever is still off onto the nearest consistent values and
records every change, so the dashboard can show what was corrected and why.

Projection, in this order (each step moves values only inside their *box*: the plausible range
intersected with the rate-limit window around the previous hour, so later steps never undo the
hard rules of earlier ones):

1. ``range`` / ``rate_limit``: clip each value into its box (the record names ``range`` when the
   value was outside its plausible range, ``rate_limit`` otherwise).
2. ``map_order``: pressures that break DBP <= MAP <= SBP are replaced by their isotonic regression
   (pool-adjacent-violators: out-of-order neighbours move to their mean, the least-squares nearest
   ordered triple; NaN pressures are skipped), then clamped into their boxes in the order DBP, MAP,
   SBP, each bounded by the ones before so the order survives.
3. ``map_formula``: MAP is moved to the nearest value within :data:`MAP_FORMULA_TOLERANCE_MMHG` of
   (SBP + 2 DBP) / 3 (and still between DBP and SBP). MAP is the one adjusted: the formula derives
   MAP from the two others, so it is the quantity the equation speaks about.
4. ``acid_base``: when pH, HCO3 and PaCO2 disagree with Henderson-Hasselbalch by more than
   :data:`ACID_BASE_TOLERANCE_PH`, the residual is brought to the band edge by moving the variable
   with the largest relative deviation. The three enter the equation as pH, log10 HCO3 and
   log10 PaCO2, so relative deviation is measured in those units (a 0.1 change of pH weighs the same
   as a 26 % change of HCO3 or PaCO2), from the previous hour's value, or from the normal midpoint
   (7.40, 24 mmol/L, 40 mmHg) where the previous hour did not chart it: the value that jumped
   furthest is the likeliest sampling error. When its box stops it short, the next-largest takes up
   the rest.
5. ``spo2_pao2``: SpO2 is moved to the nearest value within :data:`SPO2_BAND_PERCENT` of the
   Severinghaus saturation of PaO2 (at the hour's temperature and, after step 4, pH). SpO2 is the one
   adjusted because the curve is flat above ~100 mmHg: PaO2 cannot be recovered from a saturation
   there, while the saturation follows from any PaO2.

NaN (not simulated / not measured) is never a violation, never filled, and never moved. A band rule
whose repair would leave the boxes is left as it is and counted in ``violations_after``. The hard
rules are zero after :meth:`~ErrorCorrector.correct` whenever the previous hour itself keeps DBP <=
MAP <= SBP within reach of the rate limits (always, in a rollout whose previous hour was corrected).
Correcting a corrected state changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from organsim.catalog import Catalog, load_catalog
from organsim.twin.constraints import (
    ACID_BASE_TOLERANCE_PH,
    CO2_SOLUBILITY,
    HH_PK,
    MAP_FORMULA_TOLERANCE_MMHG,
    SPO2_BAND_PERCENT,
    ConstraintSet,
)

ACID_BASE_NORMAL_MIDPOINT: dict[str, float] = {"ph": 7.40, "hco3": 24.0, "paco2": 40.0}
"""Reference values (pH, mmol/L, mmHg) for the acid-base deviation where the previous hour is NaN."""

PRESSURE_CODES: tuple[str, ...] = ("dbp", "map", "sbp")
"""The pressures in the order DBP <= MAP <= SBP."""


def isotonic_chain(values: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing fit along the last axis, NaN entries skipped.

    Uses the min-max formula of isotonic regression, ``y_i = max_{a <= i} min_{b >= i} mean(x_a..x_b)``
    over the finite entries (vectorised over the leading axes; meant for short chains).

    Parameters
    ----------
    values
        ``(n, k)`` float64, NaN = absent.

    Returns
    -------
    np.ndarray
        ``(n, k)`` float64, non-decreasing over the finite entries; NaN where ``values`` is NaN.
    """
    finite = ~np.isnan(values)
    weights = finite.astype(np.float64)
    x = np.where(finite, values, 0.0)
    k = values.shape[-1]
    cum_x = np.concatenate([np.zeros_like(x[..., :1]), np.cumsum(x, axis=-1)], axis=-1)
    cum_w = np.concatenate([np.zeros_like(weights[..., :1]), np.cumsum(weights, axis=-1)], axis=-1)
    fitted = np.full_like(values, np.nan)
    for i in range(k):
        best = np.full(values.shape[:-1], -np.inf)
        for a in range(i + 1):
            worst = np.full(values.shape[:-1], np.inf)
            for b in range(i, k):
                w = cum_w[..., b + 1] - cum_w[..., a]
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = (cum_x[..., b + 1] - cum_x[..., a]) / w
                worst = np.fmin(worst, np.where(w > 0, mean, np.inf))
            best = np.fmax(best, worst)
        fitted[..., i] = np.where(finite[..., i], best, np.nan)
    return fitted


class ErrorCorrector:
    """Checks simulated hours against the catalog's physiology and projects what is off.

    Build with :meth:`from_catalog`. Holds no state between calls; safe to share between rollouts.

    Parameters
    ----------
    catalog
        Where plausible ranges and ``max_hourly_change`` come from.
    max_resamples
        How many times the twin lets a violating agent resample one hour before projection (>= 0).
    """

    def __init__(self, catalog: Catalog, max_resamples: int = 3) -> None:
        if max_resamples < 0:
            raise ValueError(f"max_resamples must be >= 0, got {max_resamples}")
        self.catalog = catalog
        self.max_resamples = int(max_resamples)
        self._constraints: dict[tuple[str, ...], ConstraintSet] = {}

    def __repr__(self) -> str:
        return f"ErrorCorrector(catalog version {self.catalog.version!r}, max_resamples={self.max_resamples})"

    @classmethod
    def from_catalog(cls, catalog: Catalog | None = None, max_resamples: int = 3) -> ErrorCorrector:
        """A corrector for ``catalog`` (default: :func:`organsim.catalog.load_catalog`)."""
        return cls(catalog or load_catalog(), max_resamples)

    def constraints(self, variables: Sequence[str]) -> ConstraintSet:
        """The :class:`ConstraintSet` of a variable tuple (cached)."""
        variables = tuple(variables)
        if variables not in self._constraints:
            self._constraints[variables] = ConstraintSet.from_catalog(self.catalog, variables)
        return self._constraints[variables]

    # ------------------------------------------------------------------------------------- API
    def violating(self, values_prev: np.ndarray, values_new: np.ndarray, variables: Sequence[str]) -> np.ndarray:
        """Which simulated values break a constraint and should be resampled by their agent.

        A value is violating when :meth:`correct` would move it: it breaks its range or rate limit,
        or it is one of the values the projection of a broken pressure ordering, Henderson-Hasselbalch
        or SpO2-PaO2 band would change. A value beyond a saturating end of its range counts as that
        end (:meth:`saturated`): it is clipped by :meth:`correct`, not redrawn.

        Parameters
        ----------
        values_prev
            ``(n, V)`` the previous hour (raw catalog units, NaN = unknown).
        values_new
            ``(n, V)`` the simulated hour.
        variables
            The ``V`` catalog codes of the columns.

        Returns
        -------
        np.ndarray
            ``(n, V)`` bool; False wherever ``values_new`` is NaN.
        """
        constraints = self.constraints(variables)
        new = constraints.saturate(np.asarray(values_new, dtype=np.float32))
        corrected = self._project(constraints, values_prev, new, records=None)
        return ~((corrected == new) | (np.isnan(corrected) & np.isnan(new)))

    def saturated(self, values: np.ndarray, variables: Sequence[str]) -> np.ndarray:
        """``values`` ``(n, V)`` with every value beyond a saturating end of its plausible range (the
        catalog's ``saturates``) set to that end.

        A draw of SpO2 above 100 % is a saturated reading, not a sampling error: redrawing it until it
        falls below 100 would cut the top off the agent's distribution and move a stay away from the
        ceiling where real stays spend hours (on PhysioNet 2019 a quarter of the charted SpO2 hours
        read 100; with redraws the synthetic share fell from 35 % in the first hours to 5 % after a
        day, without them it stayed near the real 20-30 %). :meth:`violating` therefore does not flag
        such values, and :meth:`correct` clips them onto the bound (rule ``range``).
        """
        return self.constraints(variables).saturate(values)

    def correct(
        self, values_prev: np.ndarray, values_new: np.ndarray, variables: Sequence[str]
    ) -> tuple[np.ndarray, list[dict], dict[str, int], dict[str, int]]:
        """Project a simulated hour onto the constraints and record every change.

        Parameters
        ----------
        values_prev
            ``(n, V)`` the previous hour (raw catalog units, NaN = unknown).
        values_new
            ``(n, V)`` the simulated hour.
        variables
            The ``V`` catalog codes of the columns.

        Returns
        -------
        corrected : np.ndarray
            ``(n, V)`` float32, NaN exactly where ``values_new`` is NaN.
        records : list[dict]
            One ``{"row", "variable", "rule", "before", "after"}`` per value a projection step moved
            (a value moved by two steps has two records; ``before`` of the second is ``after`` of the
            first), in step order.
        violations_before, violations_after : dict[str, int]
            ``{rule: count}`` for every rule of :data:`organsim.twin.constraints.RULES` in
            ``values_new`` and in ``corrected`` (values for range and rate_limit, hours otherwise).
        """
        constraints = self.constraints(variables)
        new = np.asarray(values_new, dtype=np.float32)
        prev = np.asarray(values_prev, dtype=np.float64)
        constraints.check_shapes(prev, new)
        records: list[dict] = []
        corrected = self._project(constraints, prev, new, records)
        before = constraints.count(prev, new.astype(np.float64))
        return corrected, records, before, constraints.count(prev, corrected.astype(np.float64))

    def _project(
        self, constraints: ConstraintSet, values_prev: np.ndarray, values_new: np.ndarray, records: list[dict] | None
    ) -> np.ndarray:
        """The corrected ``(n, V)`` float32 hour; appends a record per change to ``records`` unless None."""
        prev = np.asarray(values_prev, dtype=np.float64)
        constraints.check_shapes(prev, values_new)
        state = np.asarray(values_new, dtype=np.float32).astype(np.float64)
        low, high = constraints.boxes(prev)

        def commit(rule: str | np.ndarray, rows: np.ndarray, column: int, after: np.ndarray) -> None:
            """Write ``after`` into ``state[rows, column]`` (float32-rounded) and record the changes."""
            after = after.astype(np.float32).astype(np.float64)
            if records is not None:
                old = state[rows, column]
                moved = ~((old == after) | (np.isnan(old) & np.isnan(after)))
                for row, was, now, name in zip(
                    rows[moved], old[moved], after[moved],
                    np.broadcast_to(np.asarray(rule), rows.shape)[moved], strict=True,
                ):
                    records.append({"row": int(row), "variable": constraints.variables[column], "rule": str(name),
                                    "before": float(was), "after": float(now)})
            state[rows, column] = after

        self._project_boxes(constraints, prev, state, low, high, commit)
        self._project_pressures(constraints, state, low, high, commit)
        self._project_acid_base(constraints, prev, state, low, high, commit)
        self._project_spo2(constraints, state, low, high, commit)
        return state.astype(np.float32)

    # ------------------------------------------------------------------------------ projections
    @staticmethod
    def _project_boxes(constraints: ConstraintSet, prev, state, low, high, commit) -> None:
        out_of_range = constraints.range_violations(state)
        flagged = out_of_range | constraints.rate_violations(prev, state)
        for column in np.flatnonzero(flagged.any(axis=0)):
            rows = np.flatnonzero(flagged[:, column])
            clipped = np.clip(state[rows, column], low[rows, column], high[rows, column])
            commit(np.where(out_of_range[rows, column], "range", "rate_limit"), rows, column, clipped)

    @staticmethod
    def _project_pressures(constraints: ConstraintSet, state, low, high, commit) -> None:
        columns = [constraints.column(code) for code in PRESSURE_CODES]
        present = [c for c in columns if c is not None]
        if len(present) < 2:
            return
        rows = np.flatnonzero(constraints.map_order_violations(state))
        if rows.size:
            chain = np.full((rows.size, 3), np.nan)
            box_low, box_high = np.full((rows.size, 3), -np.inf), np.full((rows.size, 3), np.inf)
            for k, c in enumerate(columns):
                if c is not None:
                    chain[:, k], box_low[:, k], box_high[:, k] = state[rows, c], low[rows, c], high[rows, c]
            fitted = isotonic_chain(chain)
            # each pressure may not exceed what the ones above it can still reach, nor fall below
            # what the ones beneath it already hold
            ceiling = np.where(np.isnan(chain), np.inf, box_high)
            reachable = np.minimum.accumulate(ceiling[:, ::-1], axis=1)[:, ::-1]
            floor = np.full(rows.size, -np.inf)
            for k, c in enumerate(columns):
                if c is None:
                    continue
                value = np.clip(fitted[:, k], np.fmax(box_low[:, k], floor), reachable[:, k])
                commit("map_order", rows, c, value)
                floor = np.fmax(floor, state[rows, c])
        if len(present) < 3:
            return
        dbp, mean, sbp = (state[:, c] for c in columns)
        estimate = (sbp + 2.0 * dbp) / 3.0
        rows = np.flatnonzero(constraints.band_violations(state)["map_formula"])
        if rows.size:
            c = columns[1]
            band_low = np.fmax.reduce([estimate[rows] - MAP_FORMULA_TOLERANCE_MMHG, dbp[rows], low[rows, c]])
            band_high = np.fmin.reduce([estimate[rows] + MAP_FORMULA_TOLERANCE_MMHG, sbp[rows], high[rows, c]])
            reachable = band_low <= band_high
            commit("map_formula", rows[reachable], c,
                   np.clip(mean[rows[reachable]], band_low[reachable], band_high[reachable]))

    @staticmethod
    def _project_acid_base(constraints: ConstraintSet, prev, state, low, high, commit) -> None:
        codes = ("ph", "hco3", "paco2")
        columns = [constraints.column(code) for code in codes]
        if any(c is None for c in columns):
            return
        rows = np.flatnonzero(constraints.band_violations(state)["acid_base"])
        if not rows.size:
            return
        # the three in Henderson-Hasselbalch units: r = pH - 6.1 - log10 HCO3 + log10(0.03 PaCO2);
        # 'sign' is how a unit rise of each (pH, log10 HCO3, log10 PaCO2) moves r
        sign = np.array([1.0, -1.0, 1.0])

        def in_units(values: np.ndarray, k: int) -> np.ndarray:
            return values if k == 0 else np.log10(values)

        index = np.arange(rows.size)
        current = np.stack([in_units(state[rows, c], k) for k, c in enumerate(columns)], axis=1)
        reference = np.stack([
            in_units(np.where(np.isnan(prev[rows, c]), ACID_BASE_NORMAL_MIDPOINT[code], prev[rows, c]), k)
            for k, (code, c) in enumerate(zip(codes, columns, strict=True))
        ], axis=1)
        box_low = np.stack([in_units(low[rows, c], k) for k, c in enumerate(columns)], axis=1)
        box_high = np.stack([in_units(high[rows, c], k) for k, c in enumerate(columns)], axis=1)
        order = np.argsort(-np.abs(current - reference), axis=1, kind="stable")
        residual = current[:, 0] - HH_PK - current[:, 1] + np.log10(CO2_SOLUBILITY) + current[:, 2]
        target = np.clip(residual, -ACID_BASE_TOLERANCE_PH, ACID_BASE_TOLERANCE_PH)
        updated = current.copy()
        for rank in range(3):
            k = order[:, rank]
            wanted = updated[index, k] + (target - residual) * sign[k]
            reached = np.clip(wanted, box_low[index, k], box_high[index, k])
            residual = residual + (reached - updated[index, k]) * sign[k]
            updated[index, k] = reached
        for k, c in enumerate(columns):
            changed = updated[:, k] != current[:, k]
            value = updated[changed, k] if k == 0 else 10.0 ** updated[changed, k]
            commit("acid_base", rows[changed], c, value)

    @staticmethod
    def _project_spo2(constraints: ConstraintSet, state, low, high, commit) -> None:
        c = constraints.column("spo2")
        if c is None or constraints.column("pao2") is None:
            return
        rows = np.flatnonzero(constraints.band_violations(state)["spo2_pao2"])
        if not rows.size:
            return
        expected = constraints.spo2_expected(state)[rows]
        band_low = np.fmax(expected - SPO2_BAND_PERCENT, low[rows, c])
        band_high = np.fmin(expected + SPO2_BAND_PERCENT, high[rows, c])
        reachable = band_low <= band_high
        commit("spo2_pao2", rows[reachable], c,
               np.clip(state[rows[reachable], c], band_low[reachable], band_high[reachable]))
