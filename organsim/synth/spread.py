"""Draw spread of synthetic stays: the vital signs vary within a stay as much as real ones do.

The twin draws each simulated value by inverting the agent's binned predictive distribution at
``u = Phi(z)``, ``z`` a per-variable AR(1) score (:class:`organsim.twin.twin.PersistentDraws`).
Free-running, one hour fed back after another, its one-step distributions are too wide: on
PhysioNet 2019 (4,200 train stays, the recorded tiny twin) the synthetic stays' median per-stay SD
of heart rate was 8.75 against 7.33 in the real ones, of SpO2 2.1 against 1.73, and the detection
classifier read the spread of every vital.

Three knobs per variable, all passed to :meth:`organsim.twin.PatientTwin.rollout`:

- the spread ``s`` (``draw_spread``): draws invert at ``Phi(s z)``, a sampling temperature on the
  quantile scale (``s < 1`` moves each hour's draw toward its predictive median; the serial and
  within-hour correlations of the scores are kept);
- the serial correlation ``rho`` of the fed-back variables' scores (``draw_serial``): a more
  negative ``rho`` makes an hour drawn high be followed by one drawn lower, which damps the drift a
  stay accumulates (its SD) more than its hour-to-hour changes;
- the shift ``m`` (``draw_shift``): draws invert at ``Phi(s z + m)``, a location knob on the same
  scale, fitted to where a stay's level goes: the median over stays of the stay's mean minus its
  first charted value (``drift``); not fitted (``fit_shift=False``) where the generator's drift
  control steers the stays along the real course instead (:mod:`organsim.synth.drift`, the
  default). Free-running, the twin let heart rate sink: on PhysioNet 2019
  (1,000 stays, tiny twin) its drift was -2.3 beats/min against -0.6 in the real stays; ``m =
  0.04`` took it to -0.7 (``m = 0.1`` overshot to +1.7: a small shift of every hour's draw adds up
  over a stay that feeds its own draws back). The first hours, drawn by
  :mod:`organsim.synth.initial`, are not shifted.

A fourth, for the variables the twin does not feed back (no ``rho`` damps their wander): the
reversion ``kappa`` (``draw_reversion`` of :class:`~organsim.synth.generate.SynthesisConfig`, applied
by the generator, which knows each stay's charted values): each hour's draw is shifted by
``-kappa (x - mean) / sigma`` toward the stay's mean so far, ``kappa`` the gap between the
synthetic and real :func:`reversion_slopes` measured by a first pilot (:func:`reversion_kappa`).

They are fitted to two statistics of the charted values of the train split, each the median over
stays: the per-stay standard deviation (the drift and level of a stay) and the per-stay mean
absolute change between consecutive charted hours (its hour-to-hour noise), the features the
detection classifier reads (:func:`organsim.data.summaries.stay_summaries`). ``s`` alone moves
both together: on PhysioNet (300 pilot stays of up to 48 h, tiny twin) ``s = 0.9`` took heart
rate's SD ratio (synthetic / real) from 1.20 to 0.99 but its change ratio from 1.04 to 0.85, and
``rho = -0.3`` instead of the fitted -0.10 took them to 1.08 and 1.06. Variables that are not fed
back (temperature: the generator draws it afresh every call) have ``s`` only, fitted to both
statistics in the least-squares sense.

The fit (:func:`fit_draw_spread`) runs short pilot generations of the same drawn stays with the same
random numbers (common random numbers: the statistics move with the knobs, not with the noise):
one at the twin's own knobs, one with every ``s`` lowered by :data:`SPREAD_STEP` and one with every
``rho`` lowered by :data:`SERIAL_STEP` give each variable's Jacobian of the two log ratios
``log(synthetic / real)`` against ``(log s, rho)``, and one with every ``m`` at :data:`SHIFT_STEP`
the slope of the drift's miss (in real per-stay SDs) against ``m``; then Newton steps (least
squares, within :data:`SPREAD_BOUNDS` and :data:`SERIAL_BOUNDS`) solve for the ``s`` and ``rho``
that make both ratios 1, each step at most :data:`MAX_SPREAD_CHANGE` and :data:`MAX_SERIAL_CHANGE`
long, and a chord step on that slope for the ``m`` that makes the drift's miss 0 (within
:data:`SHIFT_BOUNDS`; for variables charted in at least :data:`SHIFT_STAYS` pilot stays),
measured by one more pilot and followed by a Broyden update of the Jacobian. Each variable then
keeps the knobs of the pilot nearest its targets (the smallest sum of squared misses,
:func:`misses`), so a step the linear model misjudged cannot leave a variable worse than the twin's
own draws. One step (five pilots) is the default: a pilot of 256 stays measures a median to a few
per cent, and on PhysioNet the first
step took every vital's two ratios (synthetic / real) from 0.96-1.21 to 0.98-1.05 (EtCO2's change,
charted in few stays, 1.08), while a second step with the first Jacobian overshot (heart rate's SD
ratio 1.04 -> 0.92). Pilot stays are cut at ``pilot_hours`` and the real stays at the same number
of hours from their first, since a stay's SD grows with its length.

On the PhysioNet 2019 benchmark (``bench/synthesize.py``, 4,200 synthetic stays of up to 120 h,
seed 0, four pilots of 256 stays, 76 s on one core against 488 s for the cohort) the fitted spreads
were HR 0.95, SBP 0.97, DBP 0.95, respiratory rate 0.93, SpO2 0.88, EtCO2 0.97, temperature 0.94,
the serial correlations HR -0.31, SBP -0.31, DBP -0.22, respiratory rate -0.17, SpO2 -0.25 (the
twin's own -0.06 to -0.10). The median per-stay SD (real / before / after) went HR 7.33 / 8.83 /
7.46, SBP 13.6 / 15.4 / 13.6, MAP 9.34 / 10.4 / 9.34, respiratory rate 2.93 / 3.48 / 3.00, SpO2
1.73 / 2.12 / 1.75, temperature 0.381 / 0.452 / 0.407, and each vital's SD alone told the cohorts
apart with AUROC 0.50-0.53 instead of 0.58-0.64; the detection AUROC moved only from 0.949 to 0.940,
its classifier reading other features (MAP's hourly change, 7.88 against 7.38, comes from SBP, DBP
and :class:`~organsim.synth.consistency.PressureConsistency`'s residual).

With the shift and the labs (five pilots, 88 s; the recorded benchmark) the fitted shifts were HR
0.035, SBP 0.041, DBP -0.001, respiratory rate -0.077, SpO2 0.10, temperature -0.029, glucose
0.058 (EtCO2, in too few pilot stays, none), the labs' serial correlations between charted values
-0.07 (haematocrit) to -0.30 (WBC), 0 for BUN and calcium. Heart rate's drift over the cohort's
stays of up to 120 h came to -0.71 beats/min (real -0.63; -1.40 in a run that fitted m = 0.015, -2.3 before the
shift), SpO2's -0.56 (real -0.70); SBP's and glucose's overshot (-0.29 mmHg against -2.50, -3.0
mg/dL against -6.6: the pilots see 48 hours). The detection AUROC went from 0.936 to 0.924.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from organsim.catalog import Catalog
from organsim.data.summaries import mean_abs_change

SPREAD_STEP = np.log(0.9)
"""The step of ``log s`` in the Jacobian's pilot."""

