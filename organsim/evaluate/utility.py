"""Utility of a synthetic cohort: train early-warning classifiers on it, test them on real data (TSTR).

Tasks (:data:`TASKS`), labels per hourly row of a stay:

- ``sepsis_6h``: sepsis within the next 6 hours, the PhysioNet 2019 ``SepsisLabel``
  (:meth:`Cohort.sepsis_labels`: 1 from 6 h before Sepsis-3 onset on). Every hourly row.
- ``hypotension_4h``: any MAP < 65 mmHg in hours (t, t+4]. Rows with no MAP measured in that
  window (e.g. the stay's last hour) have no label and are left out.
- ``mortality_24h``: death within 24 hours: 1 when the stay ends in death (``stays.death``) and
  its last hourly row is less than 24 h after t (engine cohorts: death ends the stay). Only stays
  whose death is known; the task is skipped when a cohort has no such stays.

Features (:func:`hourly_features`, from the history up to and including hour t only), per
variable: the last value (carried forward), mean, min, max and least-squares slope (per hour) of
the values measured in the last ``window_hours`` hours, and hours since the last measurement;
plus the hour (hours since ICU admission) and the statics age, sex, hospital-to-ICU hours and ICU
type. Vectorised with polars.

Protocol (:func:`train_on_synthetic_test_on_real`): the larger of the two training cohorts (real-
train, synthetic) is first reduced to a seeded sample of as many stays as the smaller has, so the
comparison measures what the data are worth, not how much of it there is (a real-train twice the
size of the synthetic cohort would otherwise win on quantity alone). For each task and training
cohort the training stays are split 80/20 by stay (seeded); each classifier (logistic
regression after median imputation and standardisation; LightGBM gradient-boosted trees with early
stopping on the 20 %) is fitted on the 80 %, and is scored on real-test: AUROC, AUPRC and, for
sepsis, the PhysioNet 2019 normalised utility of the predictions thresholded at the threshold that
maximises the utility on the 20 %. ``auroc_drop`` = AUROC trained on real minus AUROC trained on
synthetic, with ``auroc_drop_interval_95``: the 2.5 and 97.5 percentiles of the drop over
:data:`BOOTSTRAP_RESAMPLES` resamples of the real-test stays with replacement (both classifiers'
scores of a resampled stay's rows kept together; seeded). It is the test split's sampling error
only (on PhysioNet's 900 test stays with 51 septic ones it spans about +-0.03 for sepsis): a
target of 0.02 is within it, and a drop that misses it by less may be noise.

The utility score is the challenge's (``evaluate_sepsis_score.py``, Reyna et al., Crit Care Med
2020), vectorised over stays in :func:`normalised_utility`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from organsim.data.cohort import Cohort
from organsim.evaluate.fidelity import subsample_stays
from organsim.utils.boosting import lightgbm_classifier

TASKS = ("sepsis_6h", "hypotension_4h", "mortality_24h")
CLASSIFIERS = ("logistic", "lightgbm")
HYPOTENSION_MAP_MMHG = 65.0
HYPOTENSION_HORIZON_H = 4
MORTALITY_HORIZON_H = 24
VALIDATION_FRACTION = 0.2
BOOSTING_ROUNDS = 400
EARLY_STOPPING_ROUNDS = 30
UNITS = ("MICU", "SICU")
BOOTSTRAP_RESAMPLES = 200
ProgressCallback = Callable[[str], None]


# ------------------------------------------------------------------------------------------ challenge utility
@dataclass(frozen=True)
class UtilityParameters:
    """The PhysioNet 2019 utility's parameters, as in the challenge's ``evaluate_sepsis_score.py``.

    Times are hours relative to Sepsis-3 onset ``t_sepsis`` (the first labelled row + 6).
    A positive prediction earns up to ``max_u_tp`` at ``dt_optimal``, rising linearly from 0 at
    ``dt_early`` (never less than ``u_fp``) and falling to 0 at ``dt_late``; a missed hour after
    ``dt_optimal`` costs down to ``min_u_fn`` at ``dt_late``; rows after ``dt_late`` count 0.
    """

    dt_early: float = -12
    dt_optimal: float = -6
    dt_late: float = 3
    max_u_tp: float = 1
    min_u_fn: float = -2
    u_fp: float = -0.05
    u_tn: float = 0


PHYSIONET_2019 = UtilityParameters()


def _row_utilities(positions: np.ndarray, t_sepsis: np.ndarray, predictions: np.ndarray,
                   p: UtilityParameters) -> np.ndarray:
    """Per-row utility (the challenge's ``compute_prediction_utility`` before its sum), float64."""
    septic = np.isfinite(t_sepsis)
    d = positions - np.where(septic, t_sepsis, 0.0)  # hours relative to onset (meaningless when not septic)
    m_1 = p.max_u_tp / (p.dt_optimal - p.dt_early)
    b_1 = -m_1 * p.dt_early
    m_2 = -p.max_u_tp / (p.dt_late - p.dt_optimal)
    b_2 = -m_2 * p.dt_late
    m_3 = p.min_u_fn / (p.dt_late - p.dt_optimal)
    b_3 = -m_3 * p.dt_optimal
    early = d <= p.dt_optimal
    true_positive = np.where(early, np.maximum(m_1 * d + b_1, p.u_fp), m_2 * d + b_2)
    false_negative = np.where(early, 0.0, m_3 * d + b_3)
    septic_utility = np.where(d <= p.dt_late, np.where(predictions, true_positive, false_negative), 0.0)
    return np.where(septic, septic_utility, np.where(predictions, p.u_fp, p.u_tn))


def normalised_utility(
    stay_ids: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    parameters: UtilityParameters = PHYSIONET_2019,
) -> dict[str, float | None]:
    """The PhysioNet 2019 normalised utility of binary hourly predictions.

    Parameters
    ----------
    stay_ids
        ``(N,)`` stay of each row; each stay's rows contiguous and in hour order (the challenge
        counts time in rows from the stay's first row).
    labels
        ``(N,)`` SepsisLabel (0/1).
    predictions
        ``(N,)`` predicted labels (0/1).
    parameters
        The utility's parameters (default: the challenge's).

    Returns
    -------
    dict
        ``observed``, ``best``, ``inaction`` (totals over stays) and ``normalised`` =
        (observed - inaction) / (best - inaction): 1 for perfect predictions, 0 for predicting no
        sepsis; None when no stay is septic (best = inaction).
    """
    stay_ids, labels, predictions = np.asarray(stay_ids), np.asarray(labels), np.asarray(predictions)
    if not (len(stay_ids) == len(labels) == len(predictions)):
        raise ValueError(f"stay_ids, labels and predictions differ in length: {len(stay_ids)}, {len(labels)}, "
                         f"{len(predictions)}")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if len(values) and not np.isin(values, (0, 1)).all():
            raise ValueError(f"{name} must be 0 or 1")
    if not len(stay_ids):
        raise ValueError("no rows to score")
    starts = np.r_[True, stay_ids[1:] != stay_ids[:-1]]
    group = np.cumsum(starts) - 1  # (N,) 0-based stay index
    if len(np.unique(stay_ids)) != group[-1] + 1:
        raise ValueError("each stay's rows must be contiguous")
    positions = np.arange(len(stay_ids)) - np.flatnonzero(starts)[group]
    labelled = labels.astype(bool)
    first_positive = np.full(group[-1] + 1, np.inf)
    np.minimum.at(first_positive, group[labelled], positions[labelled].astype(np.float64))
    t_sepsis = (first_positive - parameters.dt_optimal)[group]  # inf for stays never labelled
    best = np.isfinite(t_sepsis) & (positions >= t_sepsis + parameters.dt_early) & (positions <= t_sepsis + parameters.dt_late)
    totals = {
        "observed": float(_row_utilities(positions, t_sepsis, predictions.astype(bool), parameters).sum()),
        "best": float(_row_utilities(positions, t_sepsis, best, parameters).sum()),
        "inaction": float(_row_utilities(positions, t_sepsis, np.zeros(len(labels), dtype=bool), parameters).sum()),
    }
    span = totals["best"] - totals["inaction"]
    return {**totals, "normalised": (totals["observed"] - totals["inaction"]) / span if span else None}


def best_utility_threshold(stay_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray, *, candidates: int = 101) -> float:
    """The score threshold (predict 1 when score >= threshold) that maximises the normalised utility.

    Candidates are ``candidates`` evenly spaced quantiles of ``scores`` (0 to 1), so the search
    costs at most ``candidates`` utility evaluations; ties keep the highest threshold.
    """
    thresholds = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, candidates)))[::-1]
    best_threshold, best_value = float(thresholds[0]), -np.inf
    for threshold in thresholds:
        value = normalised_utility(stay_ids, labels, (scores >= threshold).astype(np.int8))["normalised"]
        if value is not None and value > best_value:
            best_threshold, best_value = float(threshold), value
    return best_threshold


