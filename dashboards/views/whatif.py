"""What-if: from a decision hour, the patient under other treatment strategies, compared."""

from __future__ import annotations

import streamlit as st
from clinic.charts import (
    consulted_figure,
    event_onset_figure,
    event_probability_figure,
    outcome_distribution_figure,
    whatif_figure,
)
from clinic.outcomes import correction_summary, outcome_table
from clinic.pagekit import cohort_or_stop, model_path, stay_picker
from clinic.records import load_patient_record
from clinic.simulators import load_behaviour_policy, load_simulators
from clinic.strategy_form import (
    AntibioticForm,
    FluidForm,
    NorepinephrineForm,
    form_strategy,
    yaml_strategy,
)

from organsim.counterfactual import StrategyError, read_library, what_if
from organsim.scores import SEPSIS_EVENT
from organsim.utils import OrgansimError

MAX_HORIZON_HOURS = 72
MAX_SAMPLES = 500
DEFAULT_STRATEGIES = ("observed_care", "early_norepinephrine")
DEFAULT_VARIABLES = ("map", "lactate", "spo2", "creatinine")
CUSTOM_KEY, SELECTED_KEY, RESULTS_KEY, FORM_ERROR_KEY = "custom_strategies", "whatif_strategies", "whatif_results", "strategy_error"

loaded = cohort_or_stop()
catalog = loaded.cohort.catalog
event_labels = {e.code: e.label for e in catalog.events} | {SEPSIS_EVENT: "Sepsis-3 onset", "death": "death"}

st.title("What-if")
stay_id = stay_picker(loaded.stays, key="whatif_pick")
record = load_patient_record(loaded.path, loaded.version, stay_id)
model = model_path()
choices = load_simulators(loaded.path, loaded.version, str(model) if model else None)
usable = [c for c in choices if c.simulator is not None]
for unusable in (c for c in choices if c.simulator is None and (c.kind == "twin" or not usable)):
    st.warning(f"Not available here: the {unusable.label.split(':')[0]}. Why: {unusable.reason}.")
if not usable:
    st.stop()
choice = usable[0]
if len(usable) > 1:
    labels = [c.label for c in usable]
    choice = usable[labels.index(st.radio("Simulator", labels, key="simulator"))]
else:
    st.caption(f"Simulator: {choice.label}")

library = {entry.name: entry for entry in read_library(catalog=catalog) if entry.strategy is not None}
custom = st.session_state.setdefault(CUSTOM_KEY, {})
strategies_by_name = {name: entry.strategy for name, entry in library.items()} | custom


def _add_strategy(build) -> None:
    """Check a written strategy and select it, or keep its problems for the page to show."""
    try:
        strategy = build()
    except StrategyError as exc:
        st.session_state[FORM_ERROR_KEY] = str(exc)
        return
    if strategy.name in library:
        st.session_state[FORM_ERROR_KEY] = f"{strategy.name!r} is a library strategy: give yours another name"
        return
    st.session_state[FORM_ERROR_KEY] = None
    st.session_state[CUSTOM_KEY][strategy.name] = strategy
    selected = list(st.session_state.get(SELECTED_KEY, []))
    st.session_state[SELECTED_KEY] = [*[s for s in selected if s != strategy.name], strategy.name]


def _from_form() -> None:
    state = st.session_state
    _add_strategy(lambda: form_strategy(
        state["form_name"], state["form_description"] or "written in the dashboard", catalog=catalog, others=state["form_others"],
        norepinephrine=NorepinephrineForm(state["nor_map"], state["nor_wean"], state["nor_start"], state["nor_step"], state["nor_max"])
        if state["use_nor"] else None,
        fluids=FluidForm(state["fluid_bolus"], state["fluid_map"], state["fluid_lactate"], state["fluid_cap"], state["fluid_maintenance"])
        if state["use_fluids"] else None,
        antibiotic=AntibioticForm(int(state["abx_first"]), int(state["abx_every"]) or None) if state["use_abx"] else None))


def _from_yaml() -> None:
    _add_strategy(lambda: yaml_strategy(st.session_state["strategy_yaml"], catalog=catalog))


# ------------------------------------------------------------------------------------------ settings
last_hour = record.last_hour
if last_hour < 2:
    st.warning(f"Stay {stay_id} has {last_hour} recorded hour(s): a what-if needs at least one hour of history before the decision.")
    st.stop()
columns = st.columns(4)
decision_hour = int(columns[0].number_input(
    "Decision hour (ICU hour)", min_value=2, max_value=last_hour, value=min(6, last_hour), step=1, key=f"decision_{stay_id}",
    help="The first hour the strategy decides; the hours before it replay the record."))
reachable = choice.max_horizon(decision_hour, MAX_HORIZON_HOURS)
horizon = int(columns[1].number_input("Hours to simulate", min_value=1, max_value=MAX_HORIZON_HOURS, value=max(1, min(24, reachable)),
                                      step=1, key="horizon"))