SERIAL_STEP = -0.2
"""The step of ``rho`` in the Jacobian's pilot."""

MAX_SPREAD_CHANGE = float(np.log(1.25))
"""Largest change of ``log s`` in one Newton step (the Jacobian is measured within :data:`SPREAD_STEP`)."""

MAX_SERIAL_CHANGE = 0.3
"""Largest change of ``rho`` in one Newton step."""

SPREAD_BOUNDS = (0.5, 1.5)
"""Smallest and largest fitted spread ``s``."""

SERIAL_BOUNDS = (-0.9, 0.9)
"""Smallest and largest fitted serial correlation ``rho``."""

MIN_STAYS = 20
"""Stays with both statistics a variable needs, in the real and in every pilot cohort, to be fitted."""

FREQUENT_SHARE = 0.2
"""A variable that is not a vital sign has its draws fitted too when charted in at least this share
of the training hours: enough charted hours per stay for its SD and hourly change (on PhysioNet
glucose, 22 % of hours, per-stay SD 25.2 mg/dL synthetic against 20.1 real without a fit; the next
lab, potassium, 7.7 %)."""

STATISTICS = ("sd", "mean_abs_change")
"""The per-stay statistics matched by ``s`` and ``rho``, in the rows of a Jacobian."""

SHIFT_STEP = 0.1
"""The shift ``m`` of the shift's pilot (standard deviations of the scores)."""

SHIFT_BOUNDS = (-0.5, 0.5)
"""Smallest and largest fitted shift ``m``."""

SHIFT_STAYS = 100
"""Pilot stays charting a variable that its shift needs: a median drift of fewer stays is too noisy
to step on (on PhysioNet EtCO2, charted in about 40 of 256 pilot stays, took a shift of 0.29 that
moved its drift in the cohort to +2.7 mmHg, real +0.5)."""

MATCHED = (*STATISTICS, "drift", "step_ratio")
"""Every statistic the fit matches, the columns of :func:`misses`."""

REVERSION_HISTORY = 5
"""Charted values a stay needs before one for its change to count in :func:`reversion_slopes`."""
MAX_REVERSION = 0.5
"""Largest fitted reversion ``kappa`` (:func:`reversion_kappa`)."""

CHARTED_SHARE = 0.03
"""A lab (not fed back, charted in less than :data:`FREQUENT_SHARE` of the training hours) has its
draws' serial correlation between charted values fitted when charted in at least this share of the
hours: enough values per stay for a per-stay SD (on PhysioNet potassium 7.7 %, phosphate 3.4 %)."""


