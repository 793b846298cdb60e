"""The coordinated twin behind the :class:`~organsim.counterfactual.futures.Simulator` interface.

:class:`TwinSimulator` answers a what-if request with :meth:`organsim.twin.PatientTwin.rollout`: the
record of each stay up to the hour before the decision hour is the rollout's context (a
:class:`~organsim.data.windows.ForecastBatch` ending at ``decision_hour - 1``), and the strategy
decides every simulated hour's treatments from what a bedside team would see of the simulated stay
(:class:`~organsim.counterfactual.policy.StrategyPolicy`). The treatments a strategy does not govern
follow usual care, which for the twin is the cohort's behaviour policy
(:class:`organsim.twin.behaviour.BehaviourTreatments`, drawn with the run's seed), or observed care
(the record). The futures carry the systems each agent consulted and every change the error
corrector made.

Three variants, so the value of each part shows in the benchmark:

- ``TwinSimulator(twin, behaviour)``: the coordinated twin with the **overlap adjustment**. Where
  the strategy gives a governed treatment in an action class the behaviour policy's fitting cohort
  never received (say 3 L of fluid in an hour when the cohort's largest hourly volume was under
  1.5 L), the agents are shown the representative dose of the nearest class the cohort did receive,
  so they never extrapolate to doses absent from their training data. The futures still report the
  strategy's own doses (what the outcome scores read), and
  :attr:`~organsim.counterfactual.futures.Futures.adjustments` lists every moved dose. Whether a
  dose is usual *in the patient's state* is the overlap guardrail's question
  (:func:`~organsim.counterfactual.overlap.assess_overlap`), which flags and explains it; the twin
  does not replace such doses, because a substitute treatment answers another question: an earlier
  state-level version (nearest class with probability >= 2 % in the simulated state) turned
  restrictive fluids' withheld fluid into boluses and liberal fluids' maintenance into none, and
  reversed the fluid contrast's effect on MAP at 6 h in the counterfactual benchmark (sign accuracy
  0.30 against 0.83 without it, 3,000-patient engine cohort).
- ``overlap_adjustment=False``: the same twin fed the strategy's doses as they are.
- ``hide_treatments=True``: the treatment-blind baseline: the agents see no treatments at all, so
  every strategy gets the same futures (the treatments still appear in the futures).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from organsim.catalog import Catalog
from organsim.counterfactual.futures import Futures, _check_request, _history
from organsim.counterfactual.policy import ROUND_DECIMALS, RecordedTreatments, StrategyPolicy
from organsim.counterfactual.strategy import Strategy
from organsim.data import Cohort
from organsim.data.windows import forecast_batch
from organsim.physiology import ObservedState
from organsim.twin import PatientTwin, Rollout
from organsim.twin.behaviour import (
    ACTION_BINS,
    SAVED_FILE,
    BehaviourPolicy,
    BehaviourPolicyConfig,
    action_class,
)
from organsim.twin.correction import ErrorCorrector

ADJUSTMENT_COLUMNS = {"sample": pl.Int32, "hour": pl.Int32, "treatment": pl.String, "strategy_dose": pl.Float64,
                      "simulated_dose": pl.Float64}
"""Schema of :attr:`Futures.adjustments`: the strategy's dose and the in-support dose the agents saw instead."""


