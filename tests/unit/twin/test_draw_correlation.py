"""The within-hour draw correlation: randomized PIT, pairwise correlation, nearest PD, correlated draws, fit, files, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from scipy import special, stats
from twin_helpers import RangeCorrector
from typer.testing import CliRunner

from organsim.agents.model import HourInputs, reference_sets
from organsim.agents.training import tiled_windows, window_tensors
from organsim.cli import app
from organsim.data.windows import HourlyArrays
from organsim.tracking.command_stages import Calibrate
from organsim.twin import PatientTwin
from organsim.twin.calibration import CALIBRATION_FILE
from organsim.twin.draw_correlation import (
    DRAW_CORRELATION_FILE,
    DrawCorrelation,
    draw_correlation_from_scores,
    fit_draw_correlation,
    nearest_correlation,
    pairwise_complete_correlation,
    randomized_pit,
    serial_correlation,
    teacher_forced_probs,
)
from organsim.twin.twin import PersistentDraws
from organsim.utils import DataError

TRUE_CORRELATION = np.array([[1.0, 0.8, -0.5], [0.8, 1.0, -0.3], [-0.5, -0.3, 1.0]])


def discretized(latent: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The bins a twin draw picks at normal scores ``latent`` ``(N, V)`` from one ``(K,)`` distribution."""
    return np.minimum(np.searchsorted(np.cumsum(probs), special.ndtr(latent), side="right"), len(probs) - 1)


def normal_scores(probs: np.ndarray, bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = torch.from_numpy(rng.random(bins.shape))
    return special.ndtri(randomized_pit(torch.from_numpy(probs), torch.from_numpy(bins), noise).numpy())


# ------------------------------------------------------------------------------- PIT and correlation
def test_randomized_pit_of_values_from_their_own_distribution_is_standard_normal() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(12, 0.5), size=20_000)  # (N, K): every value its own distribution, many near-empty bins
    bins = (rng.random((20_000, 1)) > probs.cumsum(-1)).sum(-1).clip(max=11)  # a draw from each row
    z = normal_scores(probs, bins, rng)
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    assert stats.kstest(z, "norm").pvalue > 0.01
    # values from another distribution than the forecast are not: the test can tell calibration apart
    shifted = normal_scores(probs, np.minimum(bins + 2, 11), rng)
    assert shifted.mean() > 0.3


def test_pairwise_complete_correlation_uses_the_rows_both_have() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 6.0])
    y = np.array([2.0, 1.0, 4.0, 3.0, 5.0, np.nan])
    z = np.array([np.nan, np.nan, 1.0, 2.0, 3.0, 4.0])
    correlation, n_pairs = pairwise_complete_correlation(np.column_stack([x, y, z]), min_pairs=4)
    assert n_pairs.tolist() == [[5, 4, 3], [4, 5, 3], [3, 3, 4]]
    assert correlation[0, 1] == pytest.approx(np.corrcoef([1, 2, 3, 4], [2, 1, 4, 3])[0, 1]) == pytest.approx(0.6)
    assert correlation[0, 2] == 0.0 and correlation[1, 2] == 0.0  # 3 shared rows < min_pairs
    assert np.all(np.diag(correlation) == 1.0)


def test_fitted_correlation_recovers_a_known_one_through_binned_draws() -> None:
    rng = np.random.default_rng(1)
    latent = rng.multivariate_normal(np.zeros(3), TRUE_CORRELATION, size=30_000)
    probs = rng.dirichlet(np.full(40, 2.0))  # one 40-bin distribution for every value
    bins = discretized(latent, probs)
    scores = normal_scores(np.broadcast_to(probs, (*bins.shape, 40)).copy(), bins, rng)
    scores[rng.random(30_000) < 0.3, 2] = np.nan  # the third variable observed in 70 % of the hours
    fitted = draw_correlation_from_scores(scores, ("a", "b", "c"))
    np.testing.assert_allclose(fitted.correlation, TRUE_CORRELATION, atol=0.04)
    assert fitted.pairs_estimated == 3 and fitted.n_pairs[0, 2] == int((~np.isnan(scores[:, 2])).sum())
    assert fitted.strongest(1)[0][:2] == ("a", "b")
    np.testing.assert_allclose(fitted.score_sd, 1.0, atol=0.03)
    # a variable seen in fewer than min_pairs hours keeps its draws independent of the others
    scores[200:, 2] = np.nan
    sparse = draw_correlation_from_scores(scores, ("a", "b", "c"), min_pairs=250)
    assert sparse.pairs_estimated == 1 and np.allclose(sparse.correlation[2, :2], 0.0, atol=1e-3)


