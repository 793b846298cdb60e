"""The behaviour policy: how the care team of a cohort treated patients, state by state.

A behaviour-policy model predicts, from what a bedside team knew before an ICU hour
(:func:`state_features`), which class of each treatment it gave in that hour: one gradient-boosted
classifier per treatment (scikit-learn ``HistGradientBoostingClassifier``). Action classes bin
each treatment (:data:`ACTION_BINS`): no fluid, < 200 mL, 200-600 mL, 600-1500 mL, >= 1500 mL in
the hour; no norepinephrine, < 0.1, 0.1-0.3, >= 0.3 ug/kg/min; antibiotic and ventilation 0/1.

Two users read it:

- the counterfactual overlap guardrail (:mod:`organsim.counterfactual.overlap`) asks how probable
  a strategy's action is in a state (:meth:`BehaviourPolicy.probabilities`);
- simulators and synthesisers use it as a treatment policy (:meth:`BehaviourPolicy.sample_actions`,
  :class:`BehaviourTreatments`): each hour it draws an action class per treatment from the
  predicted probabilities and gives that class's representative dose (the median dose the class
  received in the fitting cohort), so simulated patients are treated the way the cohort's patients
  were.

:meth:`BehaviourPolicy.save` / :meth:`BehaviourPolicy.load` store it in a directory:
``behaviour.json`` (settings, feature names, classes, doses, counts) and one ``<treatment>.skops``
file per classifier (skops, which loads only the scikit-learn types it is told to trust; never
pickle).

:func:`state_features` summarises, for every recorded hour ``h`` of every stay, the latest value of
key variables carried forward within their window, the treatments of the previous hour, fluid given
over the last 6 hours and in all, antibiotic doses so far and hours since the last one, hours
ventilated, the ICU hour, age and weight; :func:`observed_state_features` gives the same row for
the hour an :class:`~organsim.physiology.ObservedState` is about to decide.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import skops.io as skops_io
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import ThreadpoolController

from organsim.catalog import Catalog, load_catalog
from organsim.data import Cohort
from organsim.physiology import ObservedState
from organsim.scores import DEFAULT_CARRY_FORWARD_HOURS
from organsim.utils.errors import DataError
from organsim.utils.io import atomic_directory

STATE_VARIABLES = (
    "map", "sbp", "hr", "resp_rate", "spo2", "temperature", "gcs", "cvp",
    "lactate", "wbc", "creatinine", "platelets", "bilirubin_total",
)
"""Variables whose latest values describe the state (those the strategies and the clinician read)."""
FLUID_WINDOW_HOURS = 6

ACTION_BINS: dict[str, tuple[float, ...]] = {
    "iv_fluid_ml": (200.0, 600.0, 1500.0),
    "norepinephrine": (0.1, 0.3),
    "antibiotic": (),
    "mechanical_ventilation": (),
}
"""Per treatment, the edges above 0 that split the doses into classes: class 0 is "none" (<= 0),
class ``i >= 1`` is ``(edge[i-2], edge[i-1])`` with edge[-1] = 0 (binary treatments: 0 / 1)."""

SAVED_FILE = "behaviour.json"
_CONTROLLER: list[ThreadpoolController] = []
_TRUSTED_PREFIXES = ("sklearn.ensemble._hist_gradient_boosting.", "sklearn._loss.")
"""Types a saved classifier may hold (skops refuses to build anything else unless trusted)."""


def _openmp() -> ThreadpoolController:
    """One thread-pool controller for the process: building one scans the loaded libraries (tens of
    ms), too slow to repeat for every hour a simulator asks the policy."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


