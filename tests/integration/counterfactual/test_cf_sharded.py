"""Counterfactual sweeps in shards: the merge gives the unsharded result, finished parts are reused,
a failed shard keeps the others, Ray in local mode, and the twin deterministic per shard layout."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from organsim.counterfactual import (
    RecordedFuture,
    Simulator,
    cf_benchmark,
    load_strategy,
    virtual_trial,
)
from organsim.counterfactual.sharded import TwinSource, sharded_cf_benchmark, sharded_virtual_trial
from organsim.data import Cohort
from organsim.utils.shards import ShardsFailed, missing_shards

pytestmark = pytest.mark.exclusive  # one rendezvous port or one local cluster at a time (tests/conftest.py)

CONTRAST = ("liberal_fluids", "restrictive_fluids")
BENCHMARK = {"contrasts": [CONTRAST], "n_stays": 6, "decision_hours": (6, 12), "horizon": 24, "seed": 3}


def recorded_source(cohort_dir: str, calls_dir: str, fail_on_call: int | None = None) -> tuple[list[Simulator], Cohort]:
    """The no-effect reference and the saved cohort; counts its calls in ``calls_dir`` and raises
    on call number ``fail_on_call`` (1-based), as a shard whose worker broke."""
    calls = Path(calls_dir)
    calls.mkdir(exist_ok=True)
    number = len(list(calls.iterdir())) + 1
    (calls / f"call-{number}").touch()
    if number == fail_on_call:
        raise OSError("the worker lost its disk")
    return [RecordedFuture()], Cohort.load(cohort_dir)


def _same(report: dict, other: dict) -> bool:
    return json.dumps(report, sort_keys=True) == json.dumps(other, sort_keys=True)


@pytest.fixture(scope="module")
def saved_engine_cohort(engine_cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sharded_cf") / "cohort"
    engine_cohort.save(out)
    return out


def test_sharded_benchmark_merges_to_the_unsharded_report_and_reuses_finished_parts(tmp_path: Path, engine_cohort: Cohort,
                                                                                     saved_engine_cohort: Path) -> None:
    strategies = [load_strategy(name) for name in CONTRAST]
    whole = cf_benchmark(engine_cohort, [RecordedFuture()], strategies, **BENCHMARK)
    calls, parts = tmp_path / "calls", tmp_path / "parts"
    source = partial(recorded_source, str(saved_engine_cohort), str(calls))
    sharded = sharded_cf_benchmark(source, engine_cohort, strategies, shards=3, parts_dir=parts, split=None, workers=1,
                                   out=tmp_path / "out", **BENCHMARK)
    assert _same(sharded, whole) and len(list(calls.iterdir())) == 3
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == json.loads(json.dumps(whole))

    shutil.rmtree(parts / "part-0001")
    again = sharded_cf_benchmark(source, engine_cohort, strategies, shards=3, parts_dir=parts, split=None, workers=1, **BENCHMARK)
    assert _same(again, whole) and len(list(calls.iterdir())) == 4  # only the missing part was computed

    with pytest.raises(ValueError, match=r"holds the parts of another run \(its cases, seed differ\)"):
        sharded_cf_benchmark(source, engine_cohort, strategies, shards=3, parts_dir=parts, split=None, workers=1,
                             **{**BENCHMARK, "seed": 4})
    with pytest.raises(ValueError, match=r"shards must lie in 1\.\.6"):
        sharded_cf_benchmark(source, engine_cohort, strategies, shards=7, parts_dir=tmp_path / "too_many", split=None, **BENCHMARK)
    assert not (tmp_path / "too_many").exists()


def test_a_failed_shard_keeps_the_finished_parts_and_the_trial_merges_exactly(tmp_path: Path, engine_cohort: Cohort,
                                                                               saved_engine_cohort: Path) -> None:
    arms = [load_strategy(name) for name in CONTRAST]
    cases = pl.DataFrame({"stay_id": [3, 5, 8, 13, 21], "decision_hour": [6, 6, 8, 8, 10]}, schema={"stay_id": pl.Int64, "decision_hour": pl.Int32})
    whole = virtual_trial(RecordedFuture(), engine_cohort, cases, *arms, horizon=24, n_samples=1, seed=2, n_bootstrap=200)
    calls, parts = tmp_path / "calls", tmp_path / "parts"
    flaky = partial(recorded_source, str(saved_engine_cohort), str(calls), 2)
    options = {"shards": 3, "parts_dir": parts, "horizon": 24, "n_samples": 1, "seed": 2, "n_bootstrap": 200, "workers": 1}
    with pytest.raises(ShardsFailed, match="1 of 3 shards failed .*OSError: the worker lost its disk.* 2 finished parts are kept"):
        sharded_virtual_trial(flaky, cases, *arms, **options)
    assert missing_shards(parts, 3) == [1]
    merged = sharded_virtual_trial(flaky, cases, *arms, **options)
    assert len(list(calls.iterdir())) == 4  # three shards, one of them twice
    assert merged.effects.equals(whole.effects) and merged.cases.equals(whole.cases)
    for mine, theirs in zip([*merged.arm_a, *merged.arm_b], [*whole.arm_a, *whole.arm_b], strict=True):
        assert (mine.stay_id, mine.decision_hour, mine.strategy, mine.n_samples) == (theirs.stay_id, theirs.decision_hour,
                                                                                     theirs.strategy, theirs.n_samples)
        for table in ("bands", "sample_outcomes", "scores", "events"):
            assert getattr(mine, table).equals(getattr(theirs, table)), table
    merged.write(tmp_path / "trial")
    assert pl.read_parquet(tmp_path / "trial" / "stay_outcomes.parquet").height == 2 * cases.height


@pytest.mark.slow
def test_sharded_benchmark_on_local_ray(tmp_path: Path, engine_cohort: Cohort, saved_engine_cohort: Path) -> None:
    ray = pytest.importorskip("ray", reason="the optional extra organsim[distributed] (ray) is not installed")
    strategies = [load_strategy(name) for name in CONTRAST]
    whole = cf_benchmark(engine_cohort, [RecordedFuture()], strategies, **BENCHMARK)
    cohort_dir = str(saved_engine_cohort)

    def source() -> tuple[list[Simulator], Cohort]:  # a closure: Ray ships it by value to its workers
        return [RecordedFuture()], Cohort.load(cohort_dir)

    sharded = sharded_cf_benchmark(source, engine_cohort, strategies, shards=2, parts_dir=tmp_path / "parts", split=None,
                                   ray_address="local", workers=2, **BENCHMARK)
    assert _same(sharded, whole) and missing_shards(tmp_path / "parts", 2) == []
    assert not ray.is_initialized()


@pytest.mark.slow
def test_the_twin_in_one_shard_is_the_unsharded_trial_and_deterministic_per_layout(tmp_path: Path, micro_twin_model: Path,
                                                                                    twin_cohort_dir: Path) -> None:
    source = TwinSource(str(micro_twin_model), str(twin_cohort_dir), str(tmp_path / "behaviour"), device="cpu")
    simulator, cohort = source.load()  # fits and saves the behaviour policy the shards then load
    arms = [load_strategy("early_norepinephrine"), load_strategy("late_norepinephrine")]
    cases = cohort.subset(split="test").stays.select("stay_id", pl.lit(8, dtype=pl.Int32).alias("decision_hour")).head(2)
    options = {"horizon": 6, "n_samples": 2, "seed": 1, "n_bootstrap": 100}
    whole = virtual_trial(simulator, cohort, cases, *arms, **options)
    one = sharded_virtual_trial(source, cases, *arms, shards=1, parts_dir=tmp_path / "one", workers=1, **options)
    assert one.effects.equals(whole.effects)
    two = sharded_virtual_trial(source, cases, *arms, shards=2, parts_dir=tmp_path / "two", workers=1, **options)
    shutil.rmtree(tmp_path / "two" / "part-0000")
    again = sharded_virtual_trial(source, cases, *arms, shards=2, parts_dir=tmp_path / "two", workers=1, **options)
    assert again.effects.equals(two.effects)


@pytest.mark.slow
def test_trial_and_cf_benchmark_commands_in_shards(tmp_path: Path, micro_twin_model: Path, twin_cohort_dir: Path) -> None:
    from typer.testing import CliRunner

    from organsim.cli import app

    runner = CliRunner()
    common = ["--model", str(micro_twin_model), "--cohort", str(twin_cohort_dir), "--device", "cpu", "--behaviour", str(tmp_path / "b")]
    bench = ["cf-benchmark", *common, "--stays", "2", "--decision-hours", "6", "--horizon", "6", "--samples", "1",
             "--strategy", "early_norepinephrine", "--strategy", "late_norepinephrine", "--out", str(tmp_path / "bench")]
    for bad, message in ((["--shards", "0"], "Invalid value for '--shards'"), (["--shards", "3"], "--shards (3) cannot exceed --stays (2)")):
        refused = runner.invoke(app, [*bench, *bad])
        assert refused.exit_code == 2 and message in " ".join(refused.output.split()), refused.output
    assert not (tmp_path / "bench").exists() and not (tmp_path / "bench.parts").exists() and not (tmp_path / "b").exists()

    result = runner.invoke(app, [*bench, "--shards", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "bench" / "metrics.json").read_text())
    assert sorted(metrics["simulators"]) == ["twin", "twin_no_overlap_adjustment", "twin_treatment_blind"]
    assert len(metrics["cases"]) == 2 and metrics["simulators"]["twin"]["n_cases"] == 2
    flat = " ".join(result.output.split())
    assert "Ran 2 shards on local processes" in flat and "Wrote" in flat and not (tmp_path / "bench.parts").exists()

    trial = runner.invoke(app, ["trial", *common, "--strategy", "early_norepinephrine", "--strategy", "late_norepinephrine", "--at", "8",
                                "--stays", "2", "--samples", "1", "--horizon", "6", "--shards", "2", "--workers", "1",
                                "--parts", str(tmp_path / "trial_parts"), "--out", str(tmp_path / "trial")])
    assert trial.exit_code == 0, trial.output
    assert json.loads((tmp_path / "trial" / "trial.json").read_text())["n_cases"] == 2
    assert pl.read_parquet(tmp_path / "trial" / "stay_outcomes.parquet").height == 4 and not (tmp_path / "trial_parts").exists()
