"""Patient view: the nine systems over time, treatments, critical events, SOFA and APACHE II."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
import streamlit as st
from clinic.charts import patient_figure, sofa_figure
from clinic.pagekit import cohort_or_stop, stay_picker
from clinic.records import load_cohort, load_patient_record

from organsim.scores import SEPSIS_EVENT


@st.cache_resource(show_spinner=False, max_entries=64)
def patient_figures(path: str, version: float, stay_id: int) -> tuple[go.Figure, go.Figure]:
    """The systems figure and the SOFA figure of ``stay_id``, built once per stay."""
    record = load_patient_record(path, version, stay_id)
    catalog = load_cohort(path, version).catalog
    return patient_figure(record, catalog), sofa_figure(record)


loaded = cohort_or_stop()
catalog = loaded.cohort.catalog
event_labels = {e.code: e.label for e in catalog.events} | {SEPSIS_EVENT: "Sepsis-3 onset"}

st.title("Patient view")
stay_id = stay_picker(loaded.stays, key="patient_pick")
record = load_patient_record(loaded.path, loaded.version, stay_id)
stay = record.stay.row(0, named=True)
row = loaded.stays.filter(pl.col("stay_id") == stay_id).row(0, named=True)

facts = [f"{stay['age']:.0f} y" if stay.get("age") is not None else None, row["sex"], stay.get("unit"),
         f"{stay['weight']:.0f} kg" if stay.get("weight") is not None else None, f"{row['hours']} ICU hours",
         f"Sepsis-3 onset hour {stay['sepsis_onset_hour']}" if stay.get("sepsis") else "no sepsis",
         "died" if stay.get("death") else "survived" if stay.get("death") is not None else None]
st.caption(" · ".join(str(f) for f in facts if f))

apache, apache_hour, apache_components = record.apache_ii_24h()
columns = st.columns(4)
columns[0].metric("max SOFA", "-" if row["sofa_max"] is None else f"{row['sofa_max']}")
columns[1].metric("APACHE II at 24 h", "-" if apache is None else f"{apache:.0f}",
                  help=None if apache_hour is None else f"worst value of each component over ICU hours 1-{apache_hour}")
columns[2].metric("critical-event episodes", f"{row['n_events']}")
columns[3].metric("measurements", f"{record.observed.drop('hour').select(pl.all().is_not_null().sum()).sum_horizontal()[0]:,}")

st.subheader("Organ systems")
st.caption("Each panel shows a system's variables on the scale of their normal range (grey band: normal). "
           "Dots are measurements; dotted lines the last value carried forward (what the scores read). "
           "Hover for values in their units; click a legend entry to hide it.")
systems_figure, sofa_chart = patient_figures(loaded.path, loaded.version, stay_id)
st.plotly_chart(systems_figure, key="patient_figure", config={"displaylogo": False})

st.subheader("SOFA, hour by hour")
st.plotly_chart(sofa_chart, key="sofa_figure", config={"displaylogo": False})

left, right = st.columns(2)
with left:
    st.subheader("APACHE II at 24 h")
    if apache is None:
        st.info("No APACHE II: the first 24 hours have no scored hour.")
    else:
        st.caption(f"{apache:.0f} points: the worst value of each component over ICU hours 1-{apache_hour}, "
                   "plus age and chronic-health points")
        points = pl.DataFrame({"component": [c.removeprefix("apache_ii_").replace("_", " ") for c in apache_components],
                               "points": list(apache_components.values())})
        st.dataframe(points.to_pandas(), hide_index=True, width="stretch", key="apache_table")
with right:
    st.subheader("Critical events")
    if record.events.height == 0:
        st.info("No critical events in this stay.")
    else:
        events = record.events.select(
            pl.col("event").replace(event_labels).alias("event"), "onset_hour", "offset_hour", "duration_hours",
            pl.col("peak_value").round(2).alias("worst value"))
        st.dataframe(events.to_pandas(), hide_index=True, width="stretch", key="events_table")

if st.button("Try another treatment strategy for this patient", type="primary", key="to_whatif"):
    st.switch_page("views/whatif.py")