def _first_hours(hourly: pl.DataFrame, variables: Sequence[str], first_hours: int | None) -> pl.DataFrame:
    """``stay_id``, ``hour`` and ``variables`` of ``hourly``, sorted, cut at each stay's first
    ``first_hours`` hours (from its first row; None keeps all): the rows every statistic here reads."""
    frame = hourly.select("stay_id", "hour", *variables).sort("stay_id", "hour")
    if first_hours is None:
        return frame
    return frame.filter(pl.col("hour") < pl.col("hour").min().over("stay_id") + first_hours)


def stay_variability(hourly: pl.DataFrame, variables: Sequence[str], *, first_hours: int | None = None) -> dict[str, dict[str, float]]:
    """Median over stays of each variable's per-stay SD and mean absolute hourly change.

    Parameters
    ----------
    hourly
        Rows ``stay_id``, ``hour`` and a column per variable (null: not charted).
    variables
        The variables to summarise.
    first_hours
        Keep only each stay's first ``first_hours`` hours (from its first row); None keeps all.

    Returns
    -------
    dict
        ``{variable: {"sd": median per-stay SD (ddof 1, variable units), "mean_abs_change": median
        per-stay mean |x_h - x_{h-1}| over consecutive hours both charted (units per hour),
        "drift": median over stays of the stay's mean minus its first charted value (variable units;
        where a stay's level goes over its hours), "stays": stays with both}}``; a variable no stay
        has both of is left out.
    """
    frame = _first_hours(hourly, variables, first_hours)
    aggregations = []
    for v in variables:
        x = pl.col(v).cast(pl.Float64)
        aggregations += [x.std().alias(f"{v}|sd"), mean_abs_change(v).alias(f"{v}|mean_abs_change"),
                         (x.mean() - x.drop_nulls().first()).alias(f"{v}|drift")]
    per_stay = frame.group_by("stay_id").agg(aggregations)
    result: dict[str, dict[str, float]] = {}
    for v in variables:
        both = per_stay.select(f"{v}|sd", f"{v}|mean_abs_change", f"{v}|drift").drop_nulls().drop_nans()
        if both.height:
            result[v] = {"sd": float(both[f"{v}|sd"].median()), "mean_abs_change": float(both[f"{v}|mean_abs_change"].median()),
                         "drift": float(both[f"{v}|drift"].median()), "stays": both.height}
    return result


def volatility_correlation(hourly: pl.DataFrame, variables: Sequence[str]) -> np.ndarray:
    """``(V, V)`` correlation over stays of the variables' log mean absolute hourly change (a stay's
    volatility), each pair over the stays that have both; a variable no stay has is uncorrelated
    with the others. Made positive semi-definite (eigenvalues clipped at 0, the diagonal put back to
    1), so it can correlate the generator's per-stay volatility factors
    (:attr:`~organsim.synth.generate.SynthesisConfig.volatility`).

    On PhysioNet 2019 (4,200 train stays) the vitals' volatilities are only loosely tied: heart rate
    with respiratory rate 0.09, with SpO2 0.05; the pressures among themselves 0.59-0.82.
    """
    per_stay = _first_hours(hourly, variables, None).group_by("stay_id").agg([mean_abs_change(v).alias(v) for v in variables])
    logs = per_stay.select([pl.col(v).log() for v in variables]).fill_nan(None).to_pandas()
    correlation = logs.replace([np.inf, -np.inf], np.nan).corr(min_periods=MIN_STAYS).to_numpy()
    correlation = np.where(np.isfinite(correlation), correlation, np.eye(len(variables)))
    values, vectors = np.linalg.eigh(correlation)
    clipped = (vectors * np.clip(values, 0, None)) @ vectors.T
    scale = np.sqrt(np.clip(np.diag(clipped), 1e-12, None))
    return clipped / np.outer(scale, scale)


def spread_variables(
    catalog: Catalog, model_variables: Sequence[str], real: dict[str, dict[str, float]],
    charting_share: dict[str, float] | None = None,
) -> tuple[str, ...]:
    """The variables whose draws are fitted: those the twin models that are vital signs in the catalog
    or charted in at least :data:`FREQUENT_SHARE` of the training hours (``charting_share``:
    variable -> share; None: vital signs only), with both statistics in at least
    :data:`MIN_STAYS` real stays and a real SD and change above 0."""
    shares = charting_share or {}
    return tuple(
        v for v in model_variables
        if (catalog.variable(v).kind == "vital" or shares.get(v, 0.0) >= FREQUENT_SHARE)
        and v in real and real[v]["stays"] >= MIN_STAYS and real[v]["sd"] > 0 and real[v]["mean_abs_change"] > 0
    )


