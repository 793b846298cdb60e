"""Synthetic cohorts: read a report of ``organsim report-synthetic``, generate a small cohort and
download it in each export format."""

from __future__ import annotations

import polars as pl
import streamlit as st
import streamlit.components.v1 as components
from clinic.pagekit import sources
from clinic.records import cohort_version
from clinic.simulators import SimulatorChoice, load_simulators
from clinic.synthetic import (
    EXPORT_LABELS,
    MAX_GENERATED_HOURS,
    MAX_GENERATED_STAYS,
    export_archive,
    generate_small_cohort,
    generate_with_twin,
    read_report,
)

from organsim.data import Cohort
from organsim.data.export import FORMATS
from organsim.utils import OrgansimError

VERDICTS = {True: "pass", False: "fail", None: "not measured"}


ENGINE, TWIN = "physiology engine", "coordinated twin"
GENERATED_KEY = "generated_cohorts"


@st.cache_data(show_spinner=False, max_entries=16)
def generated_archive(setting: tuple, format: str, _cohort: Cohort) -> bytes:
    """The zip archive of the cohort generated with ``setting`` in ``format``, once per setting."""
    return export_archive(_cohort, format)


def twin_generator() -> tuple[SimulatorChoice | None, str | None]:
    """The coordinated twin of the dashboard's model and cohort, or why there is none."""
    inputs = sources()
    if inputs.cohort is None or inputs.model is None:
        return None, "it needs a trained model and its cohort (--model DIR --cohort DIR)"
    path = str(inputs.cohort)
    try:
        choices = load_simulators(path, cohort_version(path), str(inputs.model))
    except (OrgansimError, OSError, ValueError) as exc:
        return None, f"the cohort in {path} cannot be read: {exc}"
    twin = next(c for c in choices if c.kind == "twin")
    return (twin, None) if twin.simulator is not None else (None, twin.reason)


st.title("Synthetic cohorts")
report_tab, generate_tab = st.tabs(["Report", "Generate and download"])

with report_tab:
    default = sources().report
    typed = st.text_input("Report directory (written by `organsim report-synthetic`)", value=str(default) if default else "",
                          key="report_dir")
    if not typed.strip():
        st.info("Give a report directory: `organsim report-synthetic --synthetic DIR --real-train DIR --real-test DIR --out DIR` "
                "writes one (metrics.json and report.html).")
    else:
        try:
            report = read_report(typed.strip())
        except OrgansimError as exc:
            st.error(str(exc))
        else:
            checks = pl.DataFrame([{"check": c["check"], "value": c["value"], "target": c["target"],
                                    "verdict": VERDICTS[c["passed"]]} for c in report.metrics["checks"]],
                                  schema={"check": pl.Utf8, "value": pl.Float64, "target": pl.Utf8, "verdict": pl.Utf8})
            passed = sum(c["passed"] is True for c in report.metrics["checks"])
            st.caption(f"{passed} of {len(report.metrics['checks'])} acceptance checks pass")
            st.dataframe(checks.to_pandas(), hide_index=True, width="stretch", key="report_checks")
            with st.expander("The full report (fidelity, utility, privacy)", expanded=False):
                components.html(report.html, height=900, scrolling=True)

with generate_tab:
    twin, why_not = twin_generator()
    generators = [TWIN, ENGINE] if twin is not None else [ENGINE]
    generator = st.radio("Generator", generators, horizontal=True, key="generator")
    if generator == TWIN:
        st.caption("Initial states drawn from a copula fitted on the model's training stays, then rolled forward hour by hour by "
                   "the coordinated twin under the cohort's usual care (as `organsim synthesize`); no stay copies a real patient.")
    else:
        st.caption("Simulated patients from organsim's mechanistic sepsis engine and its clinician; no stay is a real patient.")
        if why_not:
            st.caption(f"The twin-based generator is not available: {why_not}.")
    with st.form("generate_form"):
        columns = st.columns(3)
        n_patients = columns[0].number_input("Stays", min_value=1, max_value=MAX_GENERATED_STAYS, value=20, step=10, key="gen_stays")
        hours = columns[1].number_input("ICU hours per stay (at most)", min_value=6, max_value=MAX_GENERATED_HOURS, value=24, step=6,
                                        key="gen_hours")
        seed = columns[2].number_input("Seed", min_value=0, value=0, step=1, key="gen_seed")
        generate = st.form_submit_button("Generate", type="primary", key="generate")
    generated = st.session_state.setdefault(GENERATED_KEY, {})
    if generate:
        setting = (generator, int(n_patients), int(hours), int(seed))
        if setting not in generated:
            progress = st.progress(0.0, text="generating ...")
            try:
                if generator == TWIN:
                    generated[setting] = generate_with_twin(
                        twin.simulator.twin, twin.cohort.subset(split="train"), *setting[1:],
                        progress=lambda done, total: progress.progress(min(done / max(total, 1), 1.0),
                                                                       text=f"simulated {done} of {total} stays"))
                else:
                    generated[setting] = generate_small_cohort(*setting[1:])
            except (OrgansimError, ValueError) as exc:
                st.error(str(exc))
            finally:
                progress.empty()
        st.session_state["generated"] = setting
    setting = st.session_state.get("generated")
    if setting is None or setting not in generated:
        st.info("Choose a generator and a size, then press Generate.")
    else:
        cohort = generated[setting]
        summary = cohort.summary()
        columns = st.columns(4)
        columns[0].metric("stays", f"{summary['stays']:,}")
        columns[1].metric("stay-hours", f"{summary['hours']:,}")
        columns[2].metric("septic", f"{summary['septic_fraction']:.0%}")
        columns[3].metric("generator", setting[0])
        st.caption("Download (each a zip of the export directory, with its export.json saying what the format holds):")
        buttons = st.columns(len(FORMATS))
        name = f"synthetic_{setting[0].split()[-1]}_{setting[1]}x{setting[2]}h_seed{setting[3]}"
        for column, format in zip(buttons, FORMATS, strict=True):
            column.download_button(EXPORT_LABELS[format], data=generated_archive(setting, format, cohort),
                                   file_name=f"{name}_{format}.zip", mime="application/zip", key=f"download_{format}")
