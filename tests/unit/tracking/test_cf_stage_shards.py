"""The trial and cf_benchmark stages take the sharding options of their commands, checked before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from organsim.tracking import PipelineConfigError, command_stages, load_pipeline
from organsim.tracking.registry import StageContext

pytestmark = pytest.mark.exclusive  # one rendezvous port or one local cluster at a time (tests/conftest.py)

PIPELINES = Path(__file__).resolve().parents[3] / "pipelines"
TRIAL = """name: t
stages:
  generate:
    patients: 10
  train:
    cohort: generate
  trial:
    model: train
    cohort: generate
    strategies: [early_norepinephrine, late_norepinephrine]
    stays: {stays}
    shards: 3
"""


def test_more_shards_than_cases_is_an_error_naming_the_stage(tmp_path: Path) -> None:
    with pytest.raises(PipelineConfigError, match=r"stages\.cf_benchmark.*shards \(11\) cannot exceed stays \(10\)"):
        load_pipeline(PIPELINES / "demo.yaml", ["cf_benchmark.shards=11"])
    path = tmp_path / "trial.yaml"
    for stays, fits in (("'2'", False), ("'4,9'", False), ("'4,9,12'", True), ("all", True)):
        path.write_text(TRIAL.format(stays=stays))
        if fits:
            assert load_pipeline(path).stages[2].params.shards == 3
        else:
            with pytest.raises(PipelineConfigError, match=r"shards \(3\) cannot exceed the trial's stays \(2\)"):
                load_pipeline(path)


def test_sharding_options_reach_the_command_with_parts_in_the_work_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_pipeline(PIPELINES / "demo.yaml", ["cf_benchmark.shards=2", "cf_benchmark.ray=local", "cf_benchmark.workers=2"])
    stage = spec.stages[spec.index("cf_benchmark")]
    commands: list[list[str]] = []
    monkeypatch.setattr(command_stages, "run_organsim", lambda args, ctx, label: commands.append([str(a) for a in args]))
    ctx = StageContext(out=tmp_path / "out", inputs={"model": tmp_path / "model", "cohort": tmp_path / "cohort"}, work=tmp_path / "work")
    stage.stage.run(stage.params, ctx)
    plain = load_pipeline(PIPELINES / "demo.yaml").stages[spec.index("cf_benchmark")]
    plain.stage.run(plain.params, ctx)
    sharded, unsharded = commands
    at = sharded.index("--shards")
    assert sharded[at:at + 8] == ["--shards", "2", "--ray", "local", "--workers", "2", "--parts", str(tmp_path / "work" / "parts")]
    assert "--shards" not in unsharded and "--parts" not in unsharded