class SupportedTreatments:
    """The overlap adjustment as a treatment policy wrapped around a strategy's policy.

    Each call lets ``policy`` decide, then moves every governed dose whose action class the
    behaviour policy's fitting cohort never received to the representative dose of the nearest
    class it did receive (by class order, the lower one on a tie). It keeps the strategy's doses per
    call so the futures can report them, and what it moved.

    Parameters
    ----------
    policy
        The strategy's treatment policy.
    behaviour
        A fitted behaviour policy: its classes with a representative dose are the support.
    treatments
        The treatments checked (the strategy's governed ones; others are usual or observed care).
    """

    def __init__(self, policy: StrategyPolicy, behaviour: BehaviourPolicy, treatments: Sequence[str]) -> None:
        self.policy = policy
        self.treatments = [code for code in treatments if code in ACTION_BINS]
        self.class_doses = {code: behaviour.class_doses_[code] for code in self.treatments}
        # the classes the cohort received (with a representative dose); class 0 ("none") always is
        self.given = {code: np.flatnonzero(np.isfinite(doses)) for code, doses in self.class_doses.items()}
        self.calls: list[tuple[np.ndarray, int, dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        """Per call: ``(stay_ids, hour, strategy doses, simulated doses)`` of the governed treatments."""

    def __call__(self, state: ObservedState, hour: int) -> dict[str, np.ndarray]:
        decided = dict(self.policy(state, hour))
        if not self.treatments:
            return decided
        strategy_doses, simulated_doses = {}, {}
        for code in self.treatments:
            dose = np.asarray(decided[code], dtype=np.float64)
            class_doses, given = self.class_doses[code], self.given[code]
            chosen = action_class(code, dose)
            nearest = given[np.argmin(np.abs(given[None, :] - chosen[:, None]), axis=1)]  # first (lower) on a tie
            moved = np.where(np.isfinite(class_doses[chosen]), dose, class_doses[nearest])
            strategy_doses[code], simulated_doses[code] = dose, moved
            decided[code] = moved
        self.calls.append((np.asarray(state.stay_ids), int(hour), strategy_doses, simulated_doses))
        return decided

    def per_sample(self, stay_id: int, n_samples: int) -> tuple[dict[tuple[int, int], dict[str, float]], pl.DataFrame]:
        """The strategy's doses of one stay by ``(sample, hour)`` and its adjustment rows.

        The twin simulates a stay's samples as consecutive rows, sample ``j`` the ``j``-th row of
        the stay in each call (:meth:`organsim.twin.PatientTwin.rollout`).
        """
        doses: dict[tuple[int, int], dict[str, float]] = {}
        rows: list[dict[str, object]] = []
        for stay_ids, hour, strategy_doses, simulated_doses in self.calls:
            positions = np.flatnonzero(stay_ids == stay_id)
            if len(positions) != n_samples:
                if len(positions):
                    raise RuntimeError(f"stay {stay_id} has {len(positions)} rows in a call, expected one per sample ({n_samples})")
                continue
            for sample, position in enumerate(positions):
                doses[(sample, hour)] = {code: float(strategy_doses[code][position]) for code in self.treatments}
                for code in self.treatments:
                    if simulated_doses[code][position] != strategy_doses[code][position]:
                        rows.append({"sample": sample, "hour": hour, "treatment": code,
                                     "strategy_dose": float(strategy_doses[code][position]),
                                     "simulated_dose": float(simulated_doses[code][position])})
        return doses, pl.DataFrame(rows, schema=ADJUSTMENT_COLUMNS)


class TwinSimulator:
    """Sampled futures from the coordinated twin (see the module docstring).

    Parameters
    ----------
    twin
        A :class:`~organsim.twin.PatientTwin` (with an error corrector when ``correct``).
    behaviour
        The fitted behaviour policy of the cohort the twin learnt from: usual care for the
        treatments a strategy leaves to it, and the support the overlap adjustment keeps to. Needed
        for strategies with ``others: usual_care`` and for the adjustment.
    overlap_adjustment
        Show the agents in-support doses where the strategy gives a dose class the behaviour
        policy's fitting cohort never received.
    hide_treatments
        The treatment-blind baseline (the agents see no treatments; no adjustment is needed).
    references
        The twin's reference setting (``"policy"``, ``"none"``, ``"all"``).
    correct
        Run the error corrector after each simulated hour.
    name
        The simulator's name (default: ``twin``, ``twin_no_overlap_adjustment`` or
        ``twin_treatment_blind``).
    """

    def __init__(
        self,
        twin: PatientTwin,
        behaviour: BehaviourPolicy | None,
        *,
        overlap_adjustment: bool = True,
        hide_treatments: bool = False,
        references: str = "policy",
        correct: bool = True,
        name: str | None = None,
    ) -> None:
        if overlap_adjustment and not hide_treatments and behaviour is None:
            raise ValueError("the overlap adjustment needs a behaviour policy: pass one, or overlap_adjustment=False")
        self.twin = twin
        self.behaviour = behaviour
        self.overlap_adjustment = overlap_adjustment and not hide_treatments
        self.hide_treatments = hide_treatments
        self.references = references
        self.correct = correct
        default = "twin_treatment_blind" if hide_treatments else ("twin" if self.overlap_adjustment else "twin_no_overlap_adjustment")
        self.name = name or default

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        behaviour: BehaviourPolicy | None,
        *,
        device: str = "auto",
        catalog: Catalog | None = None,
        **options: object,
    ) -> TwinSimulator:
        """The twin of ``model_dir`` (:meth:`PatientTwin.load`, with the catalog's error corrector);
        ``options`` go to the constructor."""
        corrector = ErrorCorrector.from_catalog(catalog)
        twin = PatientTwin.load(model_dir, device=device, corrector=corrector, **({"catalog": catalog} if catalog else {}))
        return cls(twin, behaviour, **options)  # type: ignore[arg-type]

    def variants(self) -> list[TwinSimulator]:
        """This twin, the same twin without the overlap adjustment, and the treatment-blind baseline."""
        common = {"references": self.references, "correct": self.correct}
        return [
            TwinSimulator(self.twin, self.behaviour, overlap_adjustment=True, **common),  # type: ignore[arg-type]
            TwinSimulator(self.twin, self.behaviour, overlap_adjustment=False, **common),  # type: ignore[arg-type]
            TwinSimulator(self.twin, self.behaviour, hide_treatments=True, overlap_adjustment=False, **common),  # type: ignore[arg-type]
        ]

    def __repr__(self) -> str:
        return f"TwinSimulator({self.name!r}, references={self.references!r}, correct={self.correct})"

    def policy(self, cohort: Cohort, stay_ids: Sequence[int], strategy: Strategy, decision_hour: int, seed: int) -> StrategyPolicy:
        """``strategy`` as the twin runs it for ``stay_ids``: the behaviour policy (seeded) as usual care,
        their record as observed care."""
        if strategy.others == "usual_care" and self.behaviour is None:
            raise ValueError(f"strategy {strategy.name!r} leaves its other treatments to usual care: "
                             "give the twin simulator a behaviour policy (BehaviourPolicy().fit(cohort))")
        return StrategyPolicy(
            strategy, decision_hour,
            usual_care=None if self.behaviour is None else self.behaviour.treatment_policy(seed),
            observed=RecordedTreatments(cohort.treatments.filter(pl.col("stay_id").is_in(list(stay_ids))), catalog=cohort.catalog),
            catalog=cohort.catalog,
        )

    def simulate(
        self,
        cohort: Cohort,
        stay_ids: Sequence[int],
        decision_hour: int,
        strategy: Strategy,
        *,
        horizon: int,
        n_samples: int,
        seed: int = 0,
    ) -> list[Futures]:
        """``n_samples`` futures of each stay from ``decision_hour`` under ``strategy``, in ``stay_ids`` order.

        Each stay's context is its record of hours ``decision_hour - C .. decision_hour - 1``
        (``C`` = the agents' context length); the stay must be recorded up to ``decision_hour - 1``.
        The twin does not model death: every sample runs the whole horizon.
        """
        _check_request(cohort, stay_ids, decision_hour, horizon)
        ids = [int(s) for s in stay_ids]
        if len(set(ids)) != len(ids):
            raise ValueError(f"stay ids must be distinct, got {ids}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if decision_hour < 2:
            raise ValueError("the twin starts from a recorded hour: the decision hour must be 2 or later "
                             f"(hour 1 has no record before it), got {decision_hour}")
        last_hours = dict(cohort.hourly.filter(pl.col("stay_id").is_in(ids)).group_by("stay_id").agg(pl.col("hour").max()).iter_rows())
        ended = [(s, int(last_hours.get(s, 0))) for s in ids if int(last_hours.get(s, 0)) < decision_hour - 1]
        if ended:
            stay, last = ended[0]
            raise ValueError(f"the record of stay {stay} ends in hour {last}: a decision at hour {decision_hour} needs the hours "
                             f"up to {decision_hour - 1} (choose an earlier decision hour)")
        context = min(decision_hour - 1, self.twin.agents.config.context_hours)
        starts = pl.DataFrame({"stay_id": ids, "hour": [decision_hour - 1] * len(ids)}, schema={"stay_id": pl.Int64, "hour": pl.Int32})
        batch = forecast_batch(cohort, starts, context_hours=context, horizon=horizon)
        policy = self.policy(cohort, ids, strategy, decision_hour, seed)
        supported = (SupportedTreatments(policy, self.behaviour, strategy.governed)
                     if self.overlap_adjustment and self.behaviour is not None else None)
        rollout = self.twin.rollout(batch, horizon, n_samples=n_samples, seed=seed, references=self.references,
                                    treatment_policy=supported or policy, correct=self.correct, hide_treatments=self.hide_treatments)
        return [self._futures(cohort, rollout, b, stay_id, decision_hour, strategy, supported) for b, stay_id in enumerate(ids)]

    def _futures(self, cohort: Cohort, rollout: Rollout, b: int, stay_id: int, decision_hour: int, strategy: Strategy,
                 supported: SupportedTreatments | None) -> Futures:
        catalog = cohort.catalog
        k, horizon = rollout.n_samples, rollout.horizon
        hours = np.arange(decision_hour, decision_hour + horizon, dtype=np.int32)
        variables = list(catalog.variable_codes)
        treatment_codes = list(catalog.treatment_codes)
        values = rollout.values[:, b]  # (K, H, V) in rollout.variables order
        # (K, H, T); the rollout keeps float32: back to the policy's decimals (0.1, not 0.10000000149)
        treatments = np.round(rollout.treatments[:, b].astype(np.float64), ROUND_DECIMALS)
        adjustments = None
        if supported is not None:
            strategy_doses, adjustments = supported.per_sample(stay_id, k)
            for (sample, hour), doses in strategy_doses.items():
                for code, dose in doses.items():
                    treatments[sample, hour - decision_hour, rollout.treatment_codes.index(code)] = dose
        columns: dict[str, np.ndarray] = {
            "sample": np.repeat(np.arange(k, dtype=np.int32), horizon),
            "hour": np.tile(hours, k),
        }
        for code in variables:
            columns[code] = (values[..., rollout.variables.index(code)].reshape(-1) if code in rollout.variables
                             else np.full(k * horizon, np.nan, dtype=np.float32))
        for code in treatment_codes:
            columns[code] = treatments[..., rollout.treatment_codes.index(code)].reshape(-1)
        samples = pl.DataFrame(columns).with_columns([pl.col(c).fill_nan(None) for c in variables])
        return Futures(
            stay_id=stay_id,
            decision_hour=decision_hour,
            horizon=horizon,
            strategy=strategy.name,
            simulator=self.name,
            variables=tuple(variables),
            treatment_codes=tuple(treatment_codes),
            history=_history(cohort, stay_id, decision_hour),
            samples=samples,
            death_hour=np.full(k, np.nan),
            stay=cohort.stays.filter(pl.col("stay_id") == stay_id),
            consulted=consulted_frame(rollout.consulted[:, b], rollout.systems, decision_hour),
            corrections=(rollout.corrections.filter(pl.col("problem") == b)
                         .select(pl.col("sample").cast(pl.Int32), (pl.col("step") + decision_hour - 1).cast(pl.Int32).alias("hour"),
                                 "variable", "rule", "before", "after")),
            adjustments=adjustments,
            band_calibration=self.twin.band_calibration,
        )


def consulted_frame(consulted: np.ndarray, systems: Sequence[str], decision_hour: int) -> pl.DataFrame:
    """``(sample, hour, system, consulted)`` rows, one per agent-hour and consulted system, from a
    ``(K, H, S, S)`` bool array (``[k, h, s, r]``: agent ``s`` consulted system ``r``)."""
    sample, step, agent, other = np.nonzero(consulted)
    names = np.asarray(systems)
    return pl.DataFrame({"sample": sample.astype(np.int32), "hour": (step + decision_hour).astype(np.int32),
                         "system": names[agent], "consulted": names[other]},
                        schema={"sample": pl.Int32, "hour": pl.Int32, "system": pl.String, "consulted": pl.String})



def behaviour_policy_for(
    cohort: Cohort,
    directory: str | Path | None = None,
    *,
    config: BehaviourPolicyConfig | None = None,
) -> BehaviourPolicy | None:
    """The behaviour policy of ``cohort``'s care team: loaded from ``directory`` when one is saved
    there, else fitted on the cohort's train split (the whole cohort when unsplit) and saved to
    ``directory`` when given. None when the cohort recorded no treatments (no usual care to learn)."""
    if directory is not None and (Path(directory) / SAVED_FILE).is_file():
        return BehaviourPolicy.load(directory, catalog=cohort.catalog)
    if not cohort.meta.get("treatments_recorded", False):
        return None
    train = cohort.subset(split="train") if (cohort.stays["split"] == "train").any() else cohort
    behaviour = BehaviourPolicy(config, catalog=cohort.catalog).fit(train)
    if directory is not None:
        behaviour.save(directory)
    return behaviour
