"""Pipeline files: the shipped ones validate; every mistake is an error naming the file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from organsim.tracking import STAGES, PipelineConfigError, load_pipeline
from organsim.tracking.spec import parse_override

PIPELINES = Path(__file__).resolve().parents[3] / "pipelines"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def _error(path: Path, overrides: tuple[str, ...] = ()) -> PipelineConfigError:
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path, overrides)
    return caught.value


def test_demo_pipeline_validates_with_its_references() -> None:
    spec = load_pipeline(PIPELINES / "demo.yaml")
    assert spec.name == "demo" and spec.run_dir == (PIPELINES.parent / "demo_out").resolve()
    assert spec.stage_names == ["generate", "split", "scores", "meds", "from_meds", "counterfactual", "train", "coordinate",
                                "calibrate", "evaluate", "whatif", "cf_benchmark", "synthesize", "report_synthetic"]
    by_name = {s.name: s for s in spec.stages}
    assert by_name["meds"].stage is STAGES["export"] and by_name["meds"].kind == "meds"
    assert by_name["from_meds"].references == {"source_stage": "meds"}
    assert by_name["coordinate"].references == {"model": "train", "cohort": "split"}
    assert by_name["calibrate"].references == {"model": "coordinate", "cohort": "split"}
    assert by_name["evaluate"].references == {"model": "calibrate", "cohort": "split"}
    assert by_name["report_synthetic"].references == {"synthetic": "synthesize", "real": "split"}
    assert by_name["generate"].params.patients == 400


def test_physionet_pipeline_reads_the_source_given_on_the_command_line(tmp_path: Path) -> None:
    archive = tmp_path / "set.tar.gz"
    archive.write_bytes(b"not read by validation")
    spec = load_pipeline(PIPELINES / "physionet2019.yaml", [f"ingest.source={archive}", "train.epochs=1"])
    ingest = spec.stages[spec.index("ingest")]
    assert ingest.external == {"source": archive.resolve()}
    assert spec.stages[spec.index("train")].params.epochs == 1
    assert [s.name for s in spec.stages if "cohort" in s.references] == ["split", "scores", "meds", "train", "coordinate", "calibrate",
                                                                         "evaluate", "synthesize"]


def test_unknown_key_and_bad_value_name_file_line_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: t\nstages:\n  generate:\n    patients: 10\n  train:\n    cohort: generate\n    epochs: 0\n    colour: blue\n")
    error = _error(path)
    assert (error.file, error.line, error.key) == (str(path), 7, "stages.train.epochs")
    text = str(error)
    assert text.startswith(f"{path} line 7, stages.train.epochs: Input should be greater than or equal to 1 (got 0)")
    assert "line 8, stages.train.colour: unknown key; this stage takes cohort, preset, epochs" in text


@pytest.mark.parametrize(
    ("text", "key", "line", "message"),
    [
        ("name: t\nstages:\n  x:\n    stage: fly\n", "stages.x.stage", 4, "unknown stage 'fly'"),
        ("name: t\nstages:\n  evaluate: {model: generate, cohort: generate}\n  generate: {}\n", "stages.evaluate.model", 3,
         "'generate' names no earlier stage (it comes later"),
        ("name: t\nstages:\n  generate: {}\n  evaluate: {model: generate, cohort: generate}\n", "stages.evaluate.model", 4,
         "stage 'generate' writes a cohort; model needs a model"),
        ("name: t\nstages:\n  ingest: {format: physionet2019, source: nowhere.tar.gz}\n", "stages.ingest.source", 3,
         "no such file or directory"),
        ("name: t\nstages:\n  generate: {}\n  ingest: {format: meds, source_stage: generate}\n", "stages.ingest.source_stage", 4,
         "stage 'generate' writes a cohort; source_stage needs a meds"),
        ("name: t\nstages:\n  ingest: {format: meds}\n", "stages.ingest", 3, "give exactly one of source"),
        ("name: t\nstages:\n  generate: {patients: 2, shards: 3}\n", "stages.generate", 3, "shards (3) cannot exceed patients (2)"),
        ("name: t\nstages:\n  generate: {}\n  split: {cohort: generate, fractions: [0.5, 0.5, 0.5]}\n", "stages.split", 4,
         "summing to 1"),
        ("name: t\nstages:\n  generate: {}\n  cf: {stage: counterfactual, cohort: generate, policies: [fly]}\n",
         "stages.cf.policies.0", 4, "Input should be 'clinician', 'none'"),
        ("name: t\nstages: {}\n", "stages", 2, "non-empty mapping"),
        ("name: t\nsteps: {}\nstages: {generate: {}}\n", "steps", 2, "unknown key; a pipeline file has name, description"),
        ("name: two words\nstages: {generate: {}}\n", "name", 1, "name must be a word"),
    ],
)
def test_invalid_pipelines(tmp_path: Path, text: str, key: str, line: int, message: str) -> None:
    error = _error(_write(tmp_path, text))
    assert (error.key, error.line) == (key, line)
    assert message in error.reason


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    error = _error(_write(tmp_path, "name: t\nstages:\n  generate: {patients: 10\n"))
    assert error.line == 4 and "not valid YAML" in str(error)


def test_overrides_apply_and_their_errors_say_so(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: t\nstages:\n  generate: {patients: 10}\n  split: {cohort: generate}\n")
    spec = load_pipeline(path, ["generate.patients=12", "split.fractions=[0.8, 0.1, 0.1]"])
    assert spec.stages[0].params.patients == 12 and spec.stages[1].params.fractions == (0.8, 0.1, 0.1)
    error = _error(path, ("generate.patients=0",))
    assert error.key == "stages.generate.patients (from --set)" and error.line is None
    assert "names no stage; stages: generate, split" in str(_error(path, ("gen.patients=1",)))
    with pytest.raises(ValueError, match="STAGE.KEY=VALUE"):
        parse_override("patients=3")
    assert parse_override("cf.policies=[none, no-fluids]") == ("cf", "policies", ["none", "no-fluids"])


def test_relative_external_paths_are_relative_to_the_pipeline_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hourly.csv").write_text("stay_id,hour\n")
    (tmp_path / "pipelines").mkdir()
    path = tmp_path / "pipelines" / "p.yaml"
    path.write_text("name: t\nrun_dir: ../out\nstages:\n  ingest: {format: table, source: ../data/hourly.csv}\n")
    spec = load_pipeline(path)
    assert spec.stages[0].external["source"] == (tmp_path / "data" / "hourly.csv").resolve()
    assert spec.run_dir == (tmp_path / "out").resolve()


def test_the_demo_run_ends_with_the_dashboard_command_on_its_outputs(tmp_path: Path) -> None:
    from organsim.cli.pipeline import dashboard_command

    command = dashboard_command(load_pipeline(PIPELINES / "demo.yaml"), tmp_path)
    assert command == (f"streamlit run dashboards/app.py -- --cohort {tmp_path / 'split'} --model {tmp_path / 'calibrate'}"
                       f" --report {tmp_path / 'report_synthetic'}")
