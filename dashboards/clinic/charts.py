"""Plotly figures of the dashboard: a patient's nine systems, SOFA, and what-if results.

Every function returns a :class:`plotly.graph_objects.Figure` built from frames alone (no
Streamlit), so it can be tested and reused in notebooks. Hours on the x axis are ICU hours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from clinic.records import PatientRecord
from organsim.catalog import SYSTEMS, Catalog
from organsim.scores import SEPSIS_EVENT, SOFA_COMPONENTS

if TYPE_CHECKING:  # the what-if page imports the counterfactual package (and torch with it); the other pages need not
    from organsim.counterfactual import WhatIfResult

VARIABLE_COLOURS = qualitative.D3
STRATEGY_COLOURS = qualitative.Set1
OBSERVED_COLOUR = "#222222"
SYSTEM_PANEL_PX = 120
"""Height of one system's panel in the patient figure (pixels)."""


def _colour(palette: Sequence[str], index: int) -> str:
    return palette[index % len(palette)]


def _rgba(colour: str, alpha: float) -> str:
    """``"rgba(r,g,b,alpha)"`` of a ``"#rrggbb"`` or ``"rgb(r,g,b)"`` colour."""
    if colour.startswith("#"):
        r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    else:
        r, g, b = (int(float(x)) for x in colour[colour.index("(") + 1:colour.index(")")].split(","))
    return f"rgba({r},{g},{b},{alpha})"


def _axis(letter: str, row: int) -> str:
    """Plotly's name of the ``letter`` axis of subplot row ``row`` in a one-column grid (``x``, ``y2``, ...)."""
    return letter if row == 1 else f"{letter}{row}"


def normalised(values: np.ndarray, normal: tuple[float, float]) -> np.ndarray:
    """``values`` on the scale of their normal range: 0 at its lower and 1 at its upper limit
    (a degenerate range of width 0 is centred: the limit maps to 0.5, one unit to 1)."""
    low, high = normal
    width = high - low
    if width <= 0:
        return values - low + 0.5
    return (values - low) / width


def patient_figure(record: PatientRecord, catalog: Catalog, *, hour_range: tuple[int, int] | None = None) -> go.Figure:
    """The nine systems as aligned panels over ICU hours, treatments and critical events under them.

    Each system's panel draws its variables on the scale of their normal range (0 and 1 are the
    lower and upper normal limits; the grey band is normal), so one panel holds variables of any
    unit; hovering shows the value in its unit. Filled markers are measurements; the thin dotted
    line is the state carried forward from the last measurement within its window (what the
    scores and strategies read). Variables never measured in the stay are left out; the legend
    beside each panel names its variables (click to hide). Under the panels: the treatments as a
    ribbon (colour = dose relative to the stay's highest) and the critical-event episodes on a
    timeline; a dashed line marks the Sepsis-3 onset.
    """
    systems = list(SYSTEMS)
    rows = len(systems) + 2
    heights = [1.0] * len(systems) + [0.7, 0.9]
    figure = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.008, row_heights=heights,
                           subplot_titles=[*systems, "treatments", "critical events"])
    figure.update_annotations(font_size=11, x=0, xanchor="left")  # the subplot titles, at the left
    hours = record.observed["hour"].to_numpy()
    carried_hours = record.carried["hour"].to_numpy()
    for row, system in enumerate(systems, start=1):
        legend = "legend" if row == 1 else f"legend{row}"
        colour_index = 0
        for variable in catalog.variables_of(system):
            code = variable.code
            if code not in record.observed.columns or record.observed[code].null_count() == record.observed.height:
                continue
            colour = _colour(VARIABLE_COLOURS, colour_index)
            colour_index += 1
            raw = record.observed[code].cast(pl.Float64).to_numpy()
            measured = np.isfinite(raw)
            carried = record.carried[code].cast(pl.Float64).to_numpy()
            label = f"{code} ({variable.unit})"
            figure.add_trace(go.Scatter(
                x=carried_hours, y=normalised(carried, variable.normal), mode="lines", legendgroup=f"{row}:{code}",
                showlegend=False, legend=legend, line={"color": colour, "width": 1, "dash": "dot"}, opacity=0.6,
                customdata=carried, name=f"{code} carried forward",
                hovertemplate=f"{code} %{{customdata:.4g}} {variable.unit}, hour %{{x}} (carried forward)<extra></extra>",
            ), row=row, col=1)
            figure.add_trace(go.Scatter(
                x=hours[measured], y=normalised(raw[measured], variable.normal), mode="markers", legendgroup=f"{row}:{code}",
                name=label, legend=legend, marker={"color": colour, "size": 5}, customdata=raw[measured],
                hovertemplate=f"{code} %{{customdata:.4g}} {variable.unit}, hour %{{x}} (measured)<extra></extra>",
            ), row=row, col=1)
        if colour_index == 0:
            figure.add_annotation(text="not measured in this stay", xref=f"{_axis('x', row)} domain",
                                  yref=f"{_axis('y', row)} domain", x=0.5, y=0.5, showarrow=False, font={"color": "#888888"})
        figure.add_shape(type="rect", xref=f"{_axis('x', row)} domain", yref=_axis("y", row), x0=0, x1=1, y0=0, y1=1,
                         fillcolor="rgba(120,120,120,0.12)", line_width=0, layer="below")
        figure.update_yaxes(title_text="× normal", title_font_size=9, row=row, col=1, zeroline=False)
    _treatment_ribbon(figure, record, catalog, rows - 1)
    _event_timeline(figure, record, catalog, rows)
    onset = record.events.filter(pl.col("event") == SEPSIS_EVENT)["onset_hour"].to_list()
    for hour in onset:
        for row in range(1, rows + 1):
            figure.add_shape(type="line", xref=_axis("x", row), yref=f"{_axis('y', row)} domain", x0=hour, x1=hour, y0=0, y1=1,
                             line={"dash": "dash", "color": "#b2182b", "width": 1})
    _place_legends(figure, len(systems), heights)
    figure.update_layout(height=SYSTEM_PANEL_PX * rows + 80, margin={"l": 60, "r": 170, "t": 30, "b": 40},
                         hovermode="closest", template="plotly_white")
    figure.update_xaxes(title_text="ICU hour", row=rows, col=1)
    if hour_range is not None:
        figure.update_xaxes(range=[hour_range[0] - 0.5, hour_range[1] + 0.5])
    return figure