# ------------------------------------------------------------------------------------- features
def _joined(hourly: pl.DataFrame, treatments: pl.DataFrame, stays: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    for name, frame, needed in (("hourly", hourly, ("stay_id", "hour", *STATE_VARIABLES)),
                                ("treatments", treatments, ("stay_id", "hour", *catalog.treatment_codes)),
                                ("stays", stays, ("stay_id", "age", "weight"))):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"the {name} frame lacks column(s) {missing}", file=f"<{name}>", column=missing[0])
    defaults = [pl.col(c).fill_null(catalog.treatment(c).default).cast(pl.Float64) for c in catalog.treatment_codes]
    return (
        hourly.select("stay_id", "hour", *[pl.col(v).cast(pl.Float64) for v in STATE_VARIABLES])
        .join(treatments.select("stay_id", "hour", *catalog.treatment_codes), on=["stay_id", "hour"], how="left")
        .with_columns(defaults)
        .join(stays.select("stay_id", pl.col("age").cast(pl.Float64), pl.col("weight").cast(pl.Float64)), on="stay_id", how="left")
        .sort("stay_id", "hour")
    )


def state_features(
    hourly: pl.DataFrame,
    treatments: pl.DataFrame,
    stays: pl.DataFrame,
    *,
    catalog: Catalog | None = None,
) -> pl.DataFrame:
    """``(stay_id, hour, <features>...)``: the state when deciding each recorded hour (module docstring).

    Frames are in the canonical cohort layout, one row per hour of each stay, consecutive hours.
    Features (Float64, null = unknown): each of :data:`STATE_VARIABLES` (latest value before the
    hour, within 4 h for vitals, 8 h for GCS, 24 h for labs), ``map_before`` (the latest MAP before
    the previous hour, showing a sustained low), ``<treatment>_previous``, ``fluid_ml_per_kg_6h``,
    ``fluid_ml_per_kg_total``, ``antibiotic_doses``, ``hours_since_antibiotic``,
    ``ventilated_hours``, ``icu_hour``, ``age``, ``weight``. A row reads only the hours before it.
    """
    catalog = catalog or load_catalog()
    frame = _joined(hourly, treatments, stays, catalog)
    hour = pl.col("hour")
    expressions: list[pl.Expr] = []
    for code in STATE_VARIABLES:
        window = DEFAULT_CARRY_FORWARD_HOURS[catalog.variable(code).kind]
        measured_hour = pl.when(pl.col(code).is_not_null()).then(hour).forward_fill()
        value = pl.col(code).forward_fill()
        fresh = hour - measured_hour.shift(1).over("stay_id") <= window
        expressions.append(pl.when(fresh).then(value.shift(1).over("stay_id")).alias(code))
        if code == "map":
            fresh_before = (hour - 1) - measured_hour.shift(2).over("stay_id") <= window
            expressions.append(pl.when(fresh_before).then(value.shift(2).over("stay_id")).alias("map_before"))
    for code in catalog.treatment_codes:
        expressions.append(pl.col(code).shift(1).over("stay_id").fill_null(0.0).alias(f"{code}_previous"))
    fluid = pl.col("iv_fluid_ml")
    expressions += [
        (fluid.rolling_sum(FLUID_WINDOW_HOURS, min_samples=1).shift(1).over("stay_id").fill_null(0.0) / pl.col("weight"))
        .alias(f"fluid_ml_per_kg_{FLUID_WINDOW_HOURS}h"),
        (fluid.cum_sum().shift(1).over("stay_id").fill_null(0.0) / pl.col("weight")).alias("fluid_ml_per_kg_total"),
        pl.col("antibiotic").cum_sum().shift(1).over("stay_id").fill_null(0.0).alias("antibiotic_doses"),
        (hour - pl.when(pl.col("antibiotic") > 0.5).then(hour).forward_fill().shift(1).over("stay_id"))
        .cast(pl.Float64).alias("hours_since_antibiotic"),
        pl.col("mechanical_ventilation").cum_sum().shift(1).over("stay_id").fill_null(0.0).alias("ventilated_hours"),
        hour.cast(pl.Float64).alias("icu_hour"),
        "age",
        "weight",
    ]
    return frame.select("stay_id", "hour", *expressions)


