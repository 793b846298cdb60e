"""`organsim synthesize` end to end: a micro twin trained on a tiny engine cohort, deterministic files, loaders read them."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from organsim.agents.training import TrainConfig, train_agents
from organsim.cli import app
from organsim.data import Cohort, read_physionet2019
from organsim.physiology import EngineConfig, PhysiologyEngine


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model_dir, cohort_dir): a micro model trained one epoch on a 24-stay engine cohort's train split."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("synthesize")
    cohort = PhysiologyEngine(EngineConfig(n_patients=24, hours=30, seed=2)).generate().split((0.5, 0.25, 0.25), seed=0)
    cohort_dir = cohort.save(root / "cohort")
    config = TrainConfig(max_epochs=1, batch_size=8, n_bins=8, learning_rate=3e-3, seed=3)
    train_agents(cohort, root / "model", preset="micro", train_config=config, device="cpu", show_progress=False)
    yield root / "model", cohort_dir
    torch.set_num_threads(before)


def _files(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_synthesize_is_deterministic_and_readable(trained, tmp_path):
    model_dir, cohort_dir = trained
    runner = CliRunner()
    common = ["synthesize", "--model", str(model_dir), "--cohort", str(cohort_dir), "--patients", "6", "--hours", "14",
              "--seed", "3", "--device", "cpu", "--septic-fraction", "0.5"]
    first = runner.invoke(app, [*common, "--out", str(tmp_path / "a"), "--format", "psv"])
    assert first.exit_code == 0, first.output
    assert "behaviour policy" in first.output and str(tmp_path / "a") in first.output
    assert "drift control" in first.output and "gain 1" in first.output  # on by default
    second = runner.invoke(app, [*common, "--out", str(tmp_path / "b"), "--format", "psv"])
    assert second.exit_code == 0, second.output
    assert _files(tmp_path / "a") == _files(tmp_path / "b")  # same seed, same bytes
    physionet = read_physionet2019(tmp_path / "a")
    assert physionet.stays.height == 6 and (physionet.stays["n_hours"] <= 14).all()

    parquet = runner.invoke(app, [*common, "--out", str(tmp_path / "c")])
    assert parquet.exit_code == 0, parquet.output
    cohort = Cohort.load(tmp_path / "c")
    assert cohort.meta["source"] == "synthetic" and cohort.meta["treatments_recorded"]
    assert cohort.treatments.height == cohort.hourly.height
    assert cohort.hourly.select("stay_id", "hr").equals(physionet.hourly.select("stay_id", "hr"))


def test_synthesize_refuses_another_cohort(trained, tmp_path):
    model_dir, _ = trained
    other = PhysiologyEngine(EngineConfig(n_patients=10, hours=12, seed=5)).generate().save(tmp_path / "other")
    result = CliRunner().invoke(app, ["synthesize", "--model", str(model_dir), "--cohort", str(other), "--patients", "2",
                                      "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 2
    assert "differ from the model's training record" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_synthesize_in_shards_merges_parts_and_redoes_only_missing_ones(trained, tmp_path):
    from organsim.synth.generate import SynthesisConfig
    from organsim.synth.sharded import synthesize_sharded

    model_dir, cohort_dir = trained
    result = CliRunner().invoke(app, ["synthesize", "--model", str(model_dir), "--cohort", str(cohort_dir), "--patients", "5",
                                      "--hours", "10", "--seed", "4", "--device", "cpu", "--shards", "2", "--workers", "1",
                                      "--out", str(tmp_path / "sharded")])
    assert result.exit_code == 0, result.output
    cohort = Cohort.load(tmp_path / "sharded")
    assert cohort.stay_ids == [1, 2, 3, 4, 5] and set(cohort.hourly["stay_id"].unique()) == {1, 2, 3, 4, 5}
    assert cohort.meta["provenance"]["shards"] == 2 and not (tmp_path / "sharded.parts").exists()

    # a part on disk is reused, a missing one computed: the merged cohort is the same
    config = SynthesisConfig(patients=5, max_hours=10, seed=4, context_hours=12)
    parts = tmp_path / "parts"
    whole = synthesize_sharded(model_dir, cohort_dir, config, shards=2, parts_dir=parts, workers=1)
    second = parts / "part-0001"
    stays_before = (second / "stays.parquet").read_bytes()
    for item in (parts / "part-0000").iterdir():
        item.unlink()
    (parts / "part-0000").rmdir()
    again = synthesize_sharded(model_dir, cohort_dir, config, shards=2, parts_dir=parts, workers=1)
    assert (second / "stays.parquet").read_bytes() == stays_before
    assert again.cohort.hourly.equals(whole.cohort.hourly) and again.summary() == whole.summary()


def test_synthesize_refuses_more_shards_than_patients(trained, tmp_path):
    model_dir, cohort_dir = trained
    result = CliRunner().invoke(app, ["synthesize", "--model", str(model_dir), "--cohort", str(cohort_dir), "--patients", "2",
                                      "--shards", "3", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code != 0 and "--shards (3) cannot exceed --patients (2)" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_synthesize_refuses_a_negative_drift_control(trained, tmp_path):
    model_dir, cohort_dir = trained
    result = CliRunner().invoke(app, ["synthesize", "--model", str(model_dir), "--cohort", str(cohort_dir), "--patients", "2",
                                      "--drift-control", "-0.5", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code != 0 and "--drift-control" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_synthesize_with_a_realism_screen_keeps_the_asked_stays_of_a_larger_pool(trained, tmp_path):
    model_dir, cohort_dir = trained
    result = CliRunner().invoke(app, ["synthesize", "--model", str(model_dir), "--cohort", str(cohort_dir), "--patients", "6",
                                      "--hours", "12", "--seed", "5", "--device", "cpu", "--septic-fraction", "0.5",
                                      "--screen-pool", "2", "--volatility", "0.3", "--out", str(tmp_path / "screened")])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "realism screen" in output and "kept 6 of 12 generated stays" in output
    table = " ".join(result.output.replace("│", " ").split())
    assert "nearer a training stay than the closeness floor" in table
    assert "own spread factors, exp(0.3 u)" in table
    cohort = Cohort.load(tmp_path / "screened")
    assert cohort.stay_ids == [1, 2, 3, 4, 5, 6] and int(cohort.stays["sepsis"].sum()) == 3
    assert cohort.meta["provenance"]["screen"]["pool_stays"] == 12
    assert cohort.meta["provenance"]["screen"]["closeness_floor"] > 0
    assert cohort.meta["provenance"]["settings"]["screen_pool"] == 2.0
    assert cohort.meta["provenance"]["settings"]["volatility"] == 0.3


@pytest.mark.parametrize(("option", "value"), [("--screen-pool", "0.5"), ("--volatility", "-0.1")])
def test_synthesize_refuses_a_pool_below_one_or_a_negative_volatility(trained, tmp_path, option, value):
    model_dir, cohort_dir = trained
    result = CliRunner().invoke(app, ["synthesize", "--model", str(model_dir), "--cohort", str(cohort_dir), "--patients", "2",
                                      option, value, "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 2 and option in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_each_shard_screens_its_own_pool_and_the_records_add_up(trained, tmp_path):
    model_dir, cohort_dir = trained
    result = CliRunner().invoke(app, ["synthesize", "--model", str(model_dir), "--cohort", str(cohort_dir), "--patients", "6",
                                      "--hours", "10", "--seed", "4", "--device", "cpu", "--shards", "2", "--workers", "1",
                                      "--screen-pool", "2", "--out", str(tmp_path / "sharded")])
    assert result.exit_code == 0, result.output
    assert "kept 6 of 12 generated stays" in " ".join(result.output.split())
    assert Cohort.load(tmp_path / "sharded").stay_ids == [1, 2, 3, 4, 5, 6]
