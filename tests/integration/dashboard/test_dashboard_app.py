"""Every page of the dashboard driven by Streamlit's AppTest on a tiny engine cohort: filter and open
a patient, read the patient view, run a what-if and read its outcome table, write a strategy (and
get inline messages for mistakes), generate and download a synthetic cohort, read a report."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from organsim.data import Cohort

APP = Path(__file__).resolve().parents[3] / "dashboards" / "app.py"
TIMEOUT_S = 300  # a loaded 2-core machine; nothing asserts on time


@pytest.fixture
def app(engine_cohort_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The dashboard on the tiny cohort (no demo outputs, no model, no report), first page run."""
    monkeypatch.setenv("ORGANSIM_COHORT", str(engine_cohort_dir))
    monkeypatch.setenv("ORGANSIM_DEMO_OUT", str(tmp_path / "no_demo"))
    monkeypatch.delenv("ORGANSIM_MODEL", raising=False)
    monkeypatch.delenv("ORGANSIM_REPORT", raising=False)
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()


def _texts(elements) -> list[str]:
    return [str(element.value) for element in elements]


def _assert_clean(at: AppTest) -> None:
    assert not at.exception, _texts(at.exception)


def test_browser_summarises_filters_and_opens_a_patient(app: AppTest, engine_cohort: Cohort) -> None:
    _assert_clean(app)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["stays"] == str(engine_cohort.stays.height)
    septic = int(engine_cohort.stays["sepsis"].sum())
    app.radio(key="filter_sepsis").set_value("septic").run()
    assert f"{septic} of {engine_cohort.stays.height} stays match" in _texts(app.caption)
    app.text_input(key="filter_ids").input("3, x7").run()
    assert any("'x7' is not a stay id" in text for text in _texts(app.error))
    app.text_input(key="filter_ids").input("999").run()
    assert any("No stay with id 999" in text for text in _texts(app.warning))
    app.text_input(key="filter_ids").input("").run()
    app.radio(key="filter_sepsis").set_value("all").run()
    app.selectbox(key="browser_pick").set_value(3).run()
    app.button(key="open_patient").click().run()
    _assert_clean(app)
    assert app.title[0].value == "Patient view"
    assert app.session_state["stay_id"] == 3
    assert app.selectbox(key="patient_pick").value == 3


def test_patient_view_shows_the_chosen_stay(app: AppTest, engine_cohort_dir: Path) -> None:
    app.switch_page("views/patient.py").run()
    app.selectbox(key="patient_pick").set_value(2).run()
    _assert_clean(app)
    from clinic.records import load_stay_table  # the same cached table the page reads

    row = load_stay_table(str(engine_cohort_dir), (engine_cohort_dir / "cohort.json").stat().st_mtime).filter(
        pl.col("stay_id") == 2).row(0, named=True)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["max SOFA"] == str(row["sofa_max"])
    assert metrics["APACHE II at 24 h"] == str(row["apache_ii_24h"])
    assert metrics["critical-event episodes"] == str(row["n_events"])
    assert len(app.get("plotly_chart")) == 2
    assert app.session_state["stay_id"] == 2


def test_whatif_runs_and_reports_outcomes(app: AppTest) -> None:
    app.switch_page("views/whatif.py").run()
    _assert_clean(app)
    assert app.multiselect(key="whatif_strategies").value == ["observed_care", "early_norepinephrine"]
    app.number_input(key="horizon").set_value(30).run()
    assert any("choose at most 19 hours" in text for text in _texts(app.error))
    assert app.button(key="run_whatif").disabled
    app.number_input(key="horizon").set_value(19).run()
    app.button(key="run_whatif").click().run()
    _assert_clean(app)
    table = app.dataframe[0].value  # the page's one table
    assert list(table.columns) == ["outcome", "observed_care", "early_norepinephrine"]
    assert "P(death)" in table["outcome"].tolist()
    assert all(cell.endswith("%") for cell in table.loc[table["outcome"].str.startswith("P("), "observed_care"])
    verdicts = _texts(app.success) + _texts(app.warning)
    assert sum("observed_care" in text for text in verdicts) == 1 and sum("early_norepinephrine" in text for text in verdicts) == 1
    assert any("no organ agents" in text for text in _texts(app.info))
    assert len(app.get("plotly_chart")) == 3  # trajectories, event probabilities and onsets (19 h: no 24-hour scores)


