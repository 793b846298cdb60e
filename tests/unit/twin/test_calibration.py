"""Persistent draws of unmeasured labs and the split-conformal calibration of the twin's bands."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from twin_helpers import RangeCorrector
from typer.testing import CliRunner

from organsim.cli import app
from organsim.twin import PatientTwin
from organsim.twin.calibration import (
    CALIBRATION_FILE,
    HORIZON_BUCKETS,
    BandCalibration,
    band_scores,
    conformal_scale,
    fit_band_calibration,
    horizon_bucket,
)
from organsim.twin.draw_correlation import DRAW_CORRELATION_FILE, DrawCorrelation
from organsim.twin.twin import PersistentDraws
from organsim.utils import DataError


# ------------------------------------------------------------------------------- persistent draws
def test_persistent_draws_keep_their_quantile_only_where_asked() -> None:
    generator = torch.Generator().manual_seed(0)
    draws = PersistentDraws(torch.tensor([0.0, 0.9, 1.0]), 4000, generator)
    hours = np.stack([draws.next().numpy() for _ in range(6)])  # (6, n, 3)
    # every hour's numbers stay uniform on (0, 1), whatever the persistence
    for column in range(3):
        assert abs(hours[-1, :, column].mean() - 0.5) < 0.03 and abs(hours[-1, :, column].std() - 12**-0.5) < 0.02
    lag = [np.corrcoef(hours[:-1, :, c].ravel(), hours[1:, :, c].ravel())[0, 1] for c in range(3)]
    assert abs(lag[0]) < 0.05  # independent hour to hour
    assert 0.8 < lag[1] < 0.95  # AR(1) on the normal scores with rho 0.9
    np.testing.assert_array_equal(hours[0, :, 2], hours[5, :, 2])  # rho 1: the same quantile all along


def test_labs_persist_in_rollouts_and_vitals_do_not(micro_model, catalog, test_batch) -> None:
    twin = PatientTwin.load(micro_model, device="cpu", corrector=RangeCorrector(catalog), batch_size=16)
    assert twin.draw_persistence == 1.0
    rollout = twin.rollout(test_batch, 8, n_samples=4, seed=0, correct=False, references="none")
    fed = set(twin.agents.config.feedback_variables)
    labs = [j for j, code in enumerate(rollout.variables) if code in twin.variables and code not in fed]
    # a lab's draw sits at the same quantile every hour: samples keep their order from hour to hour
    ranks = np.argsort(np.argsort(rollout.values[..., labs], axis=0), axis=0)  # (K, B, H, L)
    steady = (ranks == ranks[:, :, :1]).all(axis=2).mean()
    independent = PatientTwin.load(micro_model, device="cpu", corrector=RangeCorrector(catalog), batch_size=16, draw_persistence=0.0)
    redrawn = independent.rollout(test_batch, 8, n_samples=4, seed=0, correct=False, references="none")
    ranks_free = np.argsort(np.argsort(redrawn.values[..., labs], axis=0), axis=0)
    assert steady > (ranks_free == ranks_free[:, :, :1]).all(axis=2).mean() + 0.2
    with pytest.raises(ValueError, match="draw_persistence"):
        PatientTwin.load(micro_model, device="cpu", draw_persistence=1.5)


# ------------------------------------------------------------------------------- conformal scales
def test_conformal_scale_is_the_finite_sample_quantile() -> None:
    scores = np.arange(1.0, 11.0)  # 10 scores: ceil(11 * 0.9) = 10th smallest
    assert conformal_scale(scores, 0.9) == 10.0
    assert conformal_scale(np.append(scores, np.nan), 0.5) == 6.0  # ceil(11 * 0.5) = 6th; NaN left out
    with pytest.raises(ValueError, match="no finite score"):
        conformal_scale(np.array([np.nan]), 0.9)


def test_band_scores_measure_in_half_widths_of_the_side() -> None:
    samples = np.array([0.0, 1.0, 2.0, 3.0, 4.0])[:, None]  # (K=5, V=1): median 2, q05 0.2, q95 3.8
    truth = np.array([[2.0], [3.8], [5.6], [0.2], [np.nan]])[:, None, :]  # (5, 1, 1)
    scores = band_scores(np.broadcast_to(samples[:, None, :], (5, 1, 1)), truth, (0.05, 0.95), np.array([0.0]))
    np.testing.assert_allclose(scores[:, 0, 0], [0.0, 1.0, 2.0, 1.0, np.nan])
    # a zero-width band has its floor as half-width
    flat = band_scores(np.zeros((5, 1, 1)), np.array([[[0.5]]]), (0.05, 0.95), np.array([0.25]))
    assert flat[0, 0, 0] == 2.0


def test_apply_scales_distances_from_the_median_with_the_floor() -> None:
    calibration = BandCalibration(
        variables=("hr", "gcs"), band=(0.05, 0.95), scales=np.array([[2.0, 1.0], [3.0, 1.0], [4.0, 1.0]]),
        floor=np.array([0.0, 0.5]), n_scores=np.zeros((3, 2)), coverage_before=0.8, meta={},
    )
    quantiles = np.zeros((3, 8, 3))  # levels 0.05, 0.25, 0.95 at hours 1..8 of hr, gcs, and a code it does not know
    quantiles[0], quantiles[1], quantiles[2] = 9.0, 9.5, 11.0
    out = calibration.apply(quantiles, (0.05, 0.25, 0.95), np.full((8, 3), 10.0), ("hr", "gcs", "map"))
    np.testing.assert_allclose(out[:, 0, 0], [8.0, 9.0, 12.0])  # hour 1: scale 2
    np.testing.assert_allclose(out[:, 6, 0], [7.0, 8.5, 13.0])  # hour 7: scale 3
    np.testing.assert_allclose(out[:, 0, 2], [9.0, 9.5, 11.0])  # unknown variable: unchanged
    zero = calibration.apply(np.full((2, 1, 1), 10.0), (0.05, 0.95), np.full((1, 1), 10.0), ("gcs",))
    np.testing.assert_allclose(zero[:, 0, 0], [9.5, 10.5])  # the floor opens a zero-width band
    assert list(horizon_bucket(np.array([1, 6, 7, 24, 25, 72]))) == [0, 0, 1, 1, 2, 2]


def test_fit_save_load_and_the_cli(micro_model, engine_cohort, catalog, tmp_path, capsys) -> None:
    twin = PatientTwin.load(micro_model, device="cpu", corrector=RangeCorrector(catalog), batch_size=16)
    calibration = fit_band_calibration(twin, engine_cohort, cases=6, samples=4, horizon=8, seed=0)
    assert calibration.scales.shape == (len(HORIZON_BUCKETS), len(twin.variables)) and np.all(calibration.scales > 0)
    assert 0 < calibration.coverage_before <= 1 and calibration.meta["split"] == "validation"
    again = fit_band_calibration(twin, engine_cohort, cases=6, samples=4, horizon=8, seed=0)
    np.testing.assert_array_equal(calibration.scales, again.scales)
    path = calibration.save(tmp_path)
    loaded = BandCalibration.load(tmp_path)
    np.testing.assert_allclose(loaded.scales, calibration.scales, rtol=1e-5)
    assert loaded.variables == calibration.variables
    document = json.loads(path.read_text())
    document["scales"][0][0] = -1
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match="positive") as error:
        BandCalibration.load(tmp_path)
    assert CALIBRATION_FILE in str(error.value)
    with pytest.raises(ValueError, match="samples >= 2"):
        fit_band_calibration(twin, engine_cohort, cases=2, samples=1, horizon=4)

    cohort_dir = tmp_path / "cohort"
    engine_cohort.save(cohort_dir)
    model_dir = tmp_path / "model"
    shutil.copytree(micro_model, model_dir)
    result = CliRunner().invoke(app, ["calibrate", "--model", str(model_dir), "--cohort", str(cohort_dir), "--cases", "4",
                                      "--samples", "3", "--horizon", "6", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Raw sampled bands covered" in " ".join(result.output.split()) and (model_dir / CALIBRATION_FILE).is_file()
    assert PatientTwin.load(model_dir, device="cpu").band_calibration is not None
    refused = CliRunner().invoke(app, ["calibrate", "--model", str(model_dir), "--cohort", str(cohort_dir), "--split", "train"])
    assert refused.exit_code != 0 and "learnt from" in " ".join(refused.output.split())


@pytest.mark.parametrize(("loader", "file_name", "what"), [
    (BandCalibration.load, CALIBRATION_FILE, "band calibration"),
    (DrawCorrelation.load, DRAW_CORRELATION_FILE, "draw correlation"),
])
def test_files_saved_beside_the_model_name_the_file_when_unreadable(loader, file_name, what, tmp_path) -> None:
    path = tmp_path / file_name
    with pytest.raises(DataError, match=f"no {what} here: run `organsim calibrate`") as error:
        loader(tmp_path)
    assert str(path) in str(error.value)
    path.write_text('{"format": "x",\n  "variables": [', encoding="utf-8")
    with pytest.raises(DataError, match=r"row 2: not valid JSON") as error:
        loader(tmp_path)
    assert str(path) in str(error.value)
    path.write_text(json.dumps({"format": "organsim.something_else/1"}), encoding="utf-8")
    with pytest.raises(DataError, match=f"unknown {what} format 'organsim.something_else/1'"):
        loader(tmp_path)