def feature_names(catalog: Catalog | None = None) -> tuple[str, ...]:
    """The feature columns of :func:`state_features`, in order."""
    catalog = catalog or load_catalog()
    return (
        *STATE_VARIABLES[:1], "map_before", *STATE_VARIABLES[1:],
        *(f"{c}_previous" for c in catalog.treatment_codes),
        f"fluid_ml_per_kg_{FLUID_WINDOW_HOURS}h", "fluid_ml_per_kg_total", "antibiotic_doses", "hours_since_antibiotic",
        "ventilated_hours", "icu_hour", "age", "weight",
    )


def observed_state_features(state: ObservedState, *, catalog: Catalog | None = None) -> pl.DataFrame:
    """``(row, <features>...)``: :func:`state_features` of the hour ``state`` decides, one row per patient.

    The same features, computed from the state's arrays (no frames of the whole history: a
    simulator asks for them every simulated hour). ``row`` is the patient's position in ``state``
    (``0 .. n-1``; simulated samples of one stay share a ``stay_id``). Variables of
    :data:`STATE_VARIABLES` the state does not carry are unknown (null); treatments it does not
    carry take the catalog default.
    """
    catalog = catalog or load_catalog()
    n, seen = state.n, state.hours_seen
    hour = seen + 1
    columns: dict[str, np.ndarray] = {"row": np.arange(n, dtype=np.int64)}
    for code in STATE_VARIABLES:
        window = DEFAULT_CARRY_FORWARD_HOURS[catalog.variable(code).kind]
        value = np.full(n, np.nan)
        if code in state.variables and seen:
            value = np.asarray(state.latest(code, window), dtype=np.float64)
        columns[code] = value
        if code == "map":
            before = np.full(n, np.nan)
            if code in state.variables and seen >= 2:
                j = state.column(code)
                fresh = (hour - 1) - state.carried_hour[:, -2, j] <= window
                before = np.where(fresh, state.carried[:, -2, j], np.nan)
            columns["map_before"] = before
    given = {}
    for code in catalog.treatment_codes:
        history = np.full((n, seen), float(catalog.treatment(code).default))
        if code in state.treatment_codes:
            history = np.asarray(state.treatments[:, :, state.treatment_codes.index(code)], dtype=np.float64)
        given[code] = history
        columns[f"{code}_previous"] = history[:, -1] if seen else np.zeros(n)
    weight = np.asarray(state.weight, dtype=np.float64)
    fluid, antibiotic = given["iv_fluid_ml"], given["antibiotic"]
    columns[f"fluid_ml_per_kg_{FLUID_WINDOW_HOURS}h"] = fluid[:, -FLUID_WINDOW_HOURS:].sum(axis=1) / weight
    columns["fluid_ml_per_kg_total"] = fluid.sum(axis=1) / weight
    columns["antibiotic_doses"] = antibiotic.sum(axis=1)
    dosed = antibiotic > 0.5
    last_dose = np.full(n, np.nan)  # ICU hour of the last dose
    if seen:
        last_dose = np.where(dosed.any(axis=1), seen - np.argmax(dosed[:, ::-1], axis=1), np.nan)
    columns["hours_since_antibiotic"] = hour - last_dose
    columns["ventilated_hours"] = given["mechanical_ventilation"].sum(axis=1)
    columns["icu_hour"] = np.full(n, float(hour))
    columns["age"] = np.asarray(state.age, dtype=np.float64)
    columns["weight"] = weight
    return pl.DataFrame(columns).with_columns([pl.col(c).fill_nan(None) for c in columns if c != "row"])


# ------------------------------------------------------------------------------------- actions
def action_class(code: str, values: np.ndarray) -> np.ndarray:
    """``(n,)`` int action class of treatment ``code`` for ``values`` (see :data:`ACTION_BINS`)."""
    if code not in ACTION_BINS:
        raise KeyError(f"no action classes for treatment {code!r}; known: {', '.join(ACTION_BINS)}")
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, 1 + np.searchsorted(np.asarray(ACTION_BINS[code]), values, side="right"), 0).astype(np.int64)


