"""Synthetic cohorts: read a report of ``organsim report-synthetic``, generate a small cohort and
download it in each export format."""

from __future__ import annotations

import polars as pl
import streamlit as st
import streamlit.components.v1 as components
from clinic.pagekit import sources
from clinic.synthetic import (
    EXPORT_LABELS,
    MAX_GENERATED_HOURS,
    MAX_GENERATED_STAYS,
    export_archive,
    generate_small_cohort,
    read_report,
)

from organsim.data import Cohort
from organsim.data.export import FORMATS
from organsim.utils import OrgansimError

VERDICTS = {True: "pass", False: "fail", None: "not measured"}


@st.cache_resource(show_spinner="Generating the cohort ...", max_entries=4)
def generated_cohort(n_patients: int, hours: int, seed: int) -> Cohort:
    """:func:`generate_small_cohort`, once per setting."""
    return generate_small_cohort(n_patients, hours, seed)


@st.cache_data(show_spinner=False, max_entries=16)
def generated_archive(n_patients: int, hours: int, seed: int, format: str) -> bytes:
    """The zip archive of the generated cohort in ``format``, once per setting."""
    return export_archive(generated_cohort(n_patients, hours, seed), format)


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
    st.caption("A small cohort from organsim's physiology engine: simulated patients with a sepsis model and its own "
               "clinician; no stay is a real patient. Larger cohorts: `organsim` from the command line.")
    with st.form("generate_form"):
        columns = st.columns(3)
        n_patients = columns[0].number_input("Stays", min_value=1, max_value=MAX_GENERATED_STAYS, value=50, step=10, key="gen_stays")
        hours = columns[1].number_input("ICU hours per stay", min_value=6, max_value=MAX_GENERATED_HOURS, value=48, step=6,
                                        key="gen_hours")
        seed = columns[2].number_input("Seed", min_value=0, value=0, step=1, key="gen_seed")
        generate = st.form_submit_button("Generate", type="primary", key="generate")
    if generate:
        st.session_state["generated"] = (int(n_patients), int(hours), int(seed))
    setting = st.session_state.get("generated")
    if setting is None:
        st.info("Choose a size and press Generate.")
    else:
        try:
            cohort = generated_cohort(*setting)
        except (OrgansimError, ValueError) as exc:
            st.error(str(exc))
        else:
            summary = cohort.summary()
            columns = st.columns(4)
            columns[0].metric("stays", f"{summary['stays']:,}")
            columns[1].metric("stay-hours", f"{summary['hours']:,}")
            columns[2].metric("septic", f"{summary['septic_fraction']:.0%}")
            columns[3].metric("seed", f"{setting[2]}")
            st.caption("Download (each a zip of the export directory, with its export.json saying what the format holds):")
            buttons = st.columns(len(FORMATS))
            for column, format in zip(buttons, FORMATS, strict=True):
                column.download_button(EXPORT_LABELS[format], data=generated_archive(*setting, format),
                                       file_name=f"synthetic_{setting[0]}x{setting[1]}h_seed{setting[2]}_{format}.zip",
                                       mime="application/zip", key=f"download_{format}")