# ------------------------------------------------------------------------------------------ labels
def task_labels(cohort: Cohort, task: str) -> pl.DataFrame:
    """``(stay_id, hour, label)`` (label Int8) for the rows where ``task`` has a label; see the module docstring."""
    keys = cohort.hourly.select("stay_id", "hour")
    if task == "sepsis_6h":
        return cohort.sepsis_labels().rename({"sepsis_label": "label"})
    elif task == "hypotension_4h":
        measured = cohort.hourly.select("stay_id", "hour", "map").filter(pl.col("map").is_not_null())
        windows = []
        for ahead in range(1, HYPOTENSION_HORIZON_H + 1):
            windows.append(measured.select("stay_id", (pl.col("hour") - ahead).alias("hour"),
                                           (pl.col("map") < HYPOTENSION_MAP_MMHG).alias("low")))
        future = pl.concat(windows).group_by("stay_id", "hour").agg(pl.col("low").any())
        return keys.join(future, on=["stay_id", "hour"], how="inner", maintain_order="left").select(
            "stay_id", "hour", pl.col("low").cast(pl.Int8).alias("label"))
    elif task == "mortality_24h":
        known = cohort.stays.filter(pl.col("death").is_not_null()).select("stay_id", "death")
        last = cohort.hourly.group_by("stay_id").agg(pl.col("hour").max().alias("last_hour"))
        rows = keys.join(known, on="stay_id", how="inner", maintain_order="left").join(last, on="stay_id")
        return rows.select("stay_id", "hour", (pl.col("death") & (pl.col("last_hour") - pl.col("hour") < MORTALITY_HORIZON_H))
                           .cast(pl.Int8).alias("label"))
    raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")