def n_action_classes(code: str) -> int:
    """How many action classes treatment ``code`` has (2 for a 0/1 treatment)."""
    edges = ACTION_BINS[code]
    return 2 + len(edges) if edges else 2


def action_label(code: str, action: int, unit: str) -> str:
    """Human words for an action class: ``"none"``, ``"given"``, ``"200-600 mL/h"``, ``">= 1500 mL/h"``."""
    edges = ACTION_BINS[code]
    if action == 0:
        return "none"
    if not edges:
        return "given"
    low = 0.0 if action == 1 else edges[action - 2]
    if action - 1 >= len(edges):
        return f">= {low:g} {unit}"
    return f"< {edges[0]:g} {unit}" if action == 1 else f"{low:g}-{edges[action - 1]:g} {unit}"


@dataclass(frozen=True)
class BehaviourPolicyConfig:
    """Settings of the per-treatment classifiers.

    Attributes
    ----------
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
        ``HistGradientBoostingClassifier`` settings (few, shallow trees with large leaves: smooth
        probabilities rather than memorised rows).
    max_rows
        Rows (stay-hours) used for fitting; a larger cohort is subsampled with ``seed``.
    threads
        OpenMP threads for fitting and prediction (None: the library's default, every core). One
        by default: the models are small, and on a shared CPU OpenMP's busy threads slow a fit
        tenfold (19 s on one thread vs 225 s on all of a loaded 2-core machine, 28,000 stay-hours).
    seed
        Subsampling and boosting seed.
    """

    max_iter: int = 60
    learning_rate: float = 0.1
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    max_rows: int = 200_000
    threads: int | None = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_iter < 1 or self.max_leaf_nodes < 2 or self.min_samples_leaf < 1 or self.max_rows < 100:
            raise ValueError("max_iter >= 1, max_leaf_nodes >= 2, min_samples_leaf >= 1 and max_rows >= 100 are required")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must lie in (0, 1], got {self.learning_rate}")


