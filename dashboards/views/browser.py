"""Patient browser: the cohort at a glance, and stays filtered by sepsis, outcome, SOFA and events."""

from __future__ import annotations

import polars as pl
import streamlit as st
from clinic.pagekit import cohort_or_stop, open_stay, stay_label
from clinic.records import cohort_summary, filter_stays, parse_stay_ids

loaded = cohort_or_stop()
catalog = loaded.cohort.catalog
event_labels = {e.code: e.label for e in catalog.events} | {"sepsis3": "Sepsis-3 onset"}

st.title("Patient browser")
st.caption(f"{loaded.path} · source: {loaded.cohort.meta.get('source', 'unknown')}")

summary = cohort_summary(loaded.stays)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


columns = st.columns(6)
columns[0].metric("stays", f"{summary['stays']:,}", help=f"{summary['hours']:,} stay-hours")
columns[1].metric("septic", _share(summary["septic"]))
columns[2].metric("died", _share(summary["died"]))
columns[3].metric("median age", _number(summary["median_age"]))
columns[4].metric("median max SOFA", _number(summary["median_sofa_max"]))
columns[5].metric("median APACHE II (24 h)", _number(summary["median_apache_ii_24h"]))

st.subheader("Find patients")
left, middle, right = st.columns([1, 1, 2])
sepsis = left.radio("Sepsis", ["all", "septic", "not septic"], horizontal=True, key="filter_sepsis")
died = middle.radio("Outcome", ["all", "died", "survived"], horizontal=True, key="filter_died")
top = int(loaded.stays["sofa_max"].max() or 0)
sofa_range = right.slider("Highest SOFA during the stay (points)", 0, max(24, top), (0, max(24, top)), key="filter_sofa")
left, right = st.columns([2, 1])
present = sorted({code for codes in loaded.stays["events"].to_list() for code in codes})
events = left.multiselect("Had all of these critical events", present, format_func=lambda c: event_labels.get(c, c),
                          key="filter_events")
typed = right.text_input("Stay ids", placeholder="e.g. 12, 40", key="filter_ids")

try:
    stay_ids = parse_stay_ids(typed)
except ValueError as exc:
    st.error(str(exc))
    stay_ids = None
found = filter_stays(loaded.stays, sepsis=sepsis, died=died, sofa_range=sofa_range, events=events, stay_ids=stay_ids)
if stay_ids is not None:
    unknown = sorted(set(stay_ids) - set(loaded.stays["stay_id"].to_list()))
    if unknown:
        st.warning(f"No stay with id {', '.join(map(str, unknown))} in this cohort.")

st.caption(f"{found.height:,} of {loaded.stays.height:,} stays match")
if found.height == 0:
    st.info("No stay matches these filters: widen the SOFA range or remove an event.")
    st.stop()

shown = found.with_columns(pl.col("events").list.eval(pl.element().replace(event_labels)).list.join(", "))
selection = st.dataframe(
    shown.to_pandas(), hide_index=True, width="stretch", height=360, on_select="rerun", selection_mode="single-row",
    key="stay_table",
    column_config={
        "stay_id": st.column_config.NumberColumn("stay", format="%d"),
        "sepsis_onset_hour": st.column_config.NumberColumn("sepsis onset (h)"),
        "sofa_max": st.column_config.ProgressColumn("max SOFA", min_value=0, max_value=24, format="%d"),
        "apache_ii_24h": st.column_config.NumberColumn("APACHE II (24 h)"),
        "n_events": st.column_config.NumberColumn("episodes"),
    },
)
rows = selection.selection.rows if selection is not None else []
ids = found["stay_id"].to_list()
labels = {row["stay_id"]: stay_label(row) for row in found.iter_rows(named=True)}
left, right = st.columns([3, 1])
picked = left.selectbox("Open a patient (or click a row above)", ids, format_func=labels.__getitem__, key="browser_pick")
chosen = ids[rows[0]] if rows else picked
right.write("")
if right.button(f"Open stay {chosen}", type="primary", key="open_patient"):
    open_stay(chosen)
    st.switch_page("views/patient.py")
