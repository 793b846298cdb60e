"""What a bedside team would see of a simulated stay: the record a treatment policy decides from.

While the twin simulates, a treatment policy (:class:`organsim.physiology.TreatmentPolicy`, e.g. a
counterfactual strategy) decides each simulated hour's treatments from an
:class:`~organsim.physiology.ObservedState`. :class:`BedsideRecord` keeps that view: the real
context hours as recorded, then every simulated hour as the twin "measures" it, which is how the
agents read their own fed-back hours (:class:`~organsim.agents.forecaster.AgentStepper`): the
hourly-charted variables (vital signs) are measured every hour, the others (labs) are not
measured in simulated hours, so their last real value is carried forward with its age growing.

Hours are ICU hours. A context begins ``C - 1`` hours before its last hour ``t``; hours of the
stay before the context are unknown to the twin (NaN values, default treatments in the state),
and context hours before hour 1 are left out. The states carry no random numbers
(``random`` has no columns), so only policies that draw none can run on them, as for
:class:`organsim.counterfactual.state.RecordedStates`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from organsim.catalog import Catalog
from organsim.data.windows import ForecastBatch
from organsim.physiology import ObservedState

TreatmentDecider = Callable[[ObservedState, int], Mapping[str, np.ndarray]]
"""``(state, hour) -> {treatment code: (n,) array}``: the treatment-policy protocol."""


class BedsideRecord:
    """The observed record of ``n`` simulated stays: context hours, then each simulated hour.

    Parameters
    ----------
    batch
        The problems (one row per simulated stay); its variables, treatments and statics are
        read in the batch's (catalog) order.
    catalog
        Treatment defaults and plausible ranges.

    Attributes
    ----------
    values
        ``(n, C + k, V)`` observed values of the context hours, then of the ``k`` simulated hours
        appended so far (NaN = not measured).
    treatments
        ``(n, C + k, T)`` treatments of the same hours.
    """

    def __init__(self, batch: ForecastBatch, catalog: Catalog) -> None:
        self.variables = batch.variables
        self.treatment_codes = batch.treatment_codes
        self.stay_ids = batch.stay_ids
        self.start_hours = batch.start_hours.astype(np.int64)
        self.context = batch.context_hours
        self.values = np.asarray(batch.values, dtype=np.float64)
        self.treatments = np.asarray(batch.treatments[:, : self.context], dtype=np.float64)
        self.defaults = np.array([catalog.treatment(c).default for c in batch.treatment_codes])
        self.plausible = np.array([catalog.treatment(c).plausible for c in batch.treatment_codes])  # (T, 2)
        self.binary = np.array([catalog.treatment(c).kind == "binary" for c in batch.treatment_codes])
        statics = {code: batch.static[:, i].astype(np.float64) for i, code in enumerate(batch.static_codes)}
        n = batch.size
        self.age, self.sex, self.weight = (statics.get(code, np.full(n, np.nan)) for code in ("age", "sex", "weight"))

    @property
    def simulated_hours(self) -> int:
        """``k``, the simulated hours appended so far."""
        return self.values.shape[1] - self.context

    def append(self, measured: np.ndarray, treatments: np.ndarray) -> None:
        """Append one simulated hour: ``(n, V)`` values as measured (NaN = not measured) and ``(n, T)`` treatments."""
        self.values = np.concatenate([self.values, measured[:, None]], axis=1)
        self.treatments = np.concatenate([self.treatments, treatments[:, None]], axis=1)

    def state(self, rows: np.ndarray, hour: int) -> ObservedState:
        """The state of ``rows`` (which share a last context hour ``t``) when deciding ICU ``hour``.

        ``hour`` is ``t + k + 1`` with ``k`` = :attr:`simulated_hours`: the next hour to simulate.
        """
        first_hour = int(self.start_hours[rows[0]]) - self.context + 1  # ICU hour of the record's first column
        if np.any(self.start_hours[rows] != self.start_hours[rows[0]]):
            raise ValueError("a state is built for rows that share their last context hour")
        if hour != first_hour + self.values.shape[1]:
            raise ValueError(f"the record ends at hour {first_hour + self.values.shape[1] - 1}; cannot decide hour {hour}")
        n, seen = len(rows), hour - 1
        history = np.full((n, seen, len(self.variables)), np.nan)
        given = np.tile(self.defaults, (n, seen, 1))
        keep = slice(max(0, 1 - first_hour), None)  # record columns at ICU hours >= 1
        start = max(first_hour, 1) - 1  # their row in the state
        history[:, start:] = self.values[rows][:, keep]
        given[:, start:] = self.treatments[rows][:, keep]
        measured = ~np.isnan(history)
        index = np.maximum.accumulate(np.where(measured, np.arange(seen)[None, :, None], -1), axis=1)
        carried = np.where(index >= 0, np.take_along_axis(history, np.maximum(index, 0), axis=1), np.nan)
        return ObservedState(
            stay_ids=self.stay_ids[rows],
            variables=self.variables,
            treatment_codes=self.treatment_codes,
            history=history,
            carried=carried,
            carried_hour=np.where(index >= 0, index + 1.0, np.nan),
            treatments=given,
            at_admission=np.tile(self.defaults, (n, 1)),
            age=self.age[rows],
            sex=self.sex[rows],
            weight=self.weight[rows],
            alive=np.ones(n, dtype=bool),
            random=np.zeros((n, hour, 0)),
            random_stay=np.zeros((n, 0)),
        )

    def decide(self, policy: TreatmentDecider) -> np.ndarray:
        """``(n, T)`` the treatments ``policy`` gives in the next simulated hour, for every row.

        Rows are grouped by their last context hour (a policy decides one ICU hour per call).
        Codes the policy leaves out get the catalog default; unknown codes, wrong shapes,
        non-finite values, values outside the plausible range and binary values other than 0/1
        are ValueErrors.
        """
        out = np.tile(self.defaults, (len(self.stay_ids), 1))
        for start_hour in np.unique(self.start_hours):
            rows = np.nonzero(self.start_hours == start_hour)[0]
            hour = int(start_hour) + self.simulated_hours + 1
            decided = policy(self.state(rows, hour), hour)
            for code, value in decided.items():
                if code not in self.treatment_codes:
                    raise ValueError(f"the treatment policy returned unknown treatment {code!r}; known: {', '.join(self.treatment_codes)}")
                j = self.treatment_codes.index(code)
                value = np.asarray(value, dtype=np.float64)
                if value.shape != (len(rows),):
                    raise ValueError(f"the treatment policy returned shape {value.shape} for {code!r} at hour {hour}; expected ({len(rows)},)")
                low, high = self.plausible[j]
                if not np.all(np.isfinite(value)) or np.any((value < low) | (value > high)):
                    raise ValueError(f"the treatment policy gave {code!r} outside its plausible range [{low}, {high}] at hour {hour}")
                if self.binary[j] and not np.all((value == 0) | (value == 1)):
                    raise ValueError(f"the treatment policy gave binary {code!r} a value other than 0/1 at hour {hour}")
                out[rows, j] = value
        return out