class BehaviourPolicy:
    """How the care team of a cohort treated patients, state by state (see the module docstring).

    Fitted attributes end in ``_``: ``classifiers_`` (treatment -> classifier, or None when the
    cohort shows a single action), ``classes_`` (treatment -> the action classes seen),
    ``action_shares_`` (treatment -> share of each action class), ``class_doses_`` (treatment ->
    ``(n_classes,)`` representative dose of each class in the treatment's unit: 0 for "none", the
    median fitted dose of the others, NaN for a class never seen), ``n_rows_``, ``n_stays_``.

    Examples
    --------
    >>> behaviour = BehaviourPolicy().fit(cohort)                               # doctest: +SKIP
    >>> behaviour.save("runs/behaviour"); BehaviourPolicy.load("runs/behaviour")  # doctest: +SKIP
    >>> doses = behaviour.sample_actions(features, np.random.default_rng(0))     # doctest: +SKIP
    """

    def __init__(self, config: BehaviourPolicyConfig | None = None, *, catalog: Catalog | None = None) -> None:
        self.config = config or BehaviourPolicyConfig()
        self.catalog = catalog or load_catalog()
        self.features = feature_names(self.catalog)
        self.classifiers_: dict[str, HistGradientBoostingClassifier | None] = {}
        self.classes_: dict[str, np.ndarray] = {}
        self.action_shares_: dict[str, dict[int, float]] = {}
        self.class_doses_: dict[str, np.ndarray] = {}
        self.n_rows_ = 0
        self.n_stays_ = 0
        self._last_state: tuple[ObservedState, dict[str, np.ndarray]] | None = None

    def __repr__(self) -> str:
        fitted = f"fitted on {self.n_stays_} stays, {self.n_rows_} stay-hours" if self.classes_ else "not fitted"
        return f"BehaviourPolicy({fitted})"

    def fit(self, cohort: Cohort) -> BehaviourPolicy:
        """Fit one classifier per treatment on every recorded stay-hour of ``cohort``; returns self."""
        if not cohort.meta.get("treatments_recorded", False):
            raise DataError("the cohort has no recorded treatments (cohort.json treatments_recorded is false): "
                            "a behaviour policy needs them", file="cohort.json", column="treatments_recorded")
        features = state_features(cohort.hourly, cohort.treatments, cohort.stays, catalog=self.catalog)
        targets = features.select("stay_id", "hour").join(cohort.treatments, on=["stay_id", "hour"], how="left")
        if features.height > self.config.max_rows:
            rng = np.random.default_rng(self.config.seed)
            keep = np.sort(rng.choice(features.height, self.config.max_rows, replace=False))
            features, targets = features[keep], targets[keep]
        x = features.select(self.features).to_numpy().astype(np.float64)
        for code in ACTION_BINS:
            doses = targets[code].fill_null(self.catalog.treatment(code).default).to_numpy().astype(np.float64)
            y = action_class(code, doses)
            classes, counts = np.unique(y, return_counts=True)
            self.classes_[code] = classes
            self.action_shares_[code] = {int(c): float(n / len(y)) for c, n in zip(classes, counts, strict=True)}
            class_doses = np.full(n_action_classes(code), np.nan)
            class_doses[0] = 0.0
            for action in classes[classes > 0]:
                class_doses[action] = float(np.median(doses[y == action]))
            self.class_doses_[code] = class_doses
            if len(classes) < 2:
                self.classifiers_[code] = None
                continue
            classifier = HistGradientBoostingClassifier(
                max_iter=self.config.max_iter, learning_rate=self.config.learning_rate,
                max_leaf_nodes=self.config.max_leaf_nodes, min_samples_leaf=self.config.min_samples_leaf,
                l2_regularization=self.config.l2_regularization, early_stopping=False, random_state=self.config.seed,
            )
            with _openmp().limit(limits=self.config.threads, user_api="openmp"):
                self.classifiers_[code] = classifier.fit(x, y)
        self.n_rows_ = features.height
        self.n_stays_ = int(features["stay_id"].n_unique())
        return self

    def _check_fitted(self) -> None:
        if not self.classes_:
            raise RuntimeError("the behaviour policy is not fitted: call fit(cohort) first")

    def probabilities(self, features: pl.DataFrame) -> dict[str, np.ndarray]:
        """Treatment -> ``(n, n_classes)`` probabilities of every action class (all of
        :data:`ACTION_BINS`' classes; a class never seen in fitting has probability 0)."""
        self._check_fitted()
        x = features.select(self.features).to_numpy().astype(np.float64)
        out = {}
        for code in ACTION_BINS:
            probabilities = np.zeros((len(x), n_action_classes(code)))
            classifier = self.classifiers_[code]
            if classifier is None:
                probabilities[:, int(self.classes_[code][0])] = 1.0
            else:
                with _openmp().limit(limits=self.config.threads, user_api="openmp"):
                    probabilities[:, classifier.classes_.astype(np.int64)] = classifier.predict_proba(x)
            out[code] = probabilities
        return out

    def state_probabilities(self, state: ObservedState) -> dict[str, np.ndarray]:
        """:meth:`probabilities` in the state an :class:`~organsim.physiology.ObservedState` decides from.

        The last state asked about is remembered (by identity), so usual care and the overlap
        adjustment deciding the same simulated hour share one prediction.
        """
        if self._last_state is None or self._last_state[0] is not state:
            self._last_state = (state, self.probabilities(observed_state_features(state, catalog=self.catalog)))
        return self._last_state[1]

    def sample_actions(self, features: pl.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw each treatment of each row the way the fitted care team would have.

        Parameters
        ----------
        features
            ``(n, ...)`` rows holding the feature columns (:func:`state_features` or
            :func:`observed_state_features`).
        rng
            The generator the draws come from (one uniform per row and treatment, in
            :data:`ACTION_BINS` order): the same generator state gives the same doses.

        Returns
        -------
        dict
            Treatment code -> ``(n,)`` float64 dose in the treatment's unit: the representative dose
            (:attr:`class_doses_`) of an action class drawn from :meth:`probabilities`.
        """
        return self.draw_actions(self.probabilities(features), rng)

    def draw_actions(self, probabilities: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """:meth:`sample_actions` from probabilities already predicted (:meth:`probabilities`)."""
        out = {}
        for code in ACTION_BINS:
            cumulative = np.cumsum(probabilities[code], axis=1)
            uniforms = rng.random(len(cumulative))
            drawn = np.minimum((uniforms[:, None] >= cumulative).sum(axis=1), cumulative.shape[1] - 1)
            doses = self.class_doses_[code][drawn]
            out[code] = np.where(np.isnan(doses), 0.0, doses)  # a class never seen has probability 0
        return out

    def action_probabilities(
        self,
        hourly: pl.DataFrame,
        treatments: pl.DataFrame,
        stays: pl.DataFrame,
        *,
        treatment_codes: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """The probability of each recorded action given the state before it, for every stay-hour.

        Returns
        -------
        pl.DataFrame
            ``(stay_id, hour, treatment, value, action, probability, usual_action, usual_probability)``:
            ``usual_action`` is the most probable class in that state.
        """
        codes = list(treatment_codes or ACTION_BINS)
        features = state_features(hourly, treatments, stays, catalog=self.catalog)
        given = features.select("stay_id", "hour").join(treatments, on=["stay_id", "hour"], how="left")
        probabilities = self.probabilities(features)
        parts = []
        for code in codes:
            values = given[code].fill_null(self.catalog.treatment(code).default).to_numpy().astype(np.float64)
            actions = action_class(code, values)
            p = probabilities[code]
            parts.append(pl.DataFrame({
                "stay_id": features["stay_id"], "hour": features["hour"], "treatment": [code] * features.height,
                "value": values, "action": actions, "probability": p[np.arange(len(actions)), actions],
                "usual_action": p.argmax(axis=1), "usual_probability": p.max(axis=1),
            }))
        return pl.concat(parts)

    def usual_actions(self, features: pl.DataFrame, code: str) -> list[str]:
        """Per row: what patients in that state received (action classes with probability >= 10 %)."""
        unit = self.catalog.treatment(code).unit
        p = self.probabilities(features)[code]
        return ["; ".join(f"{action_label(code, j, unit)} {row[j]:.0%}" for j in np.argsort(-row) if row[j] >= 0.1) for row in p]

    def treatment_policy(self, seed: int = 0) -> BehaviourTreatments:
        """This policy as a treatment policy ``(state, hour) -> doses`` drawing from ``seed``."""
        return BehaviourTreatments(self, seed=seed)

    # ------------------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write the fitted policy to ``directory`` atomically (replacing one there); returns the path."""
        self._check_fitted()
        meta = {
            "config": asdict(self.config),
            "features": list(self.features),
            "action_bins": {code: list(edges) for code, edges in ACTION_BINS.items()},
            "classes": {code: [int(c) for c in classes] for code, classes in self.classes_.items()},
            "action_shares": {code: {str(c): share for c, share in shares.items()} for code, shares in self.action_shares_.items()},
            "class_doses": {code: [None if np.isnan(d) else float(d) for d in doses] for code, doses in self.class_doses_.items()},
            "classifiers": {code: None if classifier is None else f"{code}.skops" for code, classifier in self.classifiers_.items()},
            "n_rows": self.n_rows_,
            "n_stays": self.n_stays_,
        }
        with atomic_directory(directory) as tmp:
            for code, classifier in self.classifiers_.items():
                if classifier is not None:
                    skops_io.dump(classifier, tmp / f"{code}.skops")
            (tmp / SAVED_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path, *, catalog: Catalog | None = None) -> BehaviourPolicy:
        """Read a policy :meth:`save` wrote (:class:`~organsim.utils.DataError` naming the file and key when
        it is missing, written for other action classes or features, or holds untrusted types)."""
        directory = Path(directory)
        path = directory / SAVED_FILE
        if not path.is_file():
            raise DataError(f"no saved behaviour policy in {directory} (write one with BehaviourPolicy.save)", file=str(path))
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON: {exc.msg}", file=str(path), row=exc.lineno) from exc
        for key in ("config", "features", "action_bins", "classes", "action_shares", "class_doses", "classifiers", "n_rows", "n_stays"):
            if key not in meta:
                raise DataError(f"the saved behaviour policy lacks {key!r}", file=str(path), column=key)
        if meta["action_bins"] != {code: list(edges) for code, edges in ACTION_BINS.items()}:
            raise DataError(f"saved for action classes {meta['action_bins']}, this version uses {dict(ACTION_BINS)}: refit it",
                            file=str(path), column="action_bins")
        policy = cls(BehaviourPolicyConfig(**meta["config"]), catalog=catalog)
        if tuple(meta["features"]) != policy.features:
            raise DataError("saved for other state features than this catalog gives: refit it", file=str(path), column="features")
        for code in ACTION_BINS:
            policy.classes_[code] = np.asarray(meta["classes"][code], dtype=np.int64)
            policy.action_shares_[code] = {int(c): float(s) for c, s in meta["action_shares"][code].items()}
            policy.class_doses_[code] = np.array([np.nan if d is None else d for d in meta["class_doses"][code]], dtype=np.float64)
            name = meta["classifiers"][code]
            policy.classifiers_[code] = None if name is None else _load_classifier(directory / name)
        policy.n_rows_, policy.n_stays_ = int(meta["n_rows"]), int(meta["n_stays"])
        return policy


def _load_classifier(path: Path) -> HistGradientBoostingClassifier:
    if not path.is_file():
        raise DataError("a classifier file of the saved behaviour policy is missing", file=str(path))
    untrusted = skops_io.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if refused:
        raise DataError(f"the file holds types outside scikit-learn's gradient boosting, refused: {refused}", file=str(path))
    classifier = skops_io.load(path, trusted=untrusted)
    if not isinstance(classifier, HistGradientBoostingClassifier):
        raise DataError(f"expected a HistGradientBoostingClassifier, found {type(classifier).__name__}", file=str(path))
    return classifier


class BehaviourTreatments:
    """A fitted :class:`BehaviourPolicy` as a treatment policy: ``(state, hour) -> {code: (n,) dose}``.

    Each call draws every treatment of :data:`ACTION_BINS` from the policy in the state's
    features (:func:`observed_state_features`); other catalog treatments get their default. The
    draws come from one generator seeded with ``seed``, so the same calls in the same order give
    the same doses. It draws no random numbers from the state, so it runs on recorded and simulated
    states alike (the physiology engine's ``TreatmentPolicy`` protocol).
    """

    def __init__(self, behaviour: BehaviourPolicy, *, seed: int = 0) -> None:
        behaviour._check_fitted()
        self.behaviour = behaviour
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"BehaviourTreatments({self.behaviour!r}, seed={self.seed})"

    def __call__(self, state: ObservedState, hour: int) -> dict[str, np.ndarray]:
        catalog = self.behaviour.catalog
        drawn = self.behaviour.draw_actions(self.behaviour.state_probabilities(state), self.rng)
        return {code: drawn.get(code, np.full(state.n, float(catalog.treatment(code).default))) for code in catalog.treatment_codes}