def charted_steps(hourly: pl.DataFrame, variables: Sequence[str], *, first_hours: int | None = None) -> dict[str, dict[str, float]]:
    """How far a lab's charted values wander, the statistic of a lab (:data:`CHARTED_SHARE`) charted too
    rarely for an hour-to-hour change: the mean absolute change over two charted values divided by
    that over one (``step_ratio``), pooled over stays. A random walk's two steps go about twice as
    far in variance (a ratio near 1.4 for normal steps), values that revert to a stay's own level
    less far (on PhysioNet: potassium 1.22 real, 1.36 with fresh draws; magnesium 1.14 and 1.47).

    Returns ``{variable: {"step_ratio": ..., "stays": stays with three values or more}}`` (cut at
    ``first_hours`` as :func:`stay_variability`); a variable no stay charted three times is left out.
    """
    frame = _first_hours(hourly, variables, first_hours)
    result: dict[str, dict[str, float]] = {}
    for v in variables:
        charted = frame.select("stay_id", pl.col(v).cast(pl.Float64)).drop_nulls(v)
        steps = charted.select(
            "stay_id",
            (pl.col(v) - pl.col(v).shift(1)).over("stay_id").abs().alias("one"),
            (pl.col(v) - pl.col(v).shift(2)).over("stay_id").abs().alias("two"),
        )
        two = steps.drop_nulls("two")
        one = steps["one"].mean()
        if two.height and one:
            result[v] = {"step_ratio": float(two["two"].mean()) / float(one), "stays": two["stay_id"].n_unique()}
    return result


def reversion_slopes(hourly: pl.DataFrame, variables: Sequence[str], *, first_hours: int | None = None) -> dict[str, dict[str, float]]:
    """How fast a variable returns to its stay's own level: the least-squares slope of the change
    between consecutive charted values on the deviation of the earlier one from the mean of the
    stay's charted values so far (itself included), over values with at least
    :data:`REVERSION_HISTORY` charted before them; -1 would return at once, 0 never. On PhysioNet
    2019 (train split) glucose -0.27, SpO2 -0.62, temperature -0.18; the free-running twin's
    -0.13, -0.48 and -0.08.

    Returns ``{variable: {"slope": ..., "stays": stays contributing}}`` (cut at ``first_hours``
    hours from each stay's first row, as :func:`stay_variability`); a variable without two such
    values is left out.
    """
    frame = _first_hours(hourly, variables, first_hours)
    result: dict[str, dict[str, float]] = {}
    for v in variables:
        x = pl.col(v).cast(pl.Float64)
        count = pl.col(v).cum_count().over("stay_id")
        steps = frame.select("stay_id", v).drop_nulls(v).with_columns(
            change=x - x.shift(1).over("stay_id"),
            deviation=x.shift(1).over("stay_id") - (x.cum_sum().over("stay_id") - x) / (count - 1),
            count=count,
        ).filter(pl.col("count") > REVERSION_HISTORY).drop_nans()
        if steps.height < 2 or float(steps["deviation"].var()) <= 0:
            continue
        deviation, change = steps["deviation"].to_numpy(), steps["change"].to_numpy()
        centred = deviation - deviation.mean()
        result[v] = {"slope": float(centred @ (change - change.mean()) / (centred @ centred)), "stays": steps["stay_id"].n_unique()}
    return result


def reversion_kappa(synthetic: dict[str, dict[str, float]], real: dict[str, dict[str, float]], variables: Sequence[str]) -> dict[str, float]:
    """The reversion ``kappa`` of each variable whose synthetic stays return to their level more slowly
    than real ones (:func:`reversion_slopes`, both with at least :data:`SHIFT_STAYS` stays): the
    slopes' gap, at most :data:`MAX_REVERSION`. The generator shifts each hour's draw by
    ``-kappa (x - mean) / sigma`` standard deviations of its score (``draw_reversion`` of
    :class:`~organsim.synth.generate.SynthesisConfig`), which moves the next change's mean by about
    ``-kappa (x - mean)`` (``sigma``, the changes' root mean square, stands for the width of the
    one-step distribution): the slope by about ``-kappa``."""
    kappa = {}
    for v in variables:
        if v in synthetic and v in real and min(synthetic[v]["stays"], real[v]["stays"]) >= SHIFT_STAYS:
            gap = synthetic[v]["slope"] - real[v]["slope"]
            if gap > 0:
                kappa[v] = float(min(gap, MAX_REVERSION))
    return kappa


def charted_variables(
    catalog: Catalog, model_variables: Sequence[str], real: dict[str, dict[str, float]], charting_share: dict[str, float],
    fed_back: np.ndarray,
) -> tuple[str, ...]:
    """The labs whose serial correlation between charted values is fitted: modelled, not fed back, not
    vital signs, charted in at least :data:`CHARTED_SHARE` and less than :data:`FREQUENT_SHARE` of
    the training hours (``charting_share``), charted three times or more in at least
    :data:`MIN_STAYS` real stays (``real``: :func:`charted_steps`)."""
    return tuple(
        v for v, fed in zip(model_variables, np.asarray(fed_back, dtype=bool), strict=True)
        if not fed and catalog.variable(v).kind != "vital" and CHARTED_SHARE <= charting_share.get(v, 0.0) < FREQUENT_SHARE
        and v in real and real[v]["stays"] >= MIN_STAYS
    )