def test_nearest_correlation_is_positive_definite_with_a_unit_diagonal() -> None:
    indefinite = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    assert np.linalg.eigvalsh(indefinite).min() < 0
    fixed = nearest_correlation(indefinite)
    np.testing.assert_allclose(np.diag(fixed), 1.0)
    np.testing.assert_allclose(fixed, fixed.T)
    assert np.linalg.eigvalsh(fixed).min() > 0
    np.linalg.cholesky(fixed)
    assert np.all(np.sign(fixed) == np.sign(indefinite))  # the nearest one keeps the pattern
    np.testing.assert_allclose(nearest_correlation(TRUE_CORRELATION), TRUE_CORRELATION, atol=1e-12)  # already PD: unchanged


def test_serial_correlation_recovers_the_lag_one_correlation_of_scores() -> None:
    rng = np.random.default_rng(0)
    rho = np.array([-0.3, 0.5, 0.0])
    windows, hours = 2000, 20
    scores = np.empty((windows, hours, 3))
    scores[:, 0] = rng.standard_normal((windows, 3))
    for hour in range(1, hours):
        scores[:, hour] = rho * scores[:, hour - 1] + np.sqrt(1 - rho**2) * rng.standard_normal((windows, 3))
    scores[rng.random(scores.shape) < 0.2] = np.nan  # hours not observed
    scores[5:, :, 2] = np.nan  # the third variable: too few pairs
    consecutive = np.stack([scores[:, :-1], scores[:, 1:]], axis=2).reshape(-1, 2, 3)
    fitted = serial_correlation(consecutive, min_pairs=200)
    np.testing.assert_allclose(fitted[:2], rho[:2], atol=0.03)
    assert fitted[2] == 0.0
    with pytest.raises(ValueError, match="consecutive"):
        serial_correlation(scores)


# ------------------------------------------------------------------------------- correlated draws
def test_persistent_draws_with_a_negative_serial_correlation_alternate_around_the_median() -> None:
    draws = PersistentDraws(torch.tensor([-0.3, 0.0]), 40_000, torch.Generator().manual_seed(1))
    hours = np.stack([special.ndtri(draws.next().numpy().astype(np.float64)) for _ in range(3)])  # (3, n, 2)
    np.testing.assert_allclose(hours[2].std(axis=0), 1.0, atol=0.02)  # each hour keeps its predictive distribution
    assert np.corrcoef(hours[1, :, 0], hours[2, :, 0])[0, 1] == pytest.approx(-0.3, abs=0.02)
    assert abs(np.corrcoef(hours[1, :, 1], hours[2, :, 1])[0, 1]) < 0.02


def test_persistent_draws_with_a_correlation_keep_marginals_and_persistence() -> None:
    cholesky = torch.tensor(np.linalg.cholesky(TRUE_CORRELATION), dtype=torch.float32)
    draws = PersistentDraws(torch.tensor([0.0, 0.0, 1.0]), 40_000, torch.Generator().manual_seed(0), cholesky)
    hours = np.stack([special.ndtri(draws.next().numpy().astype(np.float64)) for _ in range(4)])  # (4, n, 3) normal scores
    for hour in (0, 3):
        np.testing.assert_allclose(hours[hour].mean(axis=0), 0.0, atol=0.02)
        np.testing.assert_allclose(hours[hour].std(axis=0), 1.0, atol=0.02)
    np.testing.assert_allclose(np.corrcoef(hours[0].T), TRUE_CORRELATION, atol=0.02)  # first hour: R
    assert np.corrcoef(hours[3, :, 0], hours[3, :, 1])[0, 1] == pytest.approx(0.8, abs=0.02)  # same rho: R every hour
    assert abs(np.corrcoef(hours[3, :, 0], hours[3, :, 2])[0, 1]) < 0.02  # a fresh vital against a persistent lab
    np.testing.assert_array_equal(hours[0, :, 2], hours[3, :, 2])  # rho 1 still keeps its quantile
    assert abs(np.corrcoef(hours[0, :, 0], hours[1, :, 0])[0, 1]) < 0.02  # rho 0 still independent hour to hour
    with pytest.raises(ValueError, match="Cholesky"):
        PersistentDraws(torch.zeros(2), 3, torch.Generator(), cholesky)


