"""The dashboard's helpers (dashboards/clinic): inputs, stay table and filters, patient records,
figures, written strategies, outcome tables, exports and reports, without Streamlit running."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from clinic.browser import png_spread
from clinic.charts import normalised, patient_figure
from clinic.outcomes import correction_summary, outcome_frame, outcome_table
from clinic.records import cohort_summary, filter_stays, parse_stay_ids, patient_record, stay_table
from clinic.simulators import choose_simulators
from clinic.sources import resolve_sources
from clinic.strategy_form import (
    AntibioticForm,
    FluidForm,
    NorepinephrineForm,
    form_strategy,
    yaml_strategy,
)
from clinic.synthetic import export_archive, generate_small_cohort, read_report
from PIL import Image

from organsim.catalog import SYSTEMS
from organsim.counterfactual import StrategyError, load_strategy, what_if
from organsim.data import Cohort
from organsim.scores import score_cohort
from organsim.utils import DataError


@pytest.fixture(scope="module")
def scores(engine_cohort: Cohort):
    return score_cohort(engine_cohort)


def test_sources_follow_arguments_then_environment_then_demo(tmp_path: Path) -> None:
    demo = tmp_path / "demo_out"
    for stage in ("split", "calibrate"):
        (demo / stage).mkdir(parents=True)
    environ = {"ORGANSIM_DEMO_OUT": str(demo), "ORGANSIM_COHORT": "/env/cohort"}
    found = resolve_sources(["--model", "/arg/model", "--server.port", "1"], environ)
    assert found.cohort == Path("/env/cohort") and found.origin["cohort"] == "ORGANSIM_COHORT"
    assert found.model == Path("/arg/model") and found.origin["model"] == "--model"
    assert found.report is None  # no demo_out/report_synthetic
    demo_only = resolve_sources([], {"ORGANSIM_DEMO_OUT": str(demo)})
    assert demo_only.cohort == demo / "split" and demo_only.model == demo / "calibrate" and demo_only.origin["cohort"] == "demo"


def test_stay_table_matches_the_scores(engine_cohort: Cohort, scores) -> None:
    table = stay_table(engine_cohort, scores)
    assert table["stay_id"].to_list() == sorted(engine_cohort.stays["stay_id"].to_list())
    worst = scores.hourly.group_by("stay_id").agg(pl.col("sofa").max()).sort("stay_id")
    assert table["sofa_max"].to_list() == worst["sofa"].to_list()
    first_stay = table.row(0, named=True)
    expected_events = sorted(set(scores.events.filter(pl.col("stay_id") == first_stay["stay_id"])["event"].to_list()))
    assert first_stay["events"] == expected_events
    assert set(table["sex"].drop_nulls().to_list()) <= {"F", "M"}


def test_filters_keep_only_matching_stays(engine_cohort: Cohort, scores) -> None:
    table = stay_table(engine_cohort, scores)
    septic = filter_stays(table, sepsis="septic")
    assert septic.height == int(table["sepsis"].sum()) and septic["sepsis"].all()
    assert filter_stays(table, sepsis="not septic").height == table.height - septic.height
    event = table["events"].explode().drop_nulls()[0]
    with_event = filter_stays(table, events=[event])
    assert with_event.height >= 1 and all(event in codes for codes in with_event["events"].to_list())
    narrow = filter_stays(table, sofa_range=(3, 5))
    assert narrow["sofa_max"].is_between(3, 5).all()
    assert filter_stays(table, stay_ids=[2, 3])["stay_id"].to_list() == [2, 3]
    with pytest.raises(ValueError, match="low to high"):
        filter_stays(table, sofa_range=(6, 2))
    with pytest.raises(ValueError, match="sepsis must be one of"):
        filter_stays(table, sepsis="maybe")


def test_summary_counts_stays_and_shares(engine_cohort: Cohort, scores) -> None:
    table = stay_table(engine_cohort, scores)
    summary = cohort_summary(table)
    assert summary["stays"] == engine_cohort.stays.height
    assert summary["hours"] == engine_cohort.hourly.height
    assert summary["septic"] == pytest.approx(engine_cohort.stays["sepsis"].mean())
    assert cohort_summary(table.head(0))["septic"] is None


def test_typed_stay_ids_are_parsed_or_named_as_wrong() -> None:
    assert parse_stay_ids(" 12, 40 41 ") == [12, 40, 41]
    assert parse_stay_ids("  ") is None
    with pytest.raises(ValueError, match="'x7' is not a stay id"):
        parse_stay_ids("3, x7")


def test_patient_record_carries_measurements_forward(engine_cohort: Cohort, scores) -> None:
    record = patient_record(engine_cohort, scores, 1)
    measured = record.observed["map"].is_not_null()
    assert (record.carried["map"].filter(measured) == record.observed["map"].filter(measured).cast(pl.Float64)).all()
    assert record.carried["map"].null_count() <= record.observed["map"].null_count()
    score, hour, points = record.apache_ii_24h()
    first_day = record.scores.filter(pl.col("hour") <= 24)
    assert hour == 24 and score == first_day["apache_ii_24h"][-1]
    assert sum(points.values()) == pytest.approx(score)  # worst points of each component + age + chronic
    assert score >= first_day["apache_ii"].max()
    with pytest.raises(KeyError, match="stay 9999"):
        patient_record(engine_cohort, scores, 9999)


def test_patient_figure_has_nine_system_panels_and_only_measured_variables(engine_cohort: Cohort, scores, catalog) -> None:
    record = patient_record(engine_cohort, scores, 1)
    figure = patient_figure(record, catalog)
    titles = [a.text for a in figure.layout.annotations]
    assert titles[: len(SYSTEMS)] == list(SYSTEMS) and titles[len(SYSTEMS):len(SYSTEMS) + 2] == ["treatments", "critical events"]
    measured_traces = {t.name.split(" (")[0] for t in figure.data if t.type == "scatter" and t.mode == "markers"}
    never_measured = {c for c in catalog.variable_codes if record.observed[c].null_count() == record.observed.height}
    assert measured_traces and not measured_traces & never_measured
    assert normalised(np.array([65.0, 105.0]), (65.0, 105.0)).tolist() == [0.0, 1.0]


def test_form_and_yaml_strategies_are_checked(catalog) -> None:
    strategy = form_strategy("fast_bundle", "norepinephrine, fluids and antibiotics", catalog=catalog,
                             norepinephrine=NorepinephrineForm(), fluids=FluidForm(), antibiotic=AntibioticForm(first_hour=1))
    assert strategy.governed == ("norepinephrine", "iv_fluid_ml", "antibiotic")
    with pytest.raises(StrategyError, match="maximum 0.01 is below start_dose 0.05") as error:
        form_strategy("bad", "x", catalog=catalog, norepinephrine=NorepinephrineForm(maximum=0.01))
    assert error.value.column == "treatments.norepinephrine.rules[0].maximum"
    with pytest.raises(StrategyError, match="at least one treatment"):
        form_strategy("empty", "x", catalog=catalog)
    text = "name: late\ndescription: antibiotics late\ntreatments:\n  antibiotic:\n    rules:\n      - {kind: schedule, at_hours: [4], dose: 2}\n"
    with pytest.raises(StrategyError, match=r"given \(1\) or not \(0\); got 2") as error:
        yaml_strategy(text, catalog=catalog)
    assert error.value.row == 6
    with pytest.raises(StrategyError, match="not valid YAML") as error:
        yaml_strategy("name: a\n  b: [", catalog=catalog)
    assert error.value.row == 2
    assert yaml_strategy(text.replace("dose: 2", "dose: 1"), catalog=catalog).name == "late"


def test_outcome_table_has_one_column_per_strategy(engine_cohort: Cohort, catalog) -> None:
    choice, = choose_simulators(engine_cohort, None)
    assert choice.kind == "oracle" and choice.fixed_samples == 1 and choice.max_horizon(6, 72) == 19
    strategies = [load_strategy("observed_care"), load_strategy("early_norepinephrine")]
    result = what_if(choice.simulator, engine_cohort, 1, 6, strategies, horizon=19, n_samples=1)
    labels = {e.code: e.label for e in catalog.events}
    long = outcome_frame(result, labels)
    assert set(long["strategy"]) == {"observed_care", "early_norepinephrine"}
    assert long.filter(pl.col("kind") == "probability")["mean"].is_between(0, 1).all()
    table = outcome_table(result, labels)
    assert table.columns == ["outcome", "observed_care", "early_norepinephrine"]
    assert "SOFA at 24 h" not in table["outcome"].to_list()  # 19 hours simulated: no 24-hour score
    death = table.filter(pl.col("outcome") == "P(death)").row(0, named=True)
    assert death["observed_care"].endswith("%")


def test_simulators_say_why_they_cannot_be_used(engine_cohort: Cohort, tmp_path: Path) -> None:
    foreign = Cohort.from_frames(engine_cohort.stays, engine_cohort.hourly, engine_cohort.treatments, source="csv")
    twin, oracle = choose_simulators(foreign, tmp_path / "no_model")
    assert (twin.kind, oracle.kind) == ("twin", "oracle")
    assert twin.simulator is None and str(tmp_path / "no_model") in twin.reason
    assert oracle.simulator is None and "not from organsim's physiology engine" in oracle.reason


def test_correction_summary_counts_changes_per_variable_and_rule() -> None:
    corrections = pl.DataFrame({"sample": [0, 0, 1, 1], "hour": [7, 8, 7, 9], "variable": ["map", "map", "ph", "map"],
                                "rule": ["map_between", "map_between", "resampled", "map_between"],
                                "before": [120.0, 110.0, 7.9, 100.0], "after": [90.0, 80.0, 7.4, 70.0]})
    summary = correction_summary(corrections, n_samples=2, horizon=10)
    assert summary.drop("share_of_hours").to_dicts() == [
        {"variable": "map", "rule": "map_between", "changes": 3, "median_before": 110.0, "median_after": 80.0},
        {"variable": "ph", "rule": "resampled", "changes": 1, "median_before": 7.9, "median_after": 7.4},
    ]
    assert summary["share_of_hours"].to_list() == pytest.approx([3 / 20, 1 / 20])


def test_exports_are_zipped_deterministically() -> None:
    cohort = generate_small_cohort(4, 8, seed=1)
    for format, expected in (("parquet", "cohort.json"), ("csv", "hourly.csv"), ("psv", "export.json"), ("meds", "dataset.json")):
        archive = export_archive(cohort, format)
        assert archive == export_archive(cohort, format)
        names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
        assert any(name.endswith(expected) for name in names), (format, names)
    assert sum(n.endswith(".psv") for n in zipfile.ZipFile(io.BytesIO(export_archive(cohort, "psv"))).namelist()) == 4
    with pytest.raises(ValueError, match="between 1 and"):
        generate_small_cohort(0, 8, seed=1)


def test_a_report_directory_must_hold_both_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no metrics.json here"):
        read_report(tmp_path)
    (tmp_path / "metrics.json").write_text("{\n  'checks': []\n}", encoding="utf-8")
    (tmp_path / "report.html").write_text("<html></html>", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON") as error:
        read_report(tmp_path)
    assert error.value.row == 2
    (tmp_path / "metrics.json").write_text(json.dumps({"checks": []}), encoding="utf-8")
    assert read_report(tmp_path).metrics == {"checks": []}


def test_png_spread_tells_a_blank_image_from_a_chart() -> None:
    def png(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    blank = np.full((40, 60), 255)
    chart = blank.copy()
    chart[10:30, 5:55:4] = 30
    assert png_spread(png(blank)) == (0.0, 0.0)
    spread, inked = png_spread(png(chart))
    assert spread > 20 and 0.05 < inked < 0.5