def log_ratios(synthetic: dict[str, dict[str, float]], real: dict[str, dict[str, float]], variables: Sequence[str],
               statistics: Sequence[str] = STATISTICS) -> np.ndarray:
    """``(V, len(statistics))`` ``log(synthetic / real)`` of each variable's ``statistics``; NaN where the
    synthetic cohort has fewer than :data:`MIN_STAYS` stays with them, a statistic is zero, or the
    variable's targets lack it (a lab's, :func:`charted_steps`, have the step ratio alone)."""
    ratios = np.full((len(variables), len(statistics)), np.nan)
    for i, v in enumerate(variables):
        found = synthetic.get(v)
        if found is None or found["stays"] < MIN_STAYS:
            continue
        for j, statistic in enumerate(statistics):
            if statistic in real[v] and found.get(statistic, 0) > 0:
                ratios[i, j] = np.log(found[statistic] / real[v][statistic])
    return ratios


def misses(synthetic: dict[str, dict[str, float]], real: dict[str, dict[str, float]], variables: Sequence[str]) -> np.ndarray:
    """``(V, 4)`` how far each variable is from its targets, per :data:`MATCHED` statistic: the
    :func:`log_ratios` of SD, mean absolute change and step ratio, and the drift's difference in
    units of the real median per-stay SD (NaN as the log ratios, and where the targets have no drift)."""
    ratios = [m for m in MATCHED if m != "drift"]
    found = np.full((len(variables), len(MATCHED)), np.nan)
    found[:, [MATCHED.index(m) for m in ratios]] = log_ratios(synthetic, real, variables, ratios)
    for i, v in enumerate(variables):
        got = synthetic.get(v)
        if got is not None and got["stays"] >= MIN_STAYS and "drift" in real[v]:
            found[i, MATCHED.index("drift")] = (got["drift"] - real[v]["drift"]) / real[v]["sd"]
    return found


def shift_step(drift_at_zero: np.ndarray, drift_at_step: np.ndarray, current: np.ndarray, drift_now: np.ndarray) -> np.ndarray:
    """The shifts ``m`` that bring the drift to its target: the drift misses (``(F,)``, units of the
    real SD; :func:`misses`) at ``m = 0``, at :data:`SHIFT_STEP` and at the ``current`` shifts give a
    slope and a chord step from the current pilot, within :data:`SHIFT_BOUNDS`; unchanged where a miss is not finite or the slope is not positive."""
    slope = (drift_at_step - drift_at_zero) / SHIFT_STEP
    moved = current - drift_now / np.where(slope > 0, slope, np.nan)
    usable = np.isfinite(moved) & (slope > 0)
    return np.where(usable, np.clip(moved, *SHIFT_BOUNDS), current)


def newton_step(ratios: np.ndarray, jacobian: np.ndarray, knobs: np.ndarray) -> np.ndarray:
    """The knobs' change that brings the two log ratios of one variable to 0, by least squares.

    Parameters
    ----------
    ratios
        ``(2,)`` ``log(synthetic / real)`` of SD and mean absolute change at the current knobs.
    jacobian
        ``(2, K)`` their derivatives by the ``K`` knobs (``log s``, then ``rho`` for a fed-back variable).
    knobs
        ``(K,)`` the current knobs, ``log s`` then ``rho``.

    Returns
    -------
    np.ndarray
        ``(K,)`` the new knobs: the least-squares change, shortened (same direction) to move ``log s``
        by at most :data:`MAX_SPREAD_CHANGE` and ``rho`` by at most :data:`MAX_SERIAL_CHANGE`, then
        clipped to :data:`SPREAD_BOUNDS` and :data:`SERIAL_BOUNDS`; unchanged where the ratios or
        the Jacobian are not finite.
    """
    if not (np.isfinite(ratios).all() and np.isfinite(jacobian).all()):
        return knobs.copy()
    change = np.linalg.lstsq(jacobian, -ratios, rcond=1e-6)[0]
    limits = np.array([MAX_SPREAD_CHANGE, MAX_SERIAL_CHANGE])[: len(change)]
    change *= min(1.0, float(np.min(limits / np.maximum(np.abs(change), 1e-12))))  # the same direction, a step within limits
    moved = knobs + change
    moved[0] = np.clip(moved[0], *np.log(SPREAD_BOUNDS))
    if len(moved) > 1:
        moved[1] = np.clip(moved[1], *SERIAL_BOUNDS)
    return moved


