"""Strategies that run: treatment policies (the physiology engine's protocol) built from :class:`Strategy`.

:class:`StrategyPolicy` decides the treatments of ICU hours ``decision_hour, decision_hour + 1, ...``
from a :class:`~organsim.counterfactual.state.StrategyState`, vectorised over patients; it implements
:class:`organsim.physiology.TreatmentPolicy`, so ``engine.counterfactuals(ids, policy, decision_hour)``
runs it. :class:`RecordedTreatments` replays the treatments a cohort recorded (observed care).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from organsim.catalog import Catalog, load_catalog
from organsim.counterfactual.state import StrategyState
from organsim.counterfactual.strategy import (
    Conditions,
    ScheduleRule,
    Strategy,
    ThresholdRule,
    TitrationRule,
    TreatmentPlan,
)
from organsim.physiology import TreatmentPolicy

ROUND_DECIMALS = 6
"""Titrated doses are rounded to this many decimals so repeated steps do not drift (0.15, not 0.15000000000000002)."""


class RecordedTreatments:
    """Observed care: the treatments a cohort recorded for each stay and hour (catalog default elsewhere).

    Parameters
    ----------
    treatments
        ``(stay_id, hour, <catalog treatments>...)``.
    catalog
        Treatment codes and defaults (default :func:`load_catalog`).
    """

    def __init__(self, treatments: pl.DataFrame, *, catalog: Catalog | None = None) -> None:
        catalog = catalog or load_catalog()
        self.treatment_codes = tuple(catalog.treatment_codes)
        self.defaults = np.array([catalog.treatment(c).default for c in self.treatment_codes])
        self._by_stay: dict[int, np.ndarray] = {}
        if treatments.height:
            frame = treatments.select("stay_id", "hour", *self.treatment_codes).sort("stay_id", "hour")
            for (stay_id,), part in frame.group_by("stay_id", maintain_order=True):
                hours = part["hour"].to_numpy().astype(np.int64)
                block = np.tile(self.defaults, (int(hours.max()), 1))
                values = part.select(self.treatment_codes).to_numpy().astype(np.float64)
                block[hours - 1] = np.where(np.isnan(values), self.defaults, values)
                self._by_stay[int(stay_id)] = block

    def __call__(self, state: StrategyState, hour: int) -> dict[str, np.ndarray]:
        out = np.tile(self.defaults, (state.n, 1))
        for i, stay_id in enumerate(state.stay_ids):
            block = self._by_stay.get(int(stay_id))
            if block is not None and hour <= block.shape[0]:
                out[i] = block[hour - 1]
        return {code: out[:, j] for j, code in enumerate(self.treatment_codes)}

    def __repr__(self) -> str:
        return f"RecordedTreatments({len(self._by_stay)} stays)"


class StrategyPolicy:
    """A :class:`Strategy` deciding every ICU hour from ``decision_hour`` on.

    Parameters
    ----------
    strategy
        The strategy.
    decision_hour
        The ICU hour the strategy takes over (its hour 0).
    usual_care
        Decides the treatments the strategy does not govern when ``strategy.others`` is
        ``"usual_care"`` (the engine's clinician for the oracle; a simulator's behaviour policy).
    observed
        The recorded treatments, needed when ``strategy.others`` is ``"observed"``.
    catalog
        Default freshness of each variable (default :func:`load_catalog`).
    """

    def __init__(
        self,
        strategy: Strategy,
        decision_hour: int,
        *,
        usual_care: TreatmentPolicy | None = None,
        observed: TreatmentPolicy | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        if decision_hour < 1:
            raise ValueError(f"decision_hour is an ICU hour (1-based), got {decision_hour}")
        others = {"usual_care": usual_care, "observed": observed, "none": None}[strategy.others]
        if others is None and strategy.others != "none":
            raise ValueError(f"strategy {strategy.name!r} leaves its other treatments to {strategy.others!r}; "
                             f"pass {strategy.others}=<a treatment policy>")
        self.strategy = strategy
        self.decision_hour = int(decision_hour)
        self.others = others
        self._freshness = strategy.freshness(catalog or load_catalog())

    def __repr__(self) -> str:
        return f"StrategyPolicy({self.strategy.name!r}, decision_hour={self.decision_hour})"

    def __call__(self, state: StrategyState, hour: int) -> dict[str, np.ndarray]:
        if hour < self.decision_hour:
            raise ValueError(f"strategy {self.strategy.name!r} decides from ICU hour {self.decision_hour}; asked for hour {hour}")
        offset = hour - self.decision_hour
        decided = {} if self.others is None else {
            code: value for code, value in self.others(state, hour).items() if code not in self.strategy.treatments
        }
        for code, plan in self.strategy.treatments.items():
            decided[code] = self._plan_value(code, plan, state, offset)
        return decided

    # ------------------------------------------------------------------ internals
    def _quantity(self, state: StrategyState, quantity: str, max_age_hours: int | None) -> np.ndarray:
        if "." not in quantity:
            age = max_age_hours if max_age_hours is not None else self._freshness[quantity]
            return np.asarray(state.latest(quantity, age), dtype=np.float64)
        treatment, suffix = quantity.split(".", 1)
        if suffix == "previous":
            return np.asarray(state.previous_treatment(treatment), dtype=np.float64)
        total = np.asarray(state.treatment_history(treatment), dtype=np.float64).sum(axis=1)
        return total / np.asarray(state.weight, dtype=np.float64) if suffix == "total_per_kg" else total

    def _holds(self, state: StrategyState, clauses: list[Conditions]) -> np.ndarray:
        """``(n,)`` whether any clause (a conjunction of conditions) holds; NaN values never satisfy one."""
        result = np.zeros(state.n, dtype=bool)
        for clause in clauses:
            holds = np.ones(state.n, dtype=bool)
            for condition in clause:
                value = self._quantity(state, condition.quantity, condition.max_age_hours)
                with np.errstate(invalid="ignore"):
                    if condition.op == "<":
                        holds &= value < condition.value
                    elif condition.op == "<=":
                        holds &= value <= condition.value
                    elif condition.op == ">":
                        holds &= value > condition.value
                    else:
                        holds &= value >= condition.value
            result |= holds
        return result

    @staticmethod
    def _active(rule: ThresholdRule | TitrationRule | ScheduleRule, offset: int) -> bool:
        if rule.until_hour is not None and offset >= rule.until_hour:
            return False
        if isinstance(rule, ScheduleRule):
            if rule.every_hours is None:
                return offset in rule.at_hours
            return any(offset >= h and (offset - h) % rule.every_hours == 0 for h in rule.at_hours)
        return offset >= rule.from_hour

    def _plan_value(self, code: str, plan: TreatmentPlan, state: StrategyState, offset: int) -> np.ndarray:
        value = np.full(state.n, plan.otherwise)
        for rule in plan.rules:
            if not self._active(rule, offset):
                continue
            if isinstance(rule, ScheduleRule):
                value = np.full(state.n, rule.dose)
            elif isinstance(rule, ThresholdRule):
                fires = self._holds(state, rule.clauses())
                dose = np.full(state.n, rule.dose)
                if rule.cap is not None:
                    history = np.asarray(state.treatment_history(code), dtype=np.float64)
                    recent = history[:, history.shape[1] - (rule.cap.window_hours - 1):].sum(axis=1) if rule.cap.window_hours > 1 else 0.0
                    limit = rule.cap.total * np.asarray(state.weight, dtype=np.float64) if rule.cap.per_kg else rule.cap.total
                    dose = np.clip(limit - recent, 0.0, rule.dose)
                value = np.where(fires, dose, value)
            else:
                value = self._titrate(code, rule, state)
        return value

    def _titrate(self, code: str, rule: TitrationRule, state: StrategyState) -> np.ndarray:
        previous = np.asarray(state.previous_treatment(code), dtype=np.float64)
        up = self._holds(state, rule.raise_clauses())
        wean_clauses = rule.wean_clauses()
        down = self._holds(state, wean_clauses) if wean_clauses else np.zeros(state.n, dtype=bool)
        if rule.step is None:  # a 0/1 treatment: on when 'when' holds, off when 'wean_when' holds
            return np.where(up, 1.0, np.where(down, 0.0, previous))
        running = previous > 0
        value = np.where(up & ~running, rule.start_dose, previous)
        value = np.where(up & running, previous + rule.step, value)
        value = np.where(down & running, previous - rule.step, value)
        value = np.round(np.minimum(value, rule.maximum), ROUND_DECIMALS)
        return np.where(value < max(rule.stop_below, 10.0 ** -ROUND_DECIMALS), 0.0, value)