if choice.fixed_samples is not None:
    n_samples = choice.fixed_samples
    columns[2].number_input("Futures per strategy", value=n_samples, disabled=True, key="samples_fixed",
                            help="The engine oracle's future is the truth: one per strategy, no bands to draw.")
else:
    n_samples = int(columns[2].number_input("Futures per strategy", min_value=1, max_value=MAX_SAMPLES, value=20, step=10,
                                            key="samples", help="More futures: smoother bands, longer runs."))
seed = int(columns[3].number_input("Seed", min_value=0, value=0, step=1, key="seed"))

problems = []
if horizon > reachable:
    problems.append(f"From hour {decision_hour} the simulator reaches {reachable} more hour(s) (up to ICU hour "
                    f"{decision_hour + reachable - 1}); choose at most {reachable} hours to simulate.")

if SELECTED_KEY not in st.session_state:
    st.session_state[SELECTED_KEY] = [name for name in DEFAULT_STRATEGIES if name in strategies_by_name]
selected = st.multiselect("Strategies to compare", list(strategies_by_name), key=SELECTED_KEY,
                          format_func=lambda n: f"{n} (yours)" if n in custom else n)
for name in selected:
    st.caption(f"**{name}**: {strategies_by_name[name].description}")
if not selected:
    problems.append("Choose at least one strategy to compare.")

with st.expander("Write your own strategy (doses, thresholds, timing)"):
    form_tab, yaml_tab = st.tabs(["Form", "YAML"])
    with form_tab, st.form("strategy_form"):
        left, right = st.columns([1, 2])
        left.text_input("Name (lower case, digits, _)", value="my_strategy", key="form_name")
        right.text_input("Description", key="form_description")
        st.selectbox("Treatments not set here follow", ["usual_care", "observed", "none"], key="form_others",
                     help="usual_care: the simulator's own clinician; observed: what was recorded; none: nothing.")
        nor, fluids, abx = st.columns(3)
        with nor:
            st.checkbox("Norepinephrine (titrated on MAP)", value=True, key="use_nor")
            st.number_input("start when MAP below (mmHg)", value=65.0, step=5.0, key="nor_map")
            st.number_input("wean when MAP above (mmHg)", value=75.0, step=5.0, key="nor_wean")
            st.number_input("start dose (ug/kg/min)", value=0.05, step=0.01, format="%.2f", key="nor_start")
            st.number_input("step per hour (ug/kg/min)", value=0.05, step=0.01, format="%.2f", key="nor_step")
            st.number_input("maximum (ug/kg/min)", value=1.0, step=0.05, format="%.2f", key="nor_max")
        with fluids:
            st.checkbox("Fluid boluses", value=False, key="use_fluids")
            st.number_input("bolus (mL in the hour)", value=500.0, step=100.0, key="fluid_bolus")
            st.number_input("when MAP below (mmHg)", value=65.0, step=5.0, key="fluid_map")
            st.number_input("or lactate at least (mmol/L)", value=4.0, step=0.5, key="fluid_lactate")
            st.number_input("at most (mL per 24 h)", value=3000.0, step=500.0, key="fluid_cap")
            st.number_input("maintenance otherwise (mL/h)", value=0.0, step=25.0, key="fluid_maintenance")
        with abx:
            st.checkbox("Antibiotics", value=False, key="use_abx")
            st.number_input("first dose, hours after the decision", min_value=0, value=0, step=1, key="abx_first")
            st.number_input("then every (hours; 0: one dose)", min_value=0, value=8, step=1, key="abx_every")
        st.form_submit_button("Add strategy", on_click=_from_form, key="add_form")
    with yaml_tab:
        start = st.selectbox("Start from", list(library), key="yaml_start")
        st.text_area("Strategy (YAML, the schema of pipelines/strategies/)", value=library[start].path.read_text(encoding="utf-8"),
                     height=320, key="strategy_yaml")
        st.button("Add strategy", on_click=_from_yaml, key="add_yaml")
    if st.session_state.get(FORM_ERROR_KEY):
        st.error(st.session_state[FORM_ERROR_KEY])

measured = [code for code in catalog.variable_codes if record.observed[code].null_count() < record.observed.height]
variables = st.multiselect("Variables to plot", measured, default=[c for c in DEFAULT_VARIABLES if c in measured], key="whatif_variables")

for problem in problems:
    st.error(problem)

# ------------------------------------------------------------------------------------------ run
results = st.session_state.setdefault(RESULTS_KEY, {})
request = (loaded.path, loaded.version, choice.label, stay_id, decision_hour, horizon, n_samples, seed,
           tuple((name, strategies_by_name[name].model_dump_json()) for name in selected))
left, right = st.columns([1, 4])
run = left.button("Run what-if", type="primary", disabled=bool(problems), key="run_whatif")
if st.session_state.get("cancel_whatif"):
    st.info("Run cancelled.")