def test_strategies_written_in_the_form_or_yaml_are_checked_inline(app: AppTest) -> None:
    app.switch_page("views/whatif.py").run()
    app.number_input(key="nor_max").set_value(0.01)
    app.button(key="add_form").click().run()
    _assert_clean(app)
    assert any("maximum 0.01 is below start_dose 0.05" in text for text in _texts(app.error))
    app.text_input(key="form_name").input("my_bundle")
    app.number_input(key="nor_max").set_value(0.5)
    app.checkbox(key="use_abx").check()
    app.button(key="add_form").click().run()
    assert "my_bundle" in app.multiselect(key="whatif_strategies").value
    assert not any("maximum" in text for text in _texts(app.error))
    app.text_area(key="strategy_yaml").input("name: broken\n  treatments: [").run()
    app.button(key="add_yaml").click().run()
    assert any("not valid YAML" in text and "row 2" in text for text in _texts(app.error))
    _assert_clean(app)


def test_synthetic_page_generates_and_offers_every_export(app: AppTest, tmp_path: Path) -> None:
    app.switch_page("views/synthetic.py").run()
    _assert_clean(app)
    app.text_input(key="report_dir").input(str(tmp_path / "nowhere")).run()
    assert any("no metrics.json here" in text for text in _texts(app.error))
    app.number_input(key="gen_stays").set_value(5)
    app.number_input(key="gen_hours").set_value(12)
    app.button(key="generate").click().run()
    _assert_clean(app)
    assert app.radio(key="generator").options == ["physiology engine"]  # no model given
    assert {m.label: m.value for m in app.metric}["stays"] == "5"
    downloads = app.get("download_button")
    assert [d.proto.label for d in downloads] == ["Parquet (canonical cohort)", "CSV (wide)", "PhysioNet 2019 (.psv per stay)", "MEDS"]


@pytest.mark.slow
def test_whatif_on_the_coordinated_twin_shows_bands_consultations_and_corrections(
        app: AppTest, micro_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGANSIM_MODEL", str(micro_model_dir))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    at.switch_page("views/whatif.py").run()
    _assert_clean(at)
    simulators = at.radio(key="simulator")
    assert simulators.options[0].startswith("coordinated twin") and simulators.value == simulators.options[0]
    at.number_input(key="horizon").set_value(4)
    at.number_input(key="samples").set_value(3)
    at.button(key="run_whatif").click().run()
    _assert_clean(at)
    outcomes = at.dataframe[0].value
    assert list(outcomes.columns) == ["outcome", "observed_care", "early_norepinephrine"]
    assert outcomes.loc[outcomes["outcome"] == "P(death)", "observed_care"].iloc[0].endswith("%")
    consulted = [chart for chart in at.get("plotly_chart") if "systems consulted" in chart.proto.spec]
    assert len(consulted) == 2
    said = " ".join(_texts(at.markdown) + _texts(at.success))
    assert "error-correction agent" in said
    at.radio(key="simulator").set_value(simulators.options[1]).run()
    assert at.number_input(key="samples_fixed").value == 1  # the oracle: one true future
    at.switch_page("views/synthetic.py").run()
    assert at.radio(key="generator").options == ["coordinated twin", "physiology engine"]
    at.number_input(key="gen_stays").set_value(3)
    at.number_input(key="gen_hours").set_value(6)
    at.button(key="generate").click().run()
    _assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["generator"] == "coordinated twin" and metrics["stays"] == "3"
    assert len(at.get("download_button")) == 4


def test_an_unusable_model_is_named_and_the_oracle_still_answers(app: AppTest, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGANSIM_MODEL", str(tmp_path / "no_model"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    at.switch_page("views/whatif.py").run()
    _assert_clean(at)
    assert any("coordinated twin" in text and "no_model" in text for text in _texts(at.warning))
    assert any(text.startswith("Simulator: physiology engine oracle") for text in _texts(at.caption))


@pytest.mark.slow
def test_synthetic_page_shows_a_real_report(app: AppTest, engine_cohort: Cohort, tmp_path: Path) -> None:
    from clinic.synthetic import generate_small_cohort

    from organsim.evaluate import build_synthetic_report, write_synthetic_report

    ids = engine_cohort.stays["stay_id"].to_list()
    report = build_synthetic_report(generate_small_cohort(12, 24, seed=9), engine_cohort.subset(ids[:6]), engine_cohort.subset(ids[6:]))
    write_synthetic_report(report, tmp_path / "report")
    app.switch_page("views/synthetic.py").run()
    app.text_input(key="report_dir").input(str(tmp_path / "report")).run()
    _assert_clean(app)
    checks = app.dataframe[0].value
    assert checks["check"].tolist() == [c["check"] for c in report.metrics["checks"]]
    assert set(checks["verdict"]) <= {"pass", "fail", "not measured"}


def test_a_missing_cohort_gets_a_message_not_a_stack_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORGANSIM_DEMO_OUT", str(tmp_path / "no_demo"))
    monkeypatch.setenv("ORGANSIM_COHORT", str(tmp_path / "absent"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    _assert_clean(at)
    assert any("Cannot read the cohort" in text for text in _texts(at.error))
    monkeypatch.delenv("ORGANSIM_COHORT")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S).run()
    assert any("No cohort to show" in text for text in _texts(at.warning))