def _place_legends(figure: go.Figure, n_panels: int, heights: Sequence[float]) -> None:
    """One legend beside each system panel, at the top of its row."""
    for row in range(1, n_panels + 1):
        axis = figure.layout[_axis("yaxis", row)]
        top = axis.domain[1]
        name = "legend" if row == 1 else f"legend{row}"
        figure.update_layout({name: {"x": 1.01, "y": top, "yanchor": "top", "xanchor": "left", "font": {"size": 9},
                                     "bgcolor": "rgba(0,0,0,0)", "tracegroupgap": 0}})


def _treatment_ribbon(figure: go.Figure, record: PatientRecord, catalog: Catalog, row: int) -> None:
    codes = [c for c in catalog.treatment_codes if c in record.treatments.columns]
    if not codes or record.treatments.height == 0:
        return
    raw = record.treatments.select(codes).cast(pl.Float64).fill_null(0.0).to_numpy().T  # (T, hours)
    peak = np.nanmax(raw, axis=1, keepdims=True)
    scaled = np.divide(raw, peak, out=np.zeros_like(raw), where=peak > 0)
    units = np.array([[catalog.treatment(c).unit] * raw.shape[1] for c in codes])
    figure.add_trace(go.Heatmap(
        x=record.treatments["hour"].to_numpy(), y=codes, z=scaled, customdata=np.dstack([raw, units]),
        colorscale="Blues", zmin=0, zmax=1, showscale=False, xgap=1, ygap=2,
        hovertemplate="%{y} %{customdata[0]:.3g} %{customdata[1]}, hour %{x}<extra></extra>",
    ), row=row, col=1)


def _event_timeline(figure: go.Figure, record: PatientRecord, catalog: Catalog, row: int) -> None:
    labels = {e.code: e.label for e in catalog.events}
    labels[SEPSIS_EVENT] = "Sepsis-3 onset"
    order = [SEPSIS_EVENT, *[e.code for e in catalog.events]]
    present = [code for code in order if code in set(record.events["event"].to_list())]
    for index, code in enumerate(present):
        episodes = record.events.filter(pl.col("event") == code)
        xs: list[float | None] = []
        ys: list[str | None] = []
        for onset, offset in episodes.select("onset_hour", "offset_hour").iter_rows():
            xs += [onset - 0.4, offset + 0.4, None]
            ys += [code, code, None]
        colour = "#b2182b" if code == SEPSIS_EVENT else _colour(qualitative.Dark2, index)
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour, "width": 9}, showlegend=False,
                                    name=labels.get(code, code),
                                    hovertemplate=f"{labels.get(code, code)}, hour %{{x:.0f}}<extra></extra>"),
                         row=row, col=1)
    if not present:
        figure.add_annotation(text="no critical events", xref="x domain", yref="y domain", x=0.5, y=0.5, showarrow=False,
                              row=row, col=1)


