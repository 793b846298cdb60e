"""Matched comparison: real stays that received a similar treatment course, from a similar state.

The published protocol's check of a simulated what-if against the real world: for the patient at
the decision hour and a strategy, find stay-hours of a cohort where the treatment course over the
next ``course_hours`` hours resembled the strategy's simulated course (within a caliper, on the
standardised :data:`~organsim.counterfactual.features.COURSE_FEATURES`), keep each stay's hour
whose state is nearest the patient's (standardised :func:`state_features`, Euclidean), take the
``k`` nearest stays, and compare their observed SOFA and APACHE II (worst over 24 h) and deaths at
24/48/72 h after the matched hour with the simulated ones, with a bootstrap interval of the
difference (simulated minus matched).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from organsim.counterfactual.features import COURSE_FEATURES, course_matrix, treatment_courses
from organsim.counterfactual.futures import Futures
from organsim.counterfactual.outcomes import HORIZONS_HOURS, SCORES, OutcomeSummary
from organsim.data import Cohort
from organsim.scores import score_cohort
from organsim.twin.behaviour import feature_names, state_features


@dataclass(frozen=True)
class MatchedComparison:
    """Simulated outcomes of a strategy beside those of matched real stays.

    Attributes
    ----------
    strategy, stay_id, decision_hour
        The what-if it checks.
    course
        The strategy's simulated course (median over samples), by :data:`COURSE_FEATURES`.
    n_candidates
        Stay-hours whose recorded course lay within the caliper.
    matches
        ``(stay_id, hour, state_distance, course_distance)``, nearest first.
    comparison
        ``(outcome, horizon_hours, n_matched, matched_mean, n_simulated, simulated_mean,
        difference, ci_low, ci_high)``: outcome ``sofa``, ``apache_ii`` or ``died``.
    """

    strategy: str
    stay_id: int
    decision_hour: int
    course: dict[str, float]
    n_candidates: int
    matches: pl.DataFrame
    comparison: pl.DataFrame


def _standardise(candidates: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns to zero mean and unit SD over the candidates (constant or empty columns keep scale 1);
    unknown values (NaN) then sit at the mean, 0."""
    mean, sd = np.zeros(candidates.shape[1]), np.ones(candidates.shape[1])
    measured = np.isfinite(candidates).any(axis=0)
    if measured.any():
        mean[measured] = np.nanmean(candidates[:, measured], axis=0)
        sd[measured] = np.nanstd(candidates[:, measured], axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return np.nan_to_num((candidates - mean) / sd, nan=0.0), np.nan_to_num((target - mean) / sd, nan=0.0)


def _patient(futures: Futures, course_hours: int) -> tuple[np.ndarray, dict[str, float]]:
    hourly, treatments = futures.trajectories()
    stays = pl.DataFrame({"stay_id": np.arange(futures.n_samples, dtype=np.int64)}).join(
        futures.stay.select(pl.col("age").cast(pl.Float64), pl.col("weight").cast(pl.Float64)), how="cross")
    state = state_features(hourly, treatments, stays).filter((pl.col("stay_id") == 0) & (pl.col("hour") == futures.decision_hour))
    courses = treatment_courses(treatments, stays, window_hours=course_hours).filter(pl.col("hour") == futures.decision_hour)
    course = np.median(course_matrix(courses), axis=0)
    return state.select(feature_names()).to_numpy().astype(np.float64)[0], dict(zip(COURSE_FEATURES, course.tolist(), strict=True))


def matched_comparison(
    cohort: Cohort,
    futures: Futures,
    summary: OutcomeSummary,
    *,
    k: int = 20,
    course_hours: int = 24,
    course_caliper: float = 0.5,
    horizons: Sequence[int] = HORIZONS_HOURS,
    exclude_stay_ids: Sequence[int] | None = None,
    cohort_scores: pl.DataFrame | None = None,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MatchedComparison:
    """Match real stays to a what-if and compare outcomes (see the module docstring).

    Parameters
    ----------
    cohort
        Real stays with recorded treatments to match from.
    futures, summary
        The strategy's futures for the patient and their :func:`summarise_futures` summary.
    k
        Matched stays wanted (fewer when fewer stays lie within the caliper).
    course_hours
        Length of the treatment course compared.
    course_caliper
        Largest root-mean-square standardised difference between a candidate's course and the
        strategy's (in SDs of the candidates' courses).
    horizons
        Hours after the (matched) decision hour at which outcomes are compared.
    exclude_stay_ids
        Stays never matched (default: the patient's own stay).
    cohort_scores
        ``score_cohort(cohort).hourly``, when already computed.
    n_bootstrap, confidence, seed
        Percentile bootstrap of the difference in means (both groups resampled).
    """
    if k < 1 or course_caliper <= 0:
        raise ValueError(f"k must be >= 1 and course_caliper > 0, got k={k}, course_caliper={course_caliper}")
    excluded = [futures.stay_id] if exclude_stay_ids is None else [int(s) for s in exclude_stay_ids]
    target_state, course = _patient(futures, course_hours)
    stays = cohort.stays
    last_hours = cohort.hourly.group_by("stay_id").agg(pl.col("hour").max().alias("last_hour"))
    deaths = stays.select("stay_id", pl.col("death").fill_null(False) if "death" in stays.columns else pl.lit(False).alias("death"))
    candidates = (
        state_features(cohort.hourly, cohort.treatments, stays)
        .join(treatment_courses(cohort.treatments, stays, window_hours=course_hours), on=["stay_id", "hour"])
        .join(last_hours, on="stay_id").join(deaths, on="stay_id")
        .filter(~pl.col("stay_id").is_in(excluded) & (pl.col("complete") | pl.col("death")))
    )
    course_scaled, course_target = _standardise(course_matrix(candidates), np.array([course[c] for c in COURSE_FEATURES]))
    course_distance = np.sqrt(np.mean((course_scaled - course_target) ** 2, axis=1))
    state_scaled, state_target = _standardise(candidates.select(feature_names()).to_numpy().astype(np.float64), target_state)
    state_distance = np.sqrt(np.mean((state_scaled - state_target) ** 2, axis=1))
    within = candidates.select("stay_id", "hour", "last_hour", "death").with_columns(
        pl.Series("state_distance", state_distance), pl.Series("course_distance", course_distance),
    ).filter(pl.col("course_distance") <= course_caliper)
    matches = (within.sort("state_distance", "stay_id", "hour").group_by("stay_id", maintain_order=True).first()
               .sort("state_distance", "stay_id").head(k))
    scores = cohort_scores if cohort_scores is not None else score_cohort(cohort).hourly
    rng = np.random.default_rng(seed)
    rows = []
    simulated = summary.sample_outcomes
    for horizon in horizons:
        at = matches.with_columns((pl.col("hour") + horizon - 1).alias("outcome_hour"))
        died = (at["death"] & (at["last_hour"] <= at["outcome_hour"])).to_numpy()
        followed = (at["last_hour"] >= at["outcome_hour"]).to_numpy()  # alive, or not, at the outcome hour is known
        observed = at.join(scores.select("stay_id", pl.col("hour").alias("outcome_hour"), *SCORES.values()),
                           on=["stay_id", "outcome_hour"], how="left", maintain_order="left")
        outcome_values = {name: np.where(died, np.nan, observed[column].cast(pl.Float64).fill_null(np.nan).to_numpy())
                          for name, column in SCORES.items()}
        outcome_values["died"] = np.where(died | followed, died.astype(np.float64), np.nan)
        sim_died = (simulated["death_hour"].fill_null(np.inf).to_numpy() <= futures.decision_hour + horizon - 1).astype(np.float64)
        for name, matched_values in outcome_values.items():
            sim = sim_died if name == "died" else simulated[f"{name}_at_{horizon}h"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            if name == "died" and horizon > futures.horizon:
                sim = np.full(len(sim), np.nan)
            matched_values, sim = matched_values[np.isfinite(matched_values)], sim[np.isfinite(sim)]
            row: dict[str, object] = {"outcome": name, "horizon_hours": horizon, "n_matched": len(matched_values),
                                      "matched_mean": float(matched_values.mean()) if len(matched_values) else None,
                                      "n_simulated": len(sim), "simulated_mean": float(sim.mean()) if len(sim) else None,
                                      "difference": None, "ci_low": None, "ci_high": None}
            if len(matched_values) and len(sim):
                row["difference"] = float(sim.mean() - matched_values.mean())
                sim_low, sim_high = _difference_ci(sim, matched_values, n_bootstrap=n_bootstrap, confidence=confidence, rng=rng)
                row["ci_low"], row["ci_high"] = sim_low, sim_high
            rows.append(row)
    comparison = pl.DataFrame(rows, schema={"outcome": pl.Utf8, "horizon_hours": pl.Int32, "n_matched": pl.Int32,
                                            "matched_mean": pl.Float64, "n_simulated": pl.Int32, "simulated_mean": pl.Float64,
                                            "difference": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64})
    return MatchedComparison(
        strategy=futures.strategy, stay_id=futures.stay_id, decision_hour=futures.decision_hour, course=course,
        n_candidates=within.height, matches=matches.select("stay_id", "hour", "state_distance", "course_distance"),
        comparison=comparison,
    )


def _difference_ci(simulated: np.ndarray, matched: np.ndarray, *, n_bootstrap: int, confidence: float,
                   rng: np.random.Generator) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(simulated) - mean(matched), each group resampled on its own."""
    sim = simulated[rng.integers(0, len(simulated), size=(n_bootstrap, len(simulated)))].mean(axis=1)
    real = matched[rng.integers(0, len(matched), size=(n_bootstrap, len(matched)))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(sim - real, (tail, 1.0 - tail))
    return float(low), float(high)