# ------------------------------------------------------------------------------------------ features
def hourly_features(cohort: Cohort, variables: Sequence[str], *, window_hours: int = 6) -> pl.DataFrame:
    """Per-hour early-warning features from the history up to and including each hour.

    Parameters
    ----------
    cohort
        Any cohort (rows in (stay_id, hour) order, as :class:`Cohort` keeps them).
    variables
        Catalog codes to summarise (the same list for every cohort compared).
    window_hours
        The recent window: hours (t - window_hours, t].

    Returns
    -------
    polars.DataFrame
        ``stay_id``, ``hour`` and Float32 features in a fixed order: per variable ``<v>_last``,
        ``<v>_mean``, ``<v>_min``, ``<v>_max``, ``<v>_slope`` (per hour; null with fewer than two
        values in the window), ``<v>_hours_since`` (null before the first value); then ``hour_of_stay``
        (the ICU hour), ``age``, ``sex``, ``hosp_adm_hours``, ``unit_micu``, ``unit_sicu``.
        One row per hourly row, in hourly order; null = not available.
    """
    if window_hours < 1:
        raise ValueError(f"window_hours must be at least 1, got {window_hours}")
    window = f"{window_hours}i"
    t = pl.col("hour").cast(pl.Float64)
    columns = []
    for v in variables:
        x = pl.col(v).cast(pl.Float64)
        seen = x.is_not_null().cast(pl.Float64)
        n = seen.rolling_sum_by("hour", window)
        sum_t = (t * seen).rolling_sum_by("hour", window)
        sum_x = x.fill_null(0.0).rolling_sum_by("hour", window)
        sum_tt = (t * t * seen).rolling_sum_by("hour", window)
        sum_tx = (t * x).fill_null(0.0).rolling_sum_by("hour", window)
        spread = n * sum_tt - sum_t * sum_t
        columns += [
            x.forward_fill().alias(f"{v}_last"),
            (sum_x / n).alias(f"{v}_mean"),
            x.rolling_min_by("hour", window).alias(f"{v}_min"),
            x.rolling_max_by("hour", window).alias(f"{v}_max"),
            pl.when((n >= 2) & (spread > 0)).then((n * sum_tx - sum_t * sum_x) / spread).alias(f"{v}_slope"),
            (t - pl.when(x.is_not_null()).then(t).forward_fill()).alias(f"{v}_hours_since"),
        ]
    history = cohort.hourly.select("stay_id", "hour", *[c.over("stay_id") for c in columns])
    history = history.with_columns(pl.all().exclude("stay_id", "hour").fill_nan(None))  # 0/0 means -> null
    statics = cohort.stays.select(
        "stay_id", pl.col("age").cast(pl.Float32), pl.col("sex").cast(pl.Float32), pl.col("hosp_adm_hours").cast(pl.Float32),
        *[pl.when(pl.col("unit").is_null()).then(None).otherwise(pl.col("unit") == u).cast(pl.Float32)
          .alias(f"unit_{u.lower()}") for u in UNITS],
    )
    return history.with_columns(pl.all().exclude("stay_id", "hour").cast(pl.Float32),
                                pl.col("hour").cast(pl.Float32).alias("hour_of_stay")).join(
        statics, on="stay_id", how="left", maintain_order="left")