def sofa_figure(record: PatientRecord) -> go.Figure:
    """Hourly SOFA stacked by its six organ subscores, with the worst-over-24-hours SOFA as a line."""
    figure = go.Figure()
    hours = record.scores["hour"].to_numpy()
    for index, component in enumerate(SOFA_COMPONENTS):
        figure.add_trace(go.Bar(x=hours, y=record.scores[component].cast(pl.Float64).to_numpy(),
                                name=component.removeprefix("sofa_"), marker_color=_colour(qualitative.Pastel, index)))
    figure.add_trace(go.Scatter(x=hours, y=record.scores["sofa_24h"].cast(pl.Float64).to_numpy(), name="worst over 24 h",
                                mode="lines", line={"color": OBSERVED_COLOUR, "width": 2, "shape": "hv"}))
    figure.update_layout(barmode="stack", height=300, margin={"l": 60, "r": 20, "t": 30, "b": 40}, template="plotly_white",
                         yaxis_title="SOFA (points)", xaxis_title="ICU hour", bargap=0.05,
                         legend={"orientation": "h", "y": 1.12, "x": 0})
    return figure


def whatif_figure(result: WhatIfResult, record: PatientRecord, variables: Sequence[str], catalog: Catalog) -> go.Figure:
    """Observed vs counterfactual: one row per variable, in its unit.

    Black markers are what was measured over the whole stay (after the decision hour: what
    happened under the care actually given), the grey dotted line the state carried forward. Each
    strategy has its median (line), 50 % band (q25-q75, darker) and 90 % band (q05-q95, lighter)
    over the sampled futures, hour by hour. The dashed line marks the decision hour.
    """
    if not variables:
        raise ValueError("choose at least one variable to plot")
    figure = make_subplots(rows=len(variables), cols=1, shared_xaxes=True, vertical_spacing=0.03,
                           subplot_titles=[f"{code} ({catalog.variable(code).unit})" for code in variables])
    hours = record.observed["hour"].to_numpy()
    for row, code in enumerate(variables, start=1):
        unit = catalog.variable(code).unit
        raw = record.observed[code].cast(pl.Float64).to_numpy()
        measured = np.isfinite(raw)
        figure.add_trace(go.Scatter(x=record.carried["hour"].to_numpy(), y=record.carried[code].cast(pl.Float64).to_numpy(),
                                    mode="lines", line={"color": "#999999", "width": 1, "dash": "dot"}, showlegend=False,
                                    hovertemplate=f"{code} %{{y:.4g}} {unit}, hour %{{x}} (carried forward)<extra></extra>"),
                         row=row, col=1)
        figure.add_trace(go.Scatter(x=hours[measured], y=raw[measured], mode="markers", name="observed",
                                    legendgroup="observed", showlegend=row == 1, marker={"color": OBSERVED_COLOUR, "size": 4},
                                    hovertemplate=f"{code} %{{y:.4g}} {unit}, hour %{{x}} (measured)<extra></extra>"),
                         row=row, col=1)
        for index, (name, outcome) in enumerate(result.outcomes.items()):
            colour = _colour(STRATEGY_COLOURS, index)
            bands = outcome.summary.bands.filter(pl.col("variable") == code).sort("hour")
            x = bands["hour"].to_numpy()
            for low, high, alpha in (("q05", "q95", 0.12), ("q25", "q75", 0.28)):
                lower = bands[low].cast(pl.Float64).to_numpy()
                upper = bands[high].cast(pl.Float64).to_numpy()
                figure.add_trace(go.Scatter(
                    x=np.concatenate([x, x[::-1]]), y=np.concatenate([upper, lower[::-1]]), fill="toself",
                    fillcolor=_rgba(colour, alpha), line={"width": 0}, hoverinfo="skip", legendgroup=name, showlegend=False,
                    name=f"{name} {'90' if low == 'q05' else '50'} %"), row=row, col=1)
            figure.add_trace(go.Scatter(
                x=x, y=bands["q50"].cast(pl.Float64).to_numpy(), mode="lines", name=name, legendgroup=name,
                showlegend=row == 1, line={"color": colour, "width": 2},
                hovertemplate=f"{name}: {code} median %{{y:.4g}} {unit}, hour %{{x}}<extra></extra>"), row=row, col=1)
    figure.add_vline(x=result.decision_hour - 0.5, line_dash="dash", line_color="#555555", row="all", col=1)
    figure.update_layout(height=230 * len(variables) + 110, margin={"l": 60, "r": 20, "t": 80, "b": 40}, template="plotly_white",
                         legend={"orientation": "h", "x": 0, "y": 0.995, "yanchor": "top", "yref": "container"},
                         hovermode="closest")
    figure.update_xaxes(title_text="ICU hour", row=len(variables), col=1)
    figure.update_annotations(font_size=12, x=0, xanchor="left")
    return figure