def serial_step(miss: float, slope: float, rho: float) -> float:
    """A lab's next ``rho``: the Newton step that brings the log ratio ``miss`` of its step ratio
    (:func:`charted_steps`, synthetic / real) to 0 along
    ``slope`` (its derivative by ``rho``), at most :data:`MAX_SERIAL_CHANGE` long and within
    :data:`SERIAL_BOUNDS`; ``rho`` unchanged where either is not finite or the slope is 0."""
    if not (np.isfinite(miss) and np.isfinite(slope)) or slope == 0:
        return rho
    change = float(np.clip(-miss / slope, -MAX_SERIAL_CHANGE, MAX_SERIAL_CHANGE))
    return float(np.clip(rho + change, *SERIAL_BOUNDS))


def broyden_update(jacobian: np.ndarray, knob_change: np.ndarray, ratio_change: np.ndarray) -> np.ndarray:
    """Broyden's update of each variable's Jacobian by the secant of its last step.

    ``J + (dr - J dk) dk^T / (dk^T dk)`` with ``dk`` ``(F, 2)`` the knobs' change (``log s``, ``rho``)
    and ``dr`` ``(F, 2)`` the log ratios' change, of ``jacobian`` ``(F, 2, 2)``; a variable that did
    not move or whose ratios are not finite keeps its Jacobian. The Jacobian of the first pilots
    misjudges steps away from where it was measured (module docstring).
    """
    updated = jacobian.copy()
    for i in range(len(jacobian)):
        step, change = knob_change[i], ratio_change[i]
        norm = float(step @ step)
        if norm > 0 and np.isfinite(change).all() and np.isfinite(jacobian[i]).all():
            updated[i] += np.outer(change - jacobian[i] @ step, step) / norm
    return updated


@dataclass
class DrawSpread:
    """Fitted draw knobs of a synthetic cohort and what the pilots measured.

    Attributes
    ----------
    spread
        Variable -> fitted spread ``s`` (``draw_spread`` of the rollouts; 1 for variables not listed).
    serial
        Fed-back variable -> fitted serial correlation ``rho`` of its hourly draws, and lab -> the
        ``rho`` of its draws from one charted value to the next (``draw_serial``; the twin's own, or
        fresh draws for a lab, for variables not listed).
    real
        Variable -> the train split's median per-stay ``sd`` and ``mean_abs_change`` of its first
        ``pilot_hours`` hours (:func:`stay_variability`), the targets.
    pilots
        One entry per pilot generation: its ``spread`` and ``serial`` and the ``ratios`` it measured
        (variable -> ``{"sd": synthetic / real, "mean_abs_change": synthetic / real}``).
    chosen
        Variable -> the pilot (index in :attr:`pilots`) whose knobs it keeps: the one whose two log
        ratios had the smallest sum of squares.
    pilot_stays, pilot_hours
        Stays per pilot and their longest length (h).
    shift
        Variable -> fitted shift ``m`` of the draws' scores (``draw_shift`` of the rollouts:
        ``Phi(s z + m)``; 0 for variables not listed).
    reversion
        Variable -> ``kappa`` of its reversion to the stay's own level (:func:`reversion_kappa`;
        ``draw_reversion`` of :class:`~organsim.synth.generate.SynthesisConfig`); none for variables not listed.
    """

    spread: dict[str, float]
    serial: dict[str, float] = field(default_factory=dict)
    real: dict[str, dict[str, float]] = field(default_factory=dict)
    pilots: list[dict[str, Any]] = field(default_factory=list)
    chosen: dict[str, int] = field(default_factory=dict)
    pilot_stays: int = 0
    pilot_hours: int = 0
    shift: dict[str, float] = field(default_factory=dict)
    reversion: dict[str, float] = field(default_factory=dict)

    def spread_vector(self, model_variables: Sequence[str]) -> np.ndarray:
        """``(V_model,)`` float32 spread of every model variable (1 where not fitted)."""
        return np.array([self.spread.get(v, 1.0) for v in model_variables], dtype=np.float32)

    def serial_vector(self, model_variables: Sequence[str], own: np.ndarray) -> np.ndarray:
        """``(V_model,)`` float32 serial correlations: the fitted ones, ``own`` ``(V_model,)`` (the twin's) elsewhere."""
        return np.array([self.serial.get(v, float(o)) for v, o in zip(model_variables, own, strict=True)], dtype=np.float32)

    def shift_vector(self, model_variables: Sequence[str]) -> np.ndarray:
        """``(V_model,)`` float32 shift ``m`` of every model variable (0 where not fitted)."""
        return np.array([self.shift.get(v, 0.0) for v in model_variables], dtype=np.float32)

    def config_knobs(self) -> dict[str, dict[str, float]]:
        """The knobs as :class:`~organsim.synth.generate.SynthesisConfig` takes them (``draw_spread``,
        ``draw_serial``, ``draw_shift``, ``draw_reversion``), to reuse a fit, e.g. in every shard."""
        return {"draw_spread": dict(self.spread), "draw_serial": dict(self.serial), "draw_shift": dict(self.shift),
                "draw_reversion": dict(self.reversion)}

    def summary(self) -> dict[str, Any]:
        """JSON-ready record: the knobs, the targets and every pilot's ratios."""
        return {"spread": self.spread, "serial": self.serial, "shift": self.shift, "reversion": self.reversion,
                "real": self.real, "pilots": self.pilots, "chosen": self.chosen, "pilot_stays": self.pilot_stays,
                "pilot_hours": self.pilot_hours}


