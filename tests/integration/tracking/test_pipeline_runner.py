"""The runner: unchanged stages are skipped, interrupted runs resume, --from/--only, MLflow read back."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest
from mlflow import MlflowClient
from toy_stages import Toy, ToySteps

from organsim.tracking import STAGES, load_pipeline, read_state, run_pipeline
from organsim.utils.errors import OrgansimError


@pytest.fixture(autouse=True)
def toy_stages():
    STAGES["toy"], STAGES["toy_steps"] = Toy(), ToySteps()
    yield
    del STAGES["toy"], STAGES["toy_steps"]


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    """One SQLite MLflow store for the module (creating its schema takes seconds), given as a server would be."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def tracking_env(monkeypatch, tracking_uri: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)


def _pipeline(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    log = tmp_path / "calls.log"
    path.write_text(f"name: {name}\nrun_dir: run\nstages:\n" + body.replace("LOG", str(log)).replace("TMP", str(tmp_path)))
    return path


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().split() if log.exists() else []


def _statuses(result) -> dict[str, str]:
    return {s.name: s.status for s in result.stages}


CHAIN = """
  a: {stage: toy, label: a, log: LOG, add: 1}
  b: {stage: toy, label: b, log: LOG, add: 10, upstream: a}
  c: {stage: toy, label: c, log: LOG, add: 100}
"""


@pytest.mark.slow
def test_unchanged_stages_are_skipped_and_changes_rerun_what_depends_on_them(tmp_path: Path, tracking_uri: str) -> None:
    path = _pipeline(tmp_path, "chain", CHAIN)
    run_dir = tmp_path / "run"
    first = run_pipeline(load_pipeline(path))
    assert first.tracking_uri == tracking_uri  # $MLFLOW_TRACKING_URI wins over the local default
    assert _statuses(first) == {"a": "ran", "b": "ran", "c": "ran"} and _calls(tmp_path) == ["a#1", "b#1", "c#1"]
    assert [(run_dir / s / "value.txt").read_text() for s in "abc"] == ["1", "11", "100"]

    second = run_pipeline(load_pipeline(path))
    assert _statuses(second) == {"a": "skipped", "b": "skipped", "c": "skipped"} and len(_calls(tmp_path)) == 3

    third = run_pipeline(load_pipeline(path, ["a.add=2"]))
    assert _statuses(third) == {"a": "ran", "b": "ran", "c": "skipped"}
    assert {s.name: s.reason for s in third.stages if s.status == "ran"} == {"a": "parameters changed", "b": "inputs changed"}
    assert (run_dir / "b" / "value.txt").read_text() == "12"

    (run_dir / "c" / "value.txt").write_text("7")
    (run_dir / "a" / "value.txt").unlink()
    fourth = run_pipeline(load_pipeline(path, ["a.add=2"]))
    assert {s.name: (s.status, s.reason) for s in fourth.stages} == {
        "a": ("ran", "its output changed on disk"), "b": ("skipped", "unchanged"), "c": ("ran", "its output changed on disk")}
    assert (run_dir / "c" / "value.txt").read_text() == "100"

    client = MlflowClient(tracking_uri)
    parents = client.search_runs([first.experiment_id], "tags.`mlflow.parentRunId` IS NULL", order_by=["start_time ASC"])
    assert [p.info.run_id for p in parents] == [r.parent_run_id for r in (first, second, third, fourth)]
    assert {a.path for a in client.list_artifacts(first.parent_run_id)} == {"chain.yaml", "pipeline.json"}
    assert parents[0].data.params["stages"] == '["a","b","c"]'
    for result in (first, second):
        children = client.search_runs([first.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
        assert sorted(r.info.run_name for r in children) == ["a", "b", "c"]
        for run in children:
            assert run.info.status == "FINISHED"
            assert run.data.params["stage"] == "toy" and run.data.params["label"] == run.info.run_name
            expected = {"a": 1.0, "b": 11.0, "c": 100.0}[run.info.run_name]
            assert run.data.metrics["value"] == expected
            assert [m.value for m in sorted(client.get_metric_history(run.info.run_id, "progress"), key=lambda m: m.step)] == [expected / 2, expected]
            artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
            if result is first:
                assert run.data.tags["organsim.status"] == "ran" and artifacts == ["value.txt"]
                local = client.download_artifacts(run.info.run_id, "value.txt", str(tmp_path / run.info.run_name))
                assert Path(local).read_text() == str(int(expected))
            else:  # reused outputs: same figures, and the run that produced them
                producer = next(s.mlflow_run_id for s in first.stages if s.name == run.info.run_name)
                assert run.data.tags["organsim.status"] == "skipped" and artifacts == []
                assert run.data.tags["organsim.produced_by"] == producer


def test_an_interrupted_run_resumes_and_reopens_its_mlflow_run(tmp_path: Path, tracking_uri: str) -> None:
    path = _pipeline(tmp_path, "resume", """
  a: {stage: toy, label: a, log: LOG, add: 1}
  s: {stage: toy_steps, label: s, log: LOG, add: 10, upstream: a, fail_flag: TMP/fail}
  c: {stage: toy, label: c, log: LOG, add: 100, upstream: s, interrupt_flag: TMP/interrupt}
""")
    run_dir = tmp_path / "run"
    (tmp_path / "fail").touch()
    with pytest.raises(RuntimeError, match="s failed on purpose"):
        run_pipeline(load_pipeline(path))
    state = read_state(run_dir)
    assert state["stages"]["a"]["status"] == "done" and state["stages"]["s"]["status"] == "failed"
    assert "RuntimeError: s failed on purpose" in state["stages"]["s"]["error"] and "c" not in state["stages"]
    assert (run_dir / "s" / "step-1.json").is_file()  # a resumable stage keeps its progress
    parent = state["mlflow"]["parent_run_id"]
    client = MlflowClient(tracking_uri)
    assert client.get_run(parent).info.status == "FAILED"
    assert client.get_run(state["stages"]["s"]["mlflow_run_id"]).info.status == "FAILED"

    (tmp_path / "fail").unlink()
    (tmp_path / "interrupt").touch()
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(load_pipeline(path))
    state = read_state(run_dir)
    assert state["stages"]["s"]["status"] == "done" and state["stages"]["c"]["status"] == "interrupted"
    assert state["mlflow"]["parent_run_id"] == parent and client.get_run(parent).info.status == "KILLED"
    assert not (run_dir / "c").exists() and not list(run_dir.glob(".c.*"))  # nothing half-written
    assert (run_dir / ".work" / "c" / "attempts").is_file()  # scratch (e.g. finished shards) survives the interrupt

    (tmp_path / "interrupt").unlink()
    result = run_pipeline(load_pipeline(path))
    assert _statuses(result) == {"a": "skipped", "s": "skipped", "c": "ran"}
    assert _calls(tmp_path) == ["a#1", "s:fresh", "s:resume", "c#1", "c#2"]
    assert not (run_dir / ".work" / "c").exists()  # and is removed once the stage is done
    assert (run_dir / "c" / "value.txt").read_text() == "111"
    assert result.parent_run_id == parent and client.get_run(parent).info.status == "FINISHED"
    children = client.search_runs([result.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted((r.info.run_name, r.info.status) for r in children) == [
        ("a", "FINISHED"), ("a", "FINISHED"), ("a", "FINISHED"), ("c", "FINISHED"), ("c", "KILLED"),
        ("s", "FAILED"), ("s", "FINISHED"), ("s", "FINISHED")]
    assert read_state(run_dir)["mlflow"]["finished"] is True


def test_from_and_only_run_chosen_stages_and_need_earlier_outputs(tmp_path: Path) -> None:
    path = _pipeline(tmp_path, "select", CHAIN)
    with pytest.raises(OrgansimError, match="reads the output of 'a', which has not run"):
        run_pipeline(load_pipeline(path), only="b")
    with pytest.raises(ValueError, match="not both"):
        run_pipeline(load_pipeline(path), only="b", from_stage="a")
    with pytest.raises(KeyError, match="no stage 'z'; its stages: a, b, c"):
        run_pipeline(load_pipeline(path), only="z")
    run_pipeline(load_pipeline(path))
    only = run_pipeline(load_pipeline(path), only="b")
    assert _statuses(only) == {"b": "ran"} and only.stages[0].reason == "chosen with --from/--only"
    from_b = run_pipeline(load_pipeline(path), from_stage="b")
    assert _statuses(from_b) == {"b": "ran", "c": "ran"}
    assert _calls(tmp_path) == ["a#1", "b#1", "c#1", "b#1", "b#1", "c#1"]


def test_a_run_directory_in_use_is_refused(tmp_path: Path) -> None:
    path = _pipeline(tmp_path, "locked", CHAIN)
    (tmp_path / "run").mkdir()
    with (tmp_path / "run" / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(OrgansimError, match="another pipeline run is using"):
            run_pipeline(load_pipeline(path))
    other = _pipeline(tmp_path, "other", CHAIN)
    run_pipeline(load_pipeline(path))
    with pytest.raises(OrgansimError, match="holds a run of pipeline 'locked', not 'other'"):
        run_pipeline(load_pipeline(other))
