"""Streamlit pieces every page shares: the loaded cohort (or an inline message saying what to do),
the patient picker, and errors shown as messages rather than stack traces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import streamlit as st

from clinic.records import cohort_version, load_cohort, load_stay_table
from clinic.sources import Sources, current_sources
from organsim.data import Cohort
from organsim.utils import OrgansimError

STAY_KEY = "stay_id"
"""Session key of the patient open in the patient view and the what-if page."""


@dataclass(frozen=True)
class LoadedCohort:
    """The cohort a page works on: its directory as a string and version (the cache keys), the
    cohort and its stay table (:func:`clinic.records.stay_table`)."""

    path: str
    version: float
    cohort: Cohort
    stays: pl.DataFrame


def sources() -> Sources:
    """The dashboard's inputs (:func:`clinic.sources.current_sources`), resolved once per session."""
    if "sources" not in st.session_state:
        st.session_state["sources"] = current_sources()
    return st.session_state["sources"]


def cohort_or_stop() -> LoadedCohort:
    """The cohort, or an inline message saying how to give one (and the page stops there)."""
    path = sources().cohort
    if path is None:
        st.warning("No cohort to show. Run `make demo` (it writes demo_out/), or start the dashboard on a cohort: "
                   "`streamlit run dashboards/app.py -- --cohort DIR` or `ORGANSIM_COHORT=DIR make dashboard`.")
        st.stop()
    version = cohort_version(path)
    try:
        cohort = load_cohort(str(path), version)
        stays = load_stay_table(str(path), version)
    except (OrgansimError, OSError, ValueError) as exc:
        st.error(f"Cannot read the cohort in {path}: {exc}")
        st.stop()
    if stays.height == 0:
        st.warning(f"The cohort in {path} has no stays.")
        st.stop()
    return LoadedCohort(str(path), version, cohort, stays)


def stay_label(row: dict) -> str:
    """``"stay 12 · septic · died · SOFA max 9"``: a stay as the picker lists it."""
    parts = [f"stay {row['stay_id']}"]
    if row.get("sepsis"):
        parts.append("septic")
    if row.get("died"):
        parts.append("died")
    if row.get("sofa_max") is not None:
        parts.append(f"SOFA max {row['sofa_max']}")
    return " · ".join(parts)


def _linked_stay() -> int | None:
    """The stay named in the page address (``?stay=12``), None when absent or not a number."""
    text = st.query_params.get("stay", "")
    return int(text) if text.isdigit() else None


def current_stay(stays: pl.DataFrame) -> int:
    """The open patient: the session's, else the one in the page address (``?stay=12``), else the
    first stay of ``stays`` (also when the chosen one is not among them)."""
    ids = stays["stay_id"].to_list()
    chosen = st.session_state.get(STAY_KEY)
    if chosen not in ids:
        linked = _linked_stay()
        chosen = linked if linked in ids else ids[0]
    open_stay(chosen)
    return int(chosen)


def open_stay(stay_id: int) -> None:
    """Make ``stay_id`` the open patient (and name it in the page address, to share or reload)."""
    st.session_state[STAY_KEY] = int(stay_id)
    st.query_params["stay"] = str(int(stay_id))


def stay_picker(stays: pl.DataFrame, *, key: str) -> int:
    """A select box over ``stays`` (rows of the stay table) that opens the chosen patient."""
    labels = {row["stay_id"]: stay_label(row) for row in stays.iter_rows(named=True)}
    ids = list(labels)
    current = current_stay(stays)
    choice = st.selectbox("Patient", ids, index=ids.index(current), format_func=labels.__getitem__, key=key)
    if choice != current:
        open_stay(choice)
    return int(choice)


def model_path() -> Path | None:
    """The trained model given to the dashboard, if any."""
    return sources().model