@dataclass
class TaskData:
    """One cohort's rows for one task: ``features`` ``(N, F)`` float32 (NaN = not available),
    ``labels`` ``(N,)`` int8, ``stay_ids`` ``(N,)`` int64 (rows of a stay contiguous, in hour order)."""

    features: np.ndarray
    labels: np.ndarray
    stay_ids: np.ndarray

    @classmethod
    def build(cls, features: pl.DataFrame, labels: pl.DataFrame) -> TaskData:
        rows = features.join(labels, on=["stay_id", "hour"], how="inner", maintain_order="left")
        return cls(rows.drop("stay_id", "hour", "label").to_numpy().astype(np.float32),
                   rows["label"].to_numpy().astype(np.int8), rows["stay_id"].to_numpy())

    def rows_of(self, stays: np.ndarray) -> TaskData:
        keep = np.isin(self.stay_ids, stays)
        return TaskData(self.features[keep], self.labels[keep], self.stay_ids[keep])

    def positive_stays(self) -> np.ndarray:
        """Stay ids with at least one positive row, sorted."""
        return np.unique(self.stay_ids[self.labels == 1])

    def split(self, fraction: float, seed: int) -> tuple[TaskData, TaskData]:
        """(fit, validation) by stay, stratified on whether a stay has a positive row.

        Within each stratum the stays are shuffled with ``seed`` and ``fraction`` of them (at least
        one, at most all but one) go to validation, so both parts see both strata whenever each
        stratum has two stays.
        """
        stays = np.unique(self.stay_ids)
        positive = self.positive_stays()
        rng = np.random.default_rng(seed)
        held = []
        for stratum in (np.setdiff1d(stays, positive), positive):
            n = min(max(1, int(round(fraction * len(stratum)))), len(stratum) - 1)
            if n > 0:
                held.append(rng.choice(stratum, size=n, replace=False))
        held_stays = np.concatenate(held) if held else np.array([], dtype=stays.dtype)
        return self.rows_of(np.setdiff1d(stays, held_stays)), self.rows_of(held_stays)

    def summary(self) -> dict[str, Any]:
        return {"rows": int(len(self.labels)), "stays": int(len(np.unique(self.stay_ids))),
                "positive_rate": float(self.labels.mean()) if len(self.labels) else None}


# ------------------------------------------------------------------------------------------ protocol
def fit_classifier(name: str, fit: TaskData, validation: TaskData, seed: int, threads: int = 1) -> Any:
    """Fit classifier ``name`` (one of :data:`CLASSIFIERS`) on ``fit``; LightGBM (``threads`` threads)
    stops early on ``validation``."""
    if name == "logistic":
        model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                              LogisticRegression(C=1.0, max_iter=1000))
        return model.fit(fit.features, fit.labels)
    elif name == "lightgbm":
        model = lightgbm_classifier(seed, n_estimators=BOOSTING_ROUNDS, threads=threads)
        return model.fit(fit.features, fit.labels, eval_X=(validation.features,), eval_y=(validation.labels,),
                         callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)])
    raise ValueError(f"unknown classifier {name!r}; choose one of {CLASSIFIERS}")


COHORT_NAMES = {"real": "real-train", "synthetic": "synthetic", "test": "real-test"}


def _why_not_trainable(data: dict[str, TaskData]) -> str | None:
    """Why a task cannot be run on these cohorts (None when it can).

    Training cohorts need two stays with a positive row and two without (one of each for
    validation); the test cohort needs both label values.
    """
    problems = []
    for name, d in data.items():
        if not len(d.labels):
            problems.append(f"{COHORT_NAMES[name]} has no labelled rows")
            continue
        if name == "test":
            if len(np.unique(d.labels)) < 2:
                problems.append(f"real-test has only label {int(d.labels[0])}")
            continue
        positive = len(d.positive_stays())
        negative = len(np.unique(d.stay_ids)) - positive
        if positive < 2 or negative < 2:
            problems.append(f"{COHORT_NAMES[name]} has {positive} stays with a positive row and {negative} without "
                            "(two of each needed)")
    return "; ".join(problems) or None


