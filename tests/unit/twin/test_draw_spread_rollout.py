"""The draw spread and serial correlation a rollout can be given (PersistentDraws spread,
PatientTwin.rollout draw_spread / draw_serial) and the synthetic-cohort generator that fits them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from twin_helpers import RangeCorrector

from organsim.synth import CohortSynthesizer, ObservationState, SynthesisConfig
from organsim.synth.spread import FREQUENT_SHARE, MAX_REVERSION, volatility_correlation
from organsim.twin import PatientTwin
from organsim.twin.twin import PersistentDraws


@pytest.fixture(scope="module")
def twin(micro_model, catalog):
    return PatientTwin.load(micro_model, device="cpu", corrector=RangeCorrector(catalog), batch_size=16)


# ------------------------------------------------------------------------------- PersistentDraws
@pytest.mark.parametrize("correlated", [False, True])
def test_a_spread_scales_the_scores_the_uniforms_invert_and_nothing_else(correlated: bool) -> None:
    n, persistence, spread = 200, torch.tensor([0.0, -0.3, 1.0]), torch.tensor([0.5, 1.0, 0.8])
    cholesky = torch.linalg.cholesky(torch.tensor([[1.0, 0.6, 0.2], [0.6, 1.0, 0.1], [0.2, 0.1, 1.0]])) if correlated else None

    def make(factors):
        return PersistentDraws(persistence, n, torch.Generator().manual_seed(4), cholesky, redraw_key=(1, 0), spread=factors)

    plain, spread_out = make(None), make(spread)
    flagged = np.zeros((n, 3), dtype=bool)
    flagged[::4, 0] = True
    for _ in range(3):
        uniform = plain.next()
        torch.testing.assert_close(uniform, torch.special.ndtr(plain.score), rtol=0, atol=0)  # no spread: as before
        narrowed = spread_out.next()
        torch.testing.assert_close(spread_out.score, plain.score, rtol=0, atol=0)  # the same state and random numbers
        torch.testing.assert_close(narrowed, torch.special.ndtr(spread * plain.score))
        assert (narrowed[:, 0] - 0.5).abs().mean() < (uniform[:, 0] - 0.5).abs().mean()  # nearer the median
        redrawn_plain, scores_plain = plain.redraw(plain.score, flagged)
        redrawn, scores = spread_out.redraw(spread_out.score, flagged)
        torch.testing.assert_close(scores, scores_plain, rtol=0, atol=0)
        expected = torch.special.ndtr(spread * torch.special.ndtri(redrawn_plain)) if cholesky is None else torch.special.ndtr(spread * scores)
        torch.testing.assert_close(redrawn[flagged], expected[flagged], rtol=1e-5, atol=1e-6)


def test_a_spread_of_the_wrong_shape_or_not_above_zero_is_refused() -> None:
    for bad in (torch.ones(2), torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0, float("inf"), 1.0])):
        with pytest.raises(ValueError, match="spread must be"):
            PersistentDraws(torch.zeros(3), 4, torch.Generator(), spread=bad)
    for bad in (torch.ones(2), torch.tensor([0.0, float("nan"), 0.0])):
        with pytest.raises(ValueError, match="shift must be"):
            PersistentDraws(torch.zeros(3), 4, torch.Generator(), shift=bad)


def test_a_shift_moves_the_uniforms_up_on_the_score_scale_and_nothing_else() -> None:
    n, persistence = 400, torch.tensor([0.0, -0.3, 1.0])
    spread, shift = torch.tensor([0.9, 1.0, 0.8]), torch.tensor([0.2, 0.0, -0.1])
    plain = PersistentDraws(persistence, n, torch.Generator().manual_seed(4), spread=spread)
    shifted = PersistentDraws(persistence, n, torch.Generator().manual_seed(4), spread=spread, shift=shift)
    for _ in range(3):
        before, after = plain.next(), shifted.next()
        torch.testing.assert_close(shifted.score, plain.score, rtol=0, atol=0)  # the same state and random numbers
        torch.testing.assert_close(after, torch.special.ndtr(spread * plain.score + shift))
        assert (after[:, 0] > before[:, 0]).all() and (after[:, 2] < before[:, 2]).all()
        torch.testing.assert_close(after[:, 1], before[:, 1], rtol=0, atol=0)


def test_a_shift_per_row_shifts_each_row_s_scores_by_its_own() -> None:
    n, persistence = 6, torch.tensor([0.0, -0.3, 1.0])
    shift = torch.linspace(-1, 1, n * 3).reshape(n, 3)
    plain = PersistentDraws(persistence, n, torch.Generator().manual_seed(4))
    shifted = PersistentDraws(persistence, n, torch.Generator().manual_seed(4), shift=shift)
    uniform = shifted.next()
    plain.next()
    torch.testing.assert_close(uniform, torch.special.ndtr(plain.score + shift))
    with pytest.raises(ValueError, match="the shift must be"):
        PersistentDraws(persistence, n, torch.Generator(), shift=torch.zeros(n + 1, 3))


def test_a_spread_per_row_scales_each_row_s_scores_by_its_own() -> None:
    n, persistence = 6, torch.tensor([0.0, -0.3, 1.0])
    spread = torch.linspace(0.5, 1.5, n * 3).reshape(n, 3)
    plain = PersistentDraws(persistence, n, torch.Generator().manual_seed(4))
    scaled = PersistentDraws(persistence, n, torch.Generator().manual_seed(4), spread=spread)
    uniform = scaled.next()
    plain.next()
    torch.testing.assert_close(uniform, torch.special.ndtr(spread * plain.score))
    with pytest.raises(ValueError, match="the spread must be"):
        PersistentDraws(persistence, n, torch.Generator(), spread=torch.ones(n + 1, 3))


# ------------------------------------------------------------------------------- PatientTwin.rollout
def test_a_rollout_with_unit_spread_and_its_own_serial_correlations_is_the_rollout_without_them(twin, test_batch):
    batch = test_batch.select(np.arange(6))
    plain = twin.rollout(batch, 4, n_samples=2, seed=3)
    ones = np.ones(len(twin.variables), dtype=np.float32)
    same = twin.rollout(batch, 4, n_samples=2, seed=3, draw_spread=ones, draw_serial=twin.serial_correlations)
    np.testing.assert_array_equal(same.values, plain.values)
    np.testing.assert_array_equal(same.draws, plain.draws)


def test_a_narrow_spread_draws_nearer_the_predictive_median_with_the_same_random_numbers(twin, test_batch):
    batch = test_batch.select(np.arange(6))
    vitals = twin.runtime.feedback
    wide = twin.rollout(batch, 1, n_samples=16, seed=5, correct=False)
    narrow = twin.rollout(batch, 1, n_samples=16, seed=5, correct=False, draw_spread=np.full(len(twin.variables), 0.3))
    np.testing.assert_array_equal(narrow.draws, wide.draws)  # the scores, the state a next call continues, are the same
    columns = [batch.variables.index(v) for v in np.array(twin.variables)[vitals]]
    # first simulated hour: the samples of one problem share its predictive distribution, so their spread narrows
    assert np.nanstd(narrow.values[:, :, 0, columns], axis=0).mean() < 0.8 * np.nanstd(wide.values[:, :, 0, columns], axis=0).mean()
    rho = twin.serial_correlations
    assert rho.shape == (len(twin.variables),) and np.all(rho[~vitals] == twin.draw_persistence)
    other = rho.copy()
    other[vitals] = -0.5
    reverting = twin.rollout(batch, 3, n_samples=2, seed=5, draw_serial=other)
    assert not np.array_equal(reverting.values, twin.rollout(batch, 3, n_samples=2, seed=5).values)


def test_rollout_refuses_knobs_of_the_wrong_shape_or_range(twin, test_batch):
    batch = test_batch.select(np.arange(2))
    with pytest.raises(ValueError, match="draw_spread must be"):
        twin.rollout(batch, 1, draw_spread=np.ones(3))
    with pytest.raises(ValueError, match="draw_serial must be"):
        twin.rollout(batch, 1, draw_serial=np.full(len(twin.variables), 1.5))
    with pytest.raises(ValueError, match="draw_shift must be"):
        twin.rollout(batch, 1, draw_shift=np.zeros(3))
    with pytest.raises(ValueError, match="draw_shift must be"):
        twin.rollout(batch, 1, draw_shift=np.zeros((3, len(twin.variables))))  # 2 problems
    with pytest.raises(ValueError, match="draw_spread must be"):
        twin.rollout(batch, 1, draw_spread=np.ones((3, len(twin.variables))))  # 2 problems


def test_a_zero_shift_is_no_shift_and_a_positive_one_draws_higher(twin, test_batch):
    batch = test_batch.select(np.arange(6))
    plain = twin.rollout(batch, 1, n_samples=16, seed=5, correct=False)
    zero = twin.rollout(batch, 1, n_samples=16, seed=5, correct=False, draw_shift=np.zeros(len(twin.variables)))
    np.testing.assert_array_equal(zero.values, plain.values)
    up = twin.rollout(batch, 1, n_samples=16, seed=5, correct=False, draw_shift=np.full(len(twin.variables), 0.5))
    np.testing.assert_array_equal(up.draws, plain.draws)  # the scores a next call continues are the same
    columns = [batch.variables.index(v) for v in twin.variables]
    higher = up.values[..., columns] >= plain.values[..., columns]
    assert higher[np.isfinite(plain.values[..., columns])].all()
    assert np.nanmean(up.values[..., columns] - plain.values[..., columns]) > 0


def test_a_shift_per_problem_is_each_problem_s_own_shift(twin, test_batch):
    """Rows are simulated side by side with the same random numbers: a problem's rollout under its own
    shift is its rollout under that shift for every problem."""
    batch = test_batch.select(np.arange(4))
    values = (0.0, 0.5, 0.0, -0.5)
    shifts = np.repeat(np.array(values, dtype=np.float32)[:, None], len(twin.variables), axis=1)
    per_problem = twin.rollout(batch, 2, n_samples=3, seed=5, draw_shift=shifts)
    for row, value in enumerate(values):
        alone = twin.rollout(batch, 2, n_samples=3, seed=5, draw_shift=np.full(len(twin.variables), value))
        np.testing.assert_array_equal(per_problem.values[:, row], alone.values[:, row])
    plain = twin.rollout(batch, 2, n_samples=3, seed=5)
    np.testing.assert_array_equal(per_problem.values[:, 0], plain.values[:, 0])
    assert not np.array_equal(per_problem.values[:, 1], plain.values[:, 1])


def test_a_spread_per_problem_is_each_problem_s_own_spread(twin, test_batch):
    batch = test_batch.select(np.arange(4))
    values = (1.0, 0.4, 1.0, 1.6)
    spreads = np.repeat(np.array(values, dtype=np.float32)[:, None], len(twin.variables), axis=1)
    per_problem = twin.rollout(batch, 2, n_samples=3, seed=5, draw_spread=spreads)
    for row, value in enumerate(values):
        alone = twin.rollout(batch, 2, n_samples=3, seed=5, draw_spread=np.full(len(twin.variables), value))
        np.testing.assert_array_equal(per_problem.values[:, row], alone.values[:, row])
    assert not np.array_equal(per_problem.values[:, 1], twin.rollout(batch, 2, n_samples=3, seed=5).values[:, 1])


# ------------------------------------------------------------------------------- synthetic cohorts
@pytest.mark.slow
def test_the_generator_fits_the_draw_spread_records_it_and_stays_deterministic(twin, engine_cohort):
    synthesizer = CohortSynthesizer.fit(engine_cohort, initial_hours=2)  # all 24 stays: a median needs 20 (MIN_STAYS)
    config = SynthesisConfig(patients=8, max_hours=10, seed=2, context_hours=6, spread_pilot_stays=24, spread_pilot_hours=8,
                             drift_control=0.0)  # the shift is fitted only without the drift control
    result = synthesizer.generate(twin, config)
    record = result.summary()["draw_spread"]
    # the vital signs and the variables charted in at least a fifth of the training hours
    fitted = {v for v in twin.variables if synthesizer.catalog.variable(v).kind == "vital"
              or engine_cohort.hourly[v].is_not_null().mean() >= FREQUENT_SHARE}
    assert set(record["spread"]) <= fitted and record["spread"]
    assert synthesizer.pressure is not None and "map" not in record["spread"]  # MAP is rewritten from SBP and DBP: no knob
    fed_back = set(np.array(twin.variables)[twin.runtime.feedback])
    labs = set(record["serial"]) - fed_back  # labs whose draws continue from one charted value to the next
    assert set(record["serial"]) - labs <= set(record["spread"]) and not labs & set(record["spread"])
    assert all(synthesizer.catalog.variable(v).kind != "vital" for v in labs)
    assert record["pilot_stays"] == 20 and record["pilot_hours"] == 8 and len(record["pilots"]) == 5
    assert set(record["shift"]) <= set(record["spread"]) and all(abs(m) <= 0.5 for m in record["shift"].values())
    assert set(record["spread"]) <= set(record["cohort_ratios"]) <= set(record["spread"]) | set(record["serial"])
    assert result.cohort.meta["provenance"]["draw_spread"] == {k: record[k] for k in ("spread", "serial", "shift", "reversion")}
    assert set(record["reversion"]) <= set(record["spread"]) and all(0 < k <= MAX_REVERSION for k in record["reversion"].values())
    again = synthesizer.generate(twin, config)
    assert again.cohort.hourly.equals(result.cohort.hourly) and again.summary() == result.summary()
    # the fitted knobs given back: no pilots, the same cohort
    given = SynthesisConfig(patients=8, max_hours=10, seed=2, context_hours=6, draw_spread=record["spread"], draw_serial=record["serial"],
                            draw_shift=record["shift"], drift_control=0.0)
    reused = synthesizer.generate(twin, given)
    assert reused.cohort.hourly.equals(result.cohort.hourly) and reused.summary()["draw_spread"]["pilots"] == []
    plain = synthesizer.generate(twin, SynthesisConfig(patients=8, max_hours=10, seed=2, context_hours=6, drift_control=0.0))
    assert plain.summary()["draw_spread"] is None and not plain.cohort.hourly.equals(result.cohort.hourly)
    with pytest.raises(ValueError, match="does not model: not_a_variable"):
        synthesizer.generate(twin, SynthesisConfig(patients=8, max_hours=10, context_hours=6, draw_spread={"not_a_variable": 0.9}))
    # with the drift control (the default), no shift and no pilot for it
    steered = synthesizer.fit_draw_spread(twin, replace(config, drift_control=1.0))
    assert steered.shift == {} and len(steered.pilots) == 4 and steered.spread


@pytest.mark.slow
def test_a_lab_given_a_serial_correlation_continues_the_score_of_its_last_charted_value(twin, engine_cohort, monkeypatch):
    synthesizer = CohortSynthesizer.fit(engine_cohort, initial_hours=2)
    fed_back = twin.runtime.feedback
    labs = [v for v, fed in zip(twin.variables, fed_back, strict=True) if not fed and synthesizer.catalog.variable(v).kind == "lab"]
    lab = max(labs, key=lambda v: engine_cohort.hourly[v].is_not_null().mean())  # the most charted
    column = twin.variables.index(lab)
    passed, returned = [], []  # per rollout call: {stay: score passed in}, {stay: score the call ended with}
    rollout = twin.rollout

    def spy(batch, horizon, **keywords):
        out = rollout(batch, horizon, **keywords)
        previous = keywords.get("draws")
        passed.append({} if previous is None else dict(zip(batch.stay_ids.tolist(), previous[0, :, column].tolist(), strict=True)))
        returned.append(dict(zip(batch.stay_ids.tolist(), out.draws[0, :, column].tolist(), strict=True)))
        return out

    monkeypatch.setattr(twin, "rollout", spy)
    config = SynthesisConfig(patients=8, max_hours=30, seed=4, context_hours=6, draw_serial={lab: 0.5})
    cohort = synthesizer.generate(twin, config).cohort
    held = updated = 0
    for call in range(1, len(passed)):
        for stay, score in passed[call].items():
            if np.isnan(score):
                continue  # not charted yet: a fresh draw
            # the score of the call that charted the lab last: one of the stay's former calls' scores
            earlier = [returned[c][stay] for c in range(call) if stay in returned[c]]
            assert score in earlier
            updated += score == returned[call - 1][stay]
            held += score != returned[call - 1][stay]
    assert updated and held  # continued from a charted hour, and kept over the hours the lab was not charted
    monkeypatch.undo()
    again = synthesizer.generate(twin, config).cohort
    assert again.hourly.equals(cohort.hourly)


def test_the_generator_shifts_a_reverting_variable_toward_each_stay_s_own_mean(twin, engine_cohort, monkeypatch):
    """``draw_reversion``: before each hour, a stay's heart-rate draw is shifted by
    ``-kappa (last - mean) / sigma`` (clipped at 1), from the heart rates it has charted so far."""
    synthesizer = CohortSynthesizer.fit(engine_cohort, initial_hours=2)
    column = twin.variables.index("hr")
    sigma = np.sqrt(np.mean(synthesizer.training_changes["hr"] ** 2))
    calls = []
    rollout = twin.rollout

    def spy(batch, horizon, **keywords):
        calls.append((batch.values[:, :, batch.variables.index("hr")].copy(), keywords.get("draw_shift")))
        return rollout(batch, horizon, **keywords)

    monkeypatch.setattr(twin, "rollout", spy)
    config = SynthesisConfig(patients=6, max_hours=7, seed=4, context_hours=6, max_rounds=1, draw_reversion={"hr": 0.5},
                             drift_control=0.0)  # the reversion alone in the shift
    synthesizer.generate(twin, config)
    shifted = 0
    for history, shift in calls:  # the context holds every hour simulated so far (context_hours >= hours done)
        assert shift.shape == (len(history), len(twin.variables))
        last = np.array([row[np.isfinite(row)][-1] if np.isfinite(row).any() else np.nan for row in history])
        count = np.isfinite(history).sum(axis=1)
        mean = np.nansum(history, axis=1) / np.maximum(count, 1)
        expected = np.where(count >= 2, np.clip(-0.5 * (last - mean) / sigma, -1, 1), 0)
        np.testing.assert_allclose(shift[:, column], expected, atol=1e-5)
        assert not np.delete(shift, column, axis=1).any()
        shifted += int((shift[:, column] != 0).any())
    assert shifted
    with pytest.raises(ValueError, match="twin does not model: no_such"):
        synthesizer.generate(twin, SynthesisConfig(patients=2, max_hours=4, context_hours=3, draw_reversion={"no_such": 0.5}))


def test_the_drift_control_steers_the_cohort_s_course_toward_the_profile(twin, engine_cohort):
    """A profile whose heart rate climbs 3 beats/min an hour from the first value: with the drift
    control, the stays' heart rate climbs above that of the same stays without it; the same seed gives
    the same cohort; stays drawn septic are not steered."""
    synthesizer = CohortSynthesizer.fit(engine_cohort, initial_hours=2)
    assert synthesizer.drift is not None and "hr" in synthesizer.drift.variables
    course = np.zeros_like(synthesizer.drift.course[:, :1])  # one level band: every stay of a batch reads the same course
    course[..., synthesizer.drift.variables.index("hr")] = 3.0 * np.arange(course.shape[2])[None, None, :]
    synthesizer.drift = replace(synthesizer.drift, course=course, level_edges=synthesizer.drift.level_edges[[0, -1]])

    def climb(gain: float, septic_fraction: float = 0.0) -> float:
        config = SynthesisConfig(patients=16, max_hours=12, seed=3, context_hours=6, max_rounds=1, drift_control=gain,
                                 septic_fraction=septic_fraction)
        hourly = synthesizer.generate(twin, config).cohort.hourly.sort("stay_id", "hour")
        change = hourly.select(pl.col("hr") - pl.col("hr").drop_nulls().first().over("stay_id"), "hour", "stay_id")
        late = change.filter(pl.col("hour") >= pl.col("hour").min().over("stay_id") + 6)
        return float(late["hr"].mean())

    plain, steered = climb(0.0), climb(1.0)
    assert steered > plain + 3.0
    assert climb(1.0) == steered
    assert climb(1.0, septic_fraction=1.0) == climb(0.0, septic_fraction=1.0)  # septic stays run their own course
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="drift_control must be a finite number >= 0"):
            SynthesisConfig(patients=2, max_hours=4, drift_control=bad)


def test_a_stay_drawn_septic_is_charted_toward_its_drawn_onset(twin, engine_cohort, monkeypatch):
    """The generator opens each batch's charting with the stays' planned onsets: within each stay
    drawn as septic, none for a stay drawn as not septic."""
    synthesizer = CohortSynthesizer.fit(engine_cohort, initial_hours=2)
    opened = []
    opening = ObservationState.opening

    def spy(style, first_hour, onset_hour=None):
        opened.append((np.asarray(first_hour), onset_hour))
        return opening(style, first_hour, onset_hour)

    monkeypatch.setattr(ObservationState, "opening", staticmethod(spy))
    for fraction in (1.0, 0.0):
        opened.clear()
        synthesizer.generate(twin, SynthesisConfig(patients=6, max_hours=12, seed=1, context_hours=6, max_rounds=1,
                                                   septic_fraction=fraction))
        first_hour, onsets = opened[0]
        if fraction:
            assert np.isfinite(onsets).all() and (onsets >= first_hour).all() and (onsets < first_hour + 12).all()
        else:
            assert np.isnan(onsets).all()


def test_a_volatility_gives_each_stay_its_own_spread_of_the_fed_back_variables(twin, engine_cohort):
    """With a volatility each stay's vital signs are drawn at the fitted spread times the stay's own
    factors ``exp(tau u)`` (median 1, correlated across the vitals as the training stays'
    volatilities are), the other variables at the fitted spread; the same seed gives the same
    cohort, and a volatility of 0 is the cohort without one."""
    synthesizer = CohortSynthesizer.fit(engine_cohort, initial_hours=2)
    fed_back = twin.agents.config.fed_back
    base = np.linspace(0.8, 1.0, len(fed_back)).astype(np.float32)
    spread = synthesizer._stay_spread(twin, base, 0.5, 4000, (1, 2, 3))
    assert spread.shape == (4000, len(fed_back))
    np.testing.assert_array_equal(spread[:, ~fed_back], np.broadcast_to(base[~fed_back], (4000, int((~fed_back).sum()))))
    logs = np.log(spread[:, fed_back] / base[fed_back])
    np.testing.assert_allclose(logs.std(axis=0), 0.5, atol=0.03)
    np.testing.assert_allclose(np.median(logs, axis=0), 0.0, atol=0.04)
    names = [v for v, fed in zip(twin.agents.config.variables, fed_back, strict=True) if fed]
    expected = volatility_correlation(synthesizer.spread_targets, names)
    np.testing.assert_allclose(np.corrcoef(logs.T), expected, atol=0.06)
    np.testing.assert_array_equal(spread, synthesizer._stay_spread(twin, base, 0.5, 4000, (1, 2, 3)))
    assert synthesizer._stay_spread(twin, base, 0.0, 4000, (1, 2, 3)) is None

    def cohort(volatility: float) -> pl.DataFrame:
        config = SynthesisConfig(patients=12, max_hours=10, seed=3, context_hours=6, max_rounds=1, volatility=volatility,
                                 draw_spread={"hr": 1.0})
        return synthesizer.generate(twin, config).cohort.hourly.sort("stay_id", "hour")

    plain, volatile = cohort(0.0), cohort(1.0)
    assert volatile.equals(cohort(1.0))
    assert not volatile["hr"].equals(plain["hr"])
    change = {name: frame.select(pl.col("hr").diff().abs().mean().over("stay_id").alias("c"), "stay_id").unique("stay_id")["c"]
              for name, frame in (("plain", plain), ("volatile", volatile))}
    assert np.nanstd(np.log(change["volatile"].to_numpy() + 1e-3)) > np.nanstd(np.log(change["plain"].to_numpy() + 1e-3))
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="volatility must be a finite number >= 0"):
            SynthesisConfig(patients=2, max_hours=4, volatility=bad)
