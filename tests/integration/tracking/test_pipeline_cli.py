"""`organsim pipeline run|check|stages` on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from organsim.cli import app

RUNNER = CliRunner()
PIPELINE = """name: cli
stages:
  generate: {patients: 12, hours: 12, seed: 1}
  split: {cohort: generate}
  scores: {cohort: split}
"""


def _flat(output: str) -> str:
    return " ".join(output.split())  # rich wraps long lines at the terminal width


@pytest.mark.slow
def test_pipeline_run_skips_on_the_second_call_and_prints_where_things_are(tmp_path: Path) -> None:
    path = tmp_path / "cli.yaml"
    path.write_text(PIPELINE)
    run_dir = tmp_path / "out"
    first = RUNNER.invoke(app, ["pipeline", "run", str(path), "--run-dir", str(run_dir)])
    assert first.exit_code == 0, first.output
    text = _flat(first.output)
    assert "run generate (generate): first run" in text and "done scores" in text
    assert f"mlflow ui --backend-store-uri sqlite:///{run_dir.resolve() / 'mlflow.db'}" in text
    assert (run_dir / "scores" / "scores.parquet").is_file() and (run_dir / "pipeline.json").is_file()

    second = RUNNER.invoke(app, ["pipeline", "run", str(path), "--run-dir", str(run_dir)])
    assert second.exit_code == 0, second.output
    assert _flat(second.output).count("skip ") == 3

    only = RUNNER.invoke(app, ["pipeline", "run", str(path), "--run-dir", str(run_dir), "--only", "scores",
                               "--set", "scores.window_hours=12"])
    assert only.exit_code == 0, only.output
    assert "run scores (scores): chosen with --from/--only" in _flat(only.output) and "skip " not in _flat(only.output)

    checked = RUNNER.invoke(app, ["pipeline", "check", str(path), "--run-dir", str(run_dir)])
    assert checked.exit_code == 0 and "pipeline cli (3 stages): valid" in checked.output and "done" in checked.output


def test_pipeline_errors_are_one_message_naming_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nstages:\n  generate: {patients: 0}\n")
    for command in (["pipeline", "check", str(path)], ["pipeline", "run", str(path), "--run-dir", str(tmp_path / "out")]):
        result = RUNNER.invoke(app, command)
        assert result.exit_code == 2
        assert f"error: {path} line 3, stages.generate.patients: Input should be greater than or equal to 1 (got 0)" in _flat(result.output)
    assert not (tmp_path / "out").exists()  # nothing runs before every stage is valid
    unknown = RUNNER.invoke(app, ["pipeline", "run", str(path), "--only", "x", "--set", "generate.patients=2"])
    assert unknown.exit_code == 2 and "has no stage 'x'; its stages: generate" in _flat(unknown.output)


def test_pipeline_stages_lists_stages_and_their_parameters() -> None:
    listed = RUNNER.invoke(app, ["pipeline", "stages"])
    assert listed.exit_code == 0
    for name in ("generate", "ingest", "split", "scores", "export", "counterfactual", "train", "evaluate"):
        assert name in listed.output
    train = RUNNER.invoke(app, ["pipeline", "stages", "train"])
    assert train.exit_code == 0 and "processes" in train.output and "required" in train.output
    assert RUNNER.invoke(app, ["pipeline", "stages", "fly"]).exit_code == 2