def outcome_distribution_figure(result: WhatIfResult, score: str, horizon_hours: int) -> go.Figure:
    """Each strategy's sampled ``score`` (``"sofa"`` or ``"apache_ii"``) ``horizon_hours`` after the
    decision hour, side by side (box with every sample); samples dead by then are left out."""
    column = f"{score}_at_{horizon_hours}h"
    figure = go.Figure()
    for index, (name, outcome) in enumerate(result.outcomes.items()):
        frame = outcome.summary.sample_outcomes
        if column not in frame.columns:
            raise ValueError(f"no {column} outcome; the what-if reports {', '.join(frame.columns)}")
        values = frame[column].drop_nulls().cast(pl.Float64).to_numpy()
        figure.add_trace(go.Box(y=values, name=name, boxpoints="all", jitter=0.4, pointpos=0,
                                marker_color=_colour(STRATEGY_COLOURS, index)))
    title = {"sofa": "SOFA", "apache_ii": "APACHE II"}.get(score, score)
    figure.update_layout(height=320, margin={"l": 60, "r": 20, "t": 40, "b": 40}, template="plotly_white", showlegend=False,
                         title={"text": f"{title} {horizon_hours} h after the decision", "font": {"size": 13}},
                         yaxis_title=f"{title} (points, worst over 24 h)")
    return figure


def event_probability_figure(result: WhatIfResult, labels: Mapping[str, str]) -> go.Figure:
    """Probability of each critical event (and death) within the horizon, strategies side by side;
    hovering shows the event's ``labels`` entry and its median onset (hours after the decision hour)."""
    figure = go.Figure()
    for index, (name, outcome) in enumerate(result.outcomes.items()):
        events = outcome.summary.events
        onset = ["-" if value is None else f"{value:.0f} h" for value in events["onset_q50"].to_list()]
        figure.add_trace(go.Bar(
            x=[code.replace("_", " ") for code in events["event"].to_list()], y=events["probability"].to_numpy(), name=name,
            marker_color=_colour(STRATEGY_COLOURS, index),
            customdata=np.column_stack([onset, [labels.get(code, code) for code in events["event"].to_list()]]),
            hovertemplate=f"{name}: %{{customdata[1]}}<br>probability %{{y:.0%}}<br>median onset %{{customdata[0]}}<extra></extra>"))
    figure.update_layout(barmode="group", height=340, margin={"l": 60, "r": 20, "t": 40, "b": 90}, template="plotly_white",
                         yaxis={"title": "probability within the horizon", "range": [0, 1.02], "tickformat": ".0%"},
                         title={"text": "critical events", "font": {"size": 13}}, legend={"orientation": "h", "y": 1.12, "x": 0})
    return figure


def event_onset_figure(result: WhatIfResult) -> go.Figure:
    """When each critical event starts (hours after the decision hour) in the futures that have it,
    strategies side by side; an event no future has is left out."""
    figure = go.Figure()
    for index, (name, outcome) in enumerate(result.outcomes.items()):
        frame = outcome.summary.sample_outcomes
        events, onsets = [], []
        for column in (c for c in frame.columns if c.endswith("_onset_h")):
            values = frame[column].drop_nulls().cast(pl.Float64).to_list()
            code = column.removesuffix("_onset_h")
            events += [code.replace("_", " ")] * len(values)
            onsets += values
        figure.add_trace(go.Box(x=events, y=onsets, name=name, boxpoints="all", jitter=0.3, pointpos=0,
                                marker_color=_colour(STRATEGY_COLOURS, index)))
    figure.update_layout(boxmode="group", height=340, margin={"l": 60, "r": 20, "t": 40, "b": 90}, template="plotly_white",
                         yaxis_title="onset (hours after the decision)", legend={"orientation": "h", "y": 1.12, "x": 0},
                         title={"text": "when events start", "font": {"size": 13}})
    return figure


def consulted_figure(consulted: pl.DataFrame, strategy: str) -> go.Figure:
    """Share of agent-hours in which each system's agent (rows) consulted each other system
    (columns), from :attr:`OutcomeSummary.consulted`."""
    systems = list(SYSTEMS)
    share = np.full((len(systems), len(systems)), np.nan)
    for system, other, value in consulted.select("system", "consulted", "share").iter_rows():
        if system in systems and other in systems:
            share[systems.index(system), systems.index(other)] = value
    figure = go.Figure(go.Heatmap(z=share, x=systems, y=systems, colorscale="Purples", zmin=0, zmax=1,
                                  colorbar={"title": "share", "tickformat": ".0%"},
                                  hovertemplate="%{y} agent consulted %{x} in %{z:.0%} of hours<extra></extra>"))
    figure.update_layout(height=380, margin={"l": 100, "r": 20, "t": 40, "b": 90}, template="plotly_white",
                         title={"text": f"systems consulted: {strategy}", "font": {"size": 13}},
                         xaxis_title="consulted system", yaxis={"title": "agent", "autorange": "reversed"})
    return figure