if run:
    cancel = right.empty()
    cancel.button("Cancel", key="cancel_whatif")
    progress = st.progress(0.0, text="fitting the overlap guardrail ...")
    behaviour = choice.behaviour or load_behaviour_policy(loaded.path, loaded.version)

    def report(done: int, total: int) -> None:
        text = f"simulated {done} of {total - 1} strategies" if done < total else "summarising"
        progress.progress(done / total, text=text)

    try:
        results[request] = what_if(choice.simulator, choice.cohort, stay_id, decision_hour,
                                   [strategies_by_name[name] for name in selected], horizon=horizon, n_samples=n_samples,
                                   seed=seed, behaviour=behaviour, progress=report)
    except (OrgansimError, ValueError, KeyError) as exc:
        st.error(f"The what-if could not run: {exc}")
    finally:
        progress.empty()
        cancel.empty()

result = results.get(request)
if result is None:
    st.info("Choose a decision hour and strategies, then press Run what-if.")
    st.stop()

# ------------------------------------------------------------------------------------------ results
st.subheader("Overlap with the care similar patients received")
behaviour_checked = [outcome for outcome in result.outcomes.values() if outcome.overlap is not None]
if not behaviour_checked:
    st.info("This cohort has no recorded treatments, so the overlap guardrail is off.")
for name, outcome in result.outcomes.items():
    report_ = outcome.overlap
    if report_ is None:
        continue
    if report_.in_support:
        st.success(f"**{name}**: every treatment it gives was given to similar patients in the cohort.")
    else:
        st.warning(f"**{name}** gives treatments that similar patients rarely received: this answer is an extrapolation.\n\n"
                   + "\n".join(f"- {line}" for line in report_.explanations))

st.subheader("Observed vs counterfactual")
if variables:
    st.caption("Black dots: what was measured (after the dashed decision line: under the care actually given). "
               "Each strategy: median line, 50 % band (darker) and 90 % band (lighter) over its sampled futures.")
    st.plotly_chart(whatif_figure(result, record, variables, catalog), key="whatif_figure", config={"displaylogo": False})
else:
    st.info("Choose variables to plot above.")

st.subheader("Outcomes")
st.caption(f"{result.n_samples} future(s) per strategy from ICU hour {result.decision_hour}, {result.horizon} h simulated. "
           "Scores: mean (5th-95th percentile) of the worst value over 24 h; onsets: hours after the decision.")
st.dataframe(outcome_table(result, event_labels).to_pandas(), hide_index=True, width="stretch", key="outcome_table")
horizons = sorted({row["horizon_hours"] for o in result.outcomes.values() for row in o.summary.scores.iter_rows(named=True)
                   if row["n"] > 0})
left, right = st.columns(2)
with left:
    if horizons:
        horizon_shown = st.radio("Scores at", horizons, horizontal=True, format_func=lambda h: f"{h} h", key="score_horizon")
        for score in ("sofa", "apache_ii"):
            st.plotly_chart(outcome_distribution_figure(result, score, horizon_shown), key=f"distribution_{score}")
    else:
        st.info("Simulate at least 24 hours to compare SOFA and APACHE II.")
with right:
    st.plotly_chart(event_probability_figure(result, event_labels), key="event_figure")
    st.plotly_chart(event_onset_figure(result), key="onset_figure")

st.subheader("Why: systems consulted and corrections")
consulted = {name: o.summary.consulted for name, o in result.outcomes.items() if o.summary.consulted is not None}
if not consulted:
    st.info(f"This simulator ({result.simulator}) models the whole body at once: it has no organ agents that consult "
            "each other and no error-correction agent.")
else:
    st.caption("Each organ agent (rows) chooses, hour by hour, which other systems (columns) to read before it predicts.")
    columns = st.columns(min(len(consulted), 2))
    for index, (name, frame) in enumerate(consulted.items()):
        columns[index % len(columns)].plotly_chart(consulted_figure(frame, name), key=f"consulted_{name}")
    for name, outcome in result.outcomes.items():
        corrections = outcome.futures.corrections
        if corrections is None:
            continue
        summary = correction_summary(corrections, outcome.futures.n_samples, outcome.futures.horizon)
        if summary.height == 0:
            st.success(f"**{name}**: the error-correction agent changed nothing (every simulated hour was physiologically consistent).")
        else:
            st.markdown(f"**{name}**: what the error-correction agent changed ({corrections.height:,} values)")
            st.dataframe(summary.to_pandas(), hide_index=True, width="stretch", key=f"corrections_{name}")
        adjustments = outcome.futures.adjustments
        if adjustments is not None and adjustments.height:
            st.caption(f"{name}: in {adjustments.height:,} simulated hour(s) the strategy's dose was outside what similar patients "
                       "received; the agents were shown the nearest dose that was given (the outcome scores read the strategy's dose).")