def auroc_drop_interval(test: TaskData, real_scores: np.ndarray, synthetic_scores: np.ndarray, *,
                        resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[float] | None:
    """95 % stay-bootstrap interval of AUROC(``real_scores``) - AUROC(``synthetic_scores``) on ``test``.

    Each resample draws ``test``'s stays with replacement and scores all rows of the drawn stays
    with both classifiers (paired); resamples with one label value only are skipped. None when no
    resample has both.
    """
    stays, first_row, rows_per_stay = np.unique(test.stay_ids, return_index=True, return_counts=True)
    order = np.argsort(test.stay_ids, kind="stable")  # rows grouped by stay, in stay order
    starts = np.concatenate([[0], np.cumsum(rows_per_stay)[:-1]])
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(resamples):
        drawn = rng.integers(0, len(stays), len(stays))
        rows = order[np.concatenate([np.arange(starts[i], starts[i] + rows_per_stay[i]) for i in drawn])]
        labels = test.labels[rows]
        if labels.min() == labels.max():
            continue
        drops.append(roc_auc_score(labels, real_scores[rows]) - roc_auc_score(labels, synthetic_scores[rows]))
    if not drops:
        return None
    low, high = np.quantile(drops, [0.025, 0.975])
    return [float(low), float(high)]


def score_predictions(task: str, test: TaskData, scores: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """AUROC and AUPRC on ``test``; for ``sepsis_6h`` also the normalised utility at ``threshold``."""
    out: dict[str, Any] = {"auroc": float(roc_auc_score(test.labels, scores)),
                           "auprc": float(average_precision_score(test.labels, scores))}
    if task == "sepsis_6h":
        predicted = (scores >= threshold).astype(np.int8)
        out.update(threshold=threshold, utility=normalised_utility(test.stay_ids, test.labels, predicted)["normalised"],
                   predicted_positive_rate=float(predicted.mean()))
    return out


def train_on_synthetic_test_on_real(
    real_train: Cohort,
    synthetic: Cohort,
    real_test: Cohort,
    variables: Sequence[str],
    *,
    tasks: Sequence[str] = TASKS,
    classifiers: Sequence[str] = CLASSIFIERS,
    window_hours: int = 6,
    seed: int = 0,
    threads: int = 1,
    match_training_stays: bool = True,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """The TSTR protocol of the module docstring (``progress`` is called before each fit).

    ``match_training_stays=False`` trains on both cohorts whole (absolute utility, confounded by
    their sizes).

    Returns
    -------
    dict
        ``{task: {"status": "ok", "rows": {cohort: {rows, stays, positive_rate}},
        "classifiers": {classifier: {"real": scores, "synthetic": scores, "auroc_drop": float,
        "auroc_drop_interval_95": [low, high] or None}}}}``;
        a task that cannot be run has ``"status": "skipped"`` and a ``reason``. ``rows`` counts
        the training rows after matching.
    """
    if match_training_stays:
        n = min(real_train.stays.height, synthetic.stays.height)
        real_train, synthetic = (subsample_stays(c, n, seed) for c in (real_train, synthetic))
    cohorts = {"real": real_train, "synthetic": synthetic, "test": real_test}
    features = {name: hourly_features(c, variables, window_hours=window_hours) for name, c in cohorts.items()}
    results: dict[str, Any] = {}
    for task in tasks:
        data = {name: TaskData.build(features[name], task_labels(c, task)) for name, c in cohorts.items()}
        entry: dict[str, Any] = {"rows": {name: d.summary() for name, d in data.items()}}
        reason = _why_not_trainable(data)
        if reason:
            results[task] = {"status": "skipped", **entry, "reason": reason}
            continue
        entry["classifiers"] = {}
        for name in classifiers:
            per_source: dict[str, Any] = {}
            test_scores = {}
            for source in ("real", "synthetic"):
                if progress:
                    progress(f"utility: {task}, {name} trained on {source}")
                fit, validation = data[source].split(VALIDATION_FRACTION, seed)
                model = fit_classifier(name, fit, validation, seed, threads)
                threshold = None
                if task == "sepsis_6h":
                    threshold = best_utility_threshold(validation.stay_ids, validation.labels,
                                                       model.predict_proba(validation.features)[:, 1])
                test_scores[source] = model.predict_proba(data["test"].features)[:, 1]
                per_source[source] = score_predictions(task, data["test"], test_scores[source], threshold)
            per_source["auroc_drop"] = per_source["real"]["auroc"] - per_source["synthetic"]["auroc"]
            per_source["auroc_drop_interval_95"] = auroc_drop_interval(data["test"], test_scores["real"],
                                                                       test_scores["synthetic"], seed=seed)
            entry["classifiers"][name] = per_source
        results[task] = {"status": "ok", **entry}
    return results