def test_persistent_draws_without_a_correlation_are_the_independent_stream() -> None:
    persistence = torch.tensor([0.0, 0.5, 1.0])
    draws = PersistentDraws(persistence, 5, torch.Generator().manual_seed(7))
    reference = torch.Generator().manual_seed(7)
    score = torch.randn((5, 3), generator=reference)
    torch.testing.assert_close(draws.next(), torch.special.ndtr(score), rtol=0, atol=0)
    score = persistence * score + torch.sqrt(1 - persistence**2) * torch.randn((5, 3), generator=reference)
    torch.testing.assert_close(draws.next(), torch.special.ndtr(score), rtol=0, atol=0)


def test_a_redraw_with_a_correlation_is_drawn_given_the_hours_kept_scores() -> None:
    cholesky = torch.tensor(np.linalg.cholesky(TRUE_CORRELATION), dtype=torch.float32)
    n = 60_000
    draws = PersistentDraws(torch.zeros(3), n, torch.Generator().manual_seed(0), cholesky)
    draws.next()
    scores = draws.score.clone()
    flagged = np.zeros((n, 3), dtype=bool)
    flagged[: n // 3, 0] = True  # the first variable alone
    flagged[n // 3 : 2 * n // 3, :2] = True  # the first two
    flagged[-1000:] = True  # the whole hour
    uniform, redrawn = draws.redraw(scores, flagged)
    torch.testing.assert_close(uniform, torch.special.ndtr(redrawn), rtol=0, atol=0)
    torch.testing.assert_close(draws.score, scores, rtol=0, atol=0)  # the persistent scores are left alone
    np.testing.assert_array_equal(redrawn.numpy()[~flagged], scores.numpy()[~flagged])
    assert (redrawn.numpy()[flagged] != scores.numpy()[flagged]).all()
    new, old = redrawn.numpy().astype(np.float64), scores.numpy().astype(np.float64)
    for rows in (slice(0, n // 3), slice(n // 3, 2 * n // 3)):
        # redrawing from the conditional keeps the hour's joint distribution: correlation R, unit variances
        np.testing.assert_allclose(np.corrcoef(new[rows].T), TRUE_CORRELATION, atol=0.03)
        np.testing.assert_allclose(new[rows].std(axis=0), 1.0, atol=0.03)
    first = slice(0, n // 3)  # z_0 | z_1, z_2: mean R_0K R_KK^-1 z_K, variance 1 - R_0K R_KK^-1 R_K0
    weights = np.linalg.solve(TRUE_CORRELATION[1:, 1:], TRUE_CORRELATION[1:, 0])
    residual = new[first, 0] - old[first, 1:] @ weights
    assert abs(residual.mean()) < 0.02
    assert residual.std() == pytest.approx(np.sqrt(1 - TRUE_CORRELATION[0, 1:] @ weights), abs=0.02)
    # the original value is forgotten given the kept ones: the redraw is not anchored to the rejected draw
    assert abs(np.corrcoef(residual, old[first, 0] - old[first, 1:] @ weights)[0, 1]) < 0.03


def test_a_redraw_without_a_correlation_is_the_independent_uniform_stream() -> None:
    draws = PersistentDraws(torch.zeros(3), 5, torch.Generator().manual_seed(3))
    draws.next()
    reference = torch.Generator().manual_seed(3)
    torch.randn((5, 3), generator=reference)
    flagged = np.zeros((5, 3), dtype=bool)
    flagged[1, 2] = True
    uniform, scores = draws.redraw(draws.score, flagged)
    torch.testing.assert_close(uniform, torch.rand((5, 3), generator=reference), rtol=0, atol=0)  # the twin's redraws before
    assert scores is draws.score


# ------------------------------------------------------------------------------- the agents' forecasts
def test_teacher_forced_steps_give_the_full_forward_at_every_position(micro_model, engine_cohort) -> None:
    twin = PatientTwin.load(micro_model, device="cpu")
    arrays = HourlyArrays.from_cohort(engine_cohort.subset(split="validation"))
    windows = tiled_windows(arrays, twin.agents.config.window_hours)
    tensors = window_tensors(arrays, windows, np.arange(3), twin.runtime.encoder)
    inputs = HourInputs(**{k: v for k, v in tensors.items() if k not in ("targets", "target_z")})
    references = reference_sets("all", 3, len(twin.systems))
    stepped = list(teacher_forced_probs(twin.runtime, inputs, references))
    assert len(stepped) == inputs.hours.shape[1]
    for hour in (0, 5, len(stepped) - 1):
        prefix = HourInputs(**{k: v if k == "static" else v[:, : hour + 1] for k, v in vars(inputs).items()})
        with torch.inference_mode():
            full = torch.softmax(twin.runtime.model(prefix, references).logits.double(), dim=-1)
        torch.testing.assert_close(stepped[hour], full, rtol=1e-4, atol=1e-5)


def test_fit_is_seeded_saves_loads_and_correlates_the_twins_draws(micro_model, engine_cohort, catalog, test_batch, tmp_path) -> None:
    twin = PatientTwin.load(micro_model, device="cpu", corrector=RangeCorrector(catalog), batch_size=16)
    assert twin.draw_correlation is None
    validation = engine_cohort.subset(split="validation")
    fitted = fit_draw_correlation(twin, validation, max_windows=50, min_pairs=20, seed=0)
    again = fit_draw_correlation(twin.agents, validation, max_windows=50, min_pairs=20, seed=0, device="cpu")
    np.testing.assert_array_equal(fitted.correlation, again.correlation)
    assert fitted.variables == twin.variables and fitted.pairs_estimated > 0
    assert fitted.meta["stays"] == validation.stays.height and fitted.meta["references"] == "all"
    np.linalg.cholesky(fitted.correlation)
    other_seed = fit_draw_correlation(twin, validation, max_windows=50, min_pairs=20, seed=1)
    assert not np.array_equal(fitted.correlation, other_seed.correlation)  # the PIT noise is seeded

    model_dir = tmp_path / "model"
    shutil.copytree(micro_model, model_dir)
    path = fitted.save(model_dir)
    loaded = DrawCorrelation.load(model_dir)
    np.testing.assert_array_equal(loaded.correlation, fitted.correlation)
    np.testing.assert_array_equal(loaded.n_pairs, fitted.n_pairs)
    assert loaded.variables == fitted.variables and loaded.meta == fitted.meta
    assert fitted.serial.shape == (len(twin.variables),) and np.all(np.abs(fitted.serial) < 1)
    np.testing.assert_array_equal(loaded.serial, fitted.serial)

    correlated = PatientTwin.load(model_dir, device="cpu", corrector=RangeCorrector(catalog), batch_size=16)
    assert correlated.draw_correlation is not None
    fed_back = correlated.runtime.feedback
    np.testing.assert_allclose(correlated._persistence.numpy()[fed_back], fitted.serial[fed_back], atol=1e-6)  # the vitals' AR(1)
    np.testing.assert_array_equal(correlated._persistence.numpy()[~fed_back], 1.0)  # labs keep their quantile
    independent = twin.rollout(test_batch, 4, n_samples=3, seed=0)
    assert not np.array_equal(correlated.rollout(test_batch, 4, n_samples=3, seed=0).values, independent.values)
    switched_off = PatientTwin.load(model_dir, device="cpu", corrector=RangeCorrector(catalog), batch_size=16, draw_correlation=None)
    np.testing.assert_array_equal(switched_off.rollout(test_batch, 4, n_samples=3, seed=0).values, independent.values)

    document = json.loads(path.read_text())
    del document["serial"]  # a file fitted before the serial correlation: 0, independent hours as then
    path.write_text(json.dumps(document))
    np.testing.assert_array_equal(DrawCorrelation.load(model_dir).serial, 0.0)
    document["serial"] = [1.0] * len(twin.variables)
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match="serial"):
        DrawCorrelation.load(model_dir)
    del document["serial"]
    document["correlation"][0][1] = document["correlation"][1][0] = 1.5
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match="positive definite") as error:
        DrawCorrelation.load(model_dir)
    assert DRAW_CORRELATION_FILE in str(error.value)
    with pytest.raises(ValueError, match="variables"):
        PatientTwin(twin.agents, draw_correlation=draw_correlation_from_scores(np.zeros((5, 2)), ("hr", "sbp")), device="cpu")


class RedrawHeartRate(RangeCorrector):
    """Flags every simulated heart rate for one redraw (and projects nothing)."""

    def violating(self, values_prev, values_new, variables):
        return np.asarray([v == "hr" for v in variables])[None, :] & ~np.isnan(values_new)

    def correct(self, values_prev, values_new, variables):
        return values_new, [], {}, {}


def test_the_twins_redraws_keep_the_draw_correlation(micro_model, test_batch, catalog) -> None:
    """Every heart rate is redrawn: with a draw correlation the redraw is correlated with the hour's SBP as the first draw was."""
    twin = PatientTwin.load(micro_model, device="cpu", corrector=RedrawHeartRate(catalog, max_resamples=1), batch_size=512)
    variables = twin.variables
    correlation = np.eye(len(variables))
    correlation[variables.index("hr"), variables.index("sbp")] = correlation[variables.index("sbp"), variables.index("hr")] = 0.95
    correlated = PatientTwin(twin.agents, corrector=twin.corrector, device="cpu", batch_size=512, draw_correlation=DrawCorrelation(
        variables=variables, correlation=correlation, n_pairs=np.zeros(correlation.shape, dtype=np.int64), min_pairs=3,
        score_sd=np.ones(len(variables)), meta={}))
    problem = test_batch.select(slice(0, 1))
    rollout = correlated.rollout(problem, 1, n_samples=400, seed=0)
    hr, sbp = rollout.variables.index("hr"), rollout.variables.index("sbp")
    first_hour = rollout.values[:, 0, 0]  # (samples, V): the first simulated hour of the problem
    assert (rollout.corrections["rule"] == "resampled").sum() > 200  # redraws that changed the value
    assert stats.spearmanr(first_hour[:, hr], first_hour[:, sbp]).statistic > 0.5
    independent = twin.rollout(problem, 1, n_samples=400, seed=0).values[:, 0, 0]
    assert abs(stats.spearmanr(independent[:, hr], independent[:, sbp]).statistic) < 0.2


def test_calibrate_writes_the_draw_correlation_and_the_band_calibration(micro_model, engine_cohort, tmp_path) -> None:
    cohort_dir, model_dir, out = tmp_path / "cohort", tmp_path / "model", tmp_path / "calibrated"
    engine_cohort.save(cohort_dir)
    shutil.copytree(micro_model, model_dir)
    result = CliRunner().invoke(app, ["calibrate", "--model", str(model_dir), "--cohort", str(cohort_dir), "--out", str(out),
                                      "--cases", "3", "--samples", "3", "--horizon", "4", "--correlation-windows", "20",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "0 of 903 variable pairs had >= 200 hours" in text and "Wrote" in text  # 6 validation stays: too few hours
    assert (out / DRAW_CORRELATION_FILE).is_file() and (out / CALIBRATION_FILE).is_file()
    assert not (model_dir / DRAW_CORRELATION_FILE).exists()  # --out is a calibrated copy
    twin = PatientTwin.load(out, device="cpu")
    assert twin.draw_correlation is not None and twin.band_calibration is not None
    assert twin.draw_correlation.meta["windows"] <= 20
    metrics = Calibrate().metrics(out).values
    assert metrics["draw_pairs_estimated"] == twin.draw_correlation.pairs_estimated
    assert {"coverage_before", "scale_median", "observed_values", "draw_correlation_max_abs"} <= set(metrics)


def test_calibrate_refuses_a_bad_window_count_and_writes_nothing(micro_model, engine_cohort, tmp_path) -> None:
    cohort_dir, out = tmp_path / "cohort", tmp_path / "calibrated"
    engine_cohort.save(cohort_dir)
    result = CliRunner().invoke(app, ["calibrate", "--model", str(micro_model), "--cohort", str(cohort_dir), "--out", str(out),
                                      "--correlation-windows", "0", "--device", "cpu"])
    assert result.exit_code != 0
    assert "Invalid value for '--correlation-windows'" in " ".join(result.output.split())
    assert not out.exists() and not (micro_model / DRAW_CORRELATION_FILE).exists()
