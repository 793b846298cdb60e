"""organsim's clinicians' dashboard: ``make dashboard`` or ``streamlit run dashboards/app.py``.

Starts on the outputs of ``make demo`` (demo_out/), or on the inputs given after ``--``:
``streamlit run dashboards/app.py -- --cohort DIR --model DIR --report DIR`` (or the environment
variables ORGANSIM_COHORT, ORGANSIM_MODEL, ORGANSIM_REPORT). Four pages: the patient browser, the
patient view, what-if, and synthetic cohorts (``dashboards/views/``; not ``pages/``, which
Streamlit would list on its own beside this navigation).
"""

from __future__ import annotations

import streamlit as st
from clinic.pagekit import sources

st.set_page_config(page_title="organsim · ICU digital twin", page_icon=":material/monitor_heart:", layout="wide")

navigation = st.navigation([
    st.Page("views/browser.py", title="Patient browser", icon=":material/groups:", default=True),
    st.Page("views/patient.py", title="Patient view", icon=":material/monitor_heart:"),
    st.Page("views/whatif.py", title="What-if", icon=":material/alt_route:"),
    st.Page("views/synthetic.py", title="Synthetic cohorts", icon=":material/science:"),
])

inputs = sources()
with st.sidebar:
    st.caption("organsim · physiological digital twin for intensive care")
    for title, name, path in (("cohort", "cohort", inputs.cohort), ("model", "model", inputs.model),
                              ("synthetic report", "report", inputs.report)):
        st.caption(f"**{title}**: `{path}` ({inputs.origin[name]})" if path else f"**{title}**: none given")
    st.caption("For research and teaching: simulated answers, not clinical advice.")

navigation.run()