Pilot = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, dict[str, float]]]
"""``(spread, serial, shift) -> stay_variability`` of a pilot cohort simulated with those knobs (each
``(V_model,)``: ``s``, ``rho``, ``m``)."""


def fit_draw_spread(
    pilot: Pilot, real: dict[str, dict[str, float]], variables: Sequence[str], model_variables: Sequence[str],
    fed_back: np.ndarray, own_serial: np.ndarray, *, charted: Sequence[str] = (), newton_steps: int = 1, pilot_stays: int = 0,
    pilot_hours: int = 0, progress: Callable[[int, int], None] | None = None, fit_shift: bool = True,
) -> DrawSpread:
    """Fit each variable's draw knobs to the real statistics (module docstring).

    Parameters
    ----------
    pilot
        Simulates the pilot cohort (the same stays and random numbers every call) with the given knobs.
    real
        The train split's statistics: :func:`stay_variability` of ``variables``, :func:`charted_steps`
        of ``charted``, cut at the pilots' length.
    variables
        The variables whose ``s``, ``rho`` (where fed back) and ``m`` are fitted (:func:`spread_variables`).
    model_variables
        The twin's variables, the order of the knob vectors.
    fed_back
        ``(V_model,)`` bool: the twin feeds the variable back (its serial correlation is a knob).
    own_serial
        ``(V_model,)`` the twin's own serial correlations (:attr:`organsim.twin.PatientTwin.serial_correlations`).
    charted
        Labs whose only knob is the serial correlation ``rho`` of their scores from one charted value
        to the next (:func:`charted_variables`): one ``rho`` for them all, fitted to their mean log
        ratio of step ratios (:func:`charted_steps`) from ``rho = 0`` (fresh draws, the generator's
        own). One lab's step ratio in a pilot of 256 stays moved by +-0.05 between pilots that did
        not change it; fitted lab by lab, the cohort's ratios then missed (potassium 1.35, real 1.22).
    newton_steps
        Steps after the four pilots that measure the knobs' effects (>= 1), each measured by one more pilot.
    pilot_stays, pilot_hours
        Recorded in the result.
    progress
        ``progress(done, total)`` in pilot generations.
    fit_shift
        False: no shift ``m`` and no pilot for it (the synthetic-cohort generator's drift control,
        :mod:`organsim.synth.drift`, steers where the stays go instead; one pilot fewer).

    Returns
    -------
    DrawSpread
    """
    if newton_steps < 1:
        raise ValueError(f"newton_steps must be >= 1, got {newton_steps}")
    model_variables = tuple(model_variables)
    fitted = (*variables, *charted)
    lab = np.arange(len(fitted)) >= len(variables)  # (F,) rho is the variable's only knob
    columns = np.array([model_variables.index(v) for v in fitted], dtype=np.int64)
    serial_knob = np.asarray(fed_back, dtype=bool)[columns] | lab  # (F,) the variable's rho is a knob
    total = (4 if fit_shift else 3) + newton_steps
    record: list[dict[str, Any]] = []
    tried: list[tuple[np.ndarray, np.ndarray]] = []  # (knobs (F, 3): log s, rho, m; misses (F, 4)) of every pilot
    base_stays = np.zeros(len(fitted))  # (F,) stays with each variable's statistics in the first pilot

    def measure(knobs: np.ndarray) -> np.ndarray:
        vectors = [np.ones(len(model_variables)), np.asarray(own_serial, dtype=np.float64).copy(), np.zeros(len(model_variables))]
        for vector, value in zip(vectors, (np.exp(knobs[:, 0]), np.where(serial_knob, knobs[:, 1], vectors[1][columns]), knobs[:, 2]),
                                 strict=True):
            vector[columns] = value
        measured = pilot(*(v.astype(np.float32) for v in vectors))
        found = misses(measured, real, fitted)  # (F, 4)
        if not tried:
            base_stays[:] = [measured.get(v, {}).get("stays", 0) for v in fitted]
        record.append({
            "spread": {v: round(float(np.exp(k[0])), 4) for v, k in zip(variables, knobs, strict=False)},
            "serial": {v: round(float(k[1]), 4) for v, k, fed in zip(fitted, knobs, serial_knob, strict=True) if fed},
            "shift": {v: round(float(k[2]), 4) for v, k in zip(variables, knobs, strict=False)},
            "ratios": {v: {name: (None if np.isnan(r) else round(float(np.exp(r)), 4))
                           for name, r in zip(MATCHED, row, strict=True) if name != "drift" and (name == "step_ratio") == is_lab}
                       for v, row, is_lab in zip(fitted, found, lab, strict=True)},
            "drift_miss": {v: (None if np.isnan(row[2]) else round(float(row[2]), 4)) for v, row in zip(variables, found, strict=False)},
        })
        tried.append((knobs.copy(), found))
        if progress:
            progress(len(record), total)
        return found

    knobs = np.zeros((len(fitted), 3))  # log s, rho, m (a lab: rho alone, from 0)
    knobs[:, 1] = np.where(lab, 0.0, np.asarray(own_serial, dtype=np.float64)[columns])
    others = (~lab).astype(np.float64)[:, None]  # (F, 1): 1 where s and m are knobs
    base = measure(knobs)
    narrower = measure(knobs + others * [SPREAD_STEP, 0, 0])
    serial_moved = np.clip(knobs[:, 1] + SERIAL_STEP, *SERIAL_BOUNDS)
    reverting = measure(np.column_stack([knobs[:, 0], np.where(serial_knob, serial_moved, knobs[:, 1]), knobs[:, 2]]))
    shiftable = ~lab & (base_stays >= SHIFT_STAYS) & fit_shift  # (F,) m is a knob: charted in enough pilot stays for a median drift
    shifted = measure(knobs + shiftable[:, None] * [0, 0, SHIFT_STEP]) if fit_shift else base
    serial_change = np.where(serial_moved != knobs[:, 1], serial_moved - knobs[:, 1], np.nan)
    # (F, 2 statistics, 2 knobs): derivatives of the SD's and change's log ratios by log s and by rho
    jacobian = np.stack([(narrower[:, :2] - base[:, :2]) / SPREAD_STEP, (reverting[:, :2] - base[:, :2]) / serial_change[:, None]], axis=-1)
    lab_slope = (reverting[:, 3] - base[:, 3]) / serial_change  # (F,) a lab's step ratio's log by rho
    # a rho that could not move (at its bound) is no knob of that variable; a lab's is read from its step ratio alone
    serial_knob &= np.where(lab, np.isfinite(lab_slope), np.isfinite(jacobian[:, :, 1]).all(axis=1))
    found = base
    for step in range(newton_steps):
        before = (knobs.copy(), found)
        pooled = lab & serial_knob  # the labs share one rho, stepped on their mean miss and slope (one lab's are noise)
        if pooled.any():
            knobs[pooled, 1] = serial_step(float(np.nanmean(found[pooled, 3])), float(np.nanmean(lab_slope[pooled])),
                                           float(knobs[pooled, 1][0]))
        for i in np.flatnonzero(~lab):
            pair = knobs[i, :2] if serial_knob[i] else knobs[i, :1]
            knobs[i, : len(pair)] = newton_step(found[i, :2], jacobian[i, :, : len(pair)], pair)
        knobs[:, 2] = np.where(shiftable, shift_step(base[:, 2], shifted[:, 2], knobs[:, 2], found[:, 2]), 0.0)
        found = measure(knobs)
        if step + 1 < newton_steps:
            jacobian = broyden_update(jacobian, knobs[:, :2] - before[0][:, :2], found[:, :2] - before[1][:, :2])
    # each variable keeps the knobs of the pilot that came nearest its targets (a far step can miss)
    measured = [np.where(lab, np.isfinite(f[:, 3]), np.isfinite(f[:, :2]).all(axis=1)) for _, f in tried]
    distance = np.stack([np.where(ok, np.nansum(f**2, axis=1), np.inf) for ok, (_, f) in zip(measured, tried, strict=True)])  # (pilots, F)
    if lab.any():  # the labs keep one pilot together: the one with the least mean squared miss of theirs
        labs_measured = np.array([ok[lab].any() for ok in measured])
        pooled_distance = [np.nanmean(f[lab, 3] ** 2) if any_lab else np.inf for any_lab, (_, f) in zip(labs_measured, tried, strict=True)]
        distance[:, lab] = np.asarray(pooled_distance)[:, None]
    chosen = np.where(np.isfinite(distance).any(axis=0), distance.argmin(axis=0), 0)  # (F,) base where no pilot measured it
    knobs = np.array([tried[c][0][i] for i, c in enumerate(chosen)])
    return DrawSpread(
        spread={v: float(np.exp(k[0])) for v, k in zip(variables, knobs, strict=False)},
        serial={v: float(k[1]) for v, k, fed in zip(fitted, knobs, serial_knob, strict=True) if fed},
        shift={v: float(k[2]) for v, k in zip(variables, knobs, strict=False) if k[2] != 0},
        real={v: {k: (round(x, 4) if isinstance(x, float) else x) for k, x in real[v].items()} for v in fitted},
        chosen={v: int(c) for v, c in zip(fitted, chosen, strict=True)},
        pilots=record, pilot_stays=pilot_stays, pilot_hours=pilot_hours,
    )
