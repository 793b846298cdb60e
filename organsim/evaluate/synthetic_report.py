"""The synthetic-cohort report: fidelity, utility and privacy in metrics.json and one HTML file.

:func:`build_synthetic_report` runs every measure of :mod:`~organsim.evaluate.fidelity`,
:mod:`~organsim.evaluate.utility` and :mod:`~organsim.evaluate.privacy` on three cohorts:

- ``synthetic``: the cohort under test;
- ``real_train``: the real stays the generator learned from (the reference of every comparison);
- ``real_test``: real stays it never saw: the test set of the utility tasks, the holdout of the
  privacy measures, and the *holdout baseline* of the fidelity measures (real-test compared with
  real-train shows how far two real samples lie apart, so a synthetic figure can be read against
  it).

The detection classifier is the exception to "real-train is the reference": the checked detection
AUROC tells the synthetic stays from *real-test* stays. A generator that learned from real-train
can be tuned toward it (the generator's realism screen, :mod:`organsim.synth.screening`, keeps the
stays a classifier finds hardest to tell from real-train), so only stays it never saw judge it
fairly. The detection against real-train is reported beside it (``detection_train``), with its
holdout baseline (real-test told from real-train: about 0.5).

:func:`write_synthetic_report` writes ``REPORT_DIR/metrics.json`` and ``REPORT_DIR/report.html``
(self-contained: plots are embedded PNGs, no script or network access) atomically.

The report ends with the issue's acceptance checks (:data:`TARGETS`): an AUROC drop of at most
0.02 for sepsis within 6 hours with both classifiers, detection AUROC below 0.7, synthetic stays
no closer to real-train than real-test stays at the median, membership-inference AUROC below 0.55.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

from organsim.data.cohort import Cohort
from organsim.evaluate import fidelity, privacy, utility
from organsim.utils.io import atomic_directory, atomic_write_bytes, atomic_write_text

ProgressCallback = Callable[[str], None]
FIDELITY_STEPS = ("distributions", "correlations", "sequences", "missingness", "detection")
TARGETS = {
    "sepsis_auroc_drop": 0.02,
    "detection_auroc": 0.7,
    "membership_inference_auroc": 0.55,
}
PLOT_VALUES = 20_000
REAL, SYNTHETIC, HOLDOUT = "#1f77b4", "#d62728", "#7f7f7f"
LIBRARIES = ("scipy (KS, Wasserstein), scikit-learn (logistic regression, AUROC, AUPRC, nearest neighbours, "
             "cross-validation), LightGBM (gradient-boosted trees), matplotlib (plots)")


@dataclass
class ReportConfig:
    """Settings of one report; stored in metrics.json.

    Attributes
    ----------
    seed
        Seeds every sample, split and classifier: the same seed gives the same metrics.json.
    max_stays
        Use at most this many stays of each cohort (a seeded sample); None = all.
    window_hours
        The early-warning features' recent window.
    detection_folds
        Cross-validation folds of the detection classifier.
    max_values
        Values per variable and cohort in the distribution distances (a seeded sample beyond it).
    tasks, classifiers
        The utility tasks and classifiers (:data:`~organsim.evaluate.utility.TASKS`, ``CLASSIFIERS``).
    match_training_stays
        Train the utility classifiers on as many real-train stays as there are synthetic stays (or
        the reverse), so the AUROC drop measures quality, not quantity (see
        :mod:`~organsim.evaluate.utility`).
    threads
        CPU threads of LightGBM and of the linear algebra (BLAS/OpenMP pools). One by default: on
        the 2-core development machine, shared with other work, two threads made LightGBM 16 and
        the logistic regression 20 times slower (their workers busy-wait for each other).
    """

    seed: int = 0
    max_stays: int | None = None
    window_hours: int = 6
    detection_folds: int = 5
    max_values: int = 200_000
    tasks: tuple[str, ...] = utility.TASKS
    classifiers: tuple[str, ...] = utility.CLASSIFIERS
    threads: int = 1
    match_training_stays: bool = True

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.max_stays is not None and self.max_stays < self.detection_folds:
            raise ValueError(f"max_stays must be at least detection_folds ({self.detection_folds}), got {self.max_stays}")
        unknown = [t for t in self.tasks if t not in utility.TASKS] + [c for c in self.classifiers if c not in utility.CLASSIFIERS]
        if unknown:
            raise ValueError(f"unknown task or classifier {unknown}; tasks: {utility.TASKS}, classifiers: {utility.CLASSIFIERS}")

    @property
    def steps(self) -> int:
        """How many times :func:`build_synthetic_report` calls its progress callback."""
        return len(FIDELITY_STEPS) + 2 * len(self.tasks) * len(self.classifiers) + 2  # + privacy, plots


@dataclass
class SyntheticReport:
    """``metrics`` (the metrics.json document) and ``figures`` (name -> PNG bytes, in report order)."""

    metrics: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)


def _cohort_facts(cohort: Cohort) -> dict[str, Any]:
    counts = cohort.counts()
    death_known = cohort.stays["death"].drop_nulls()
    return {
        "source": cohort.meta.get("source"),
        "stays": counts["stays"],
        "hours": counts["hours"],
        "mean_hours_per_stay": counts["hours"] / max(counts["stays"], 1),
        "septic_fraction": counts["septic_stays"] / max(counts["stays"], 1),
        "death_fraction": float(death_known.mean()) if len(death_known) else None,
    }


def _checks(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The acceptance checks of the module docstring; a check without a value (task skipped) has passed None."""
    checks = []
    sepsis = metrics["utility"].get("sepsis_6h", {})
    for name in metrics["settings"]["classifiers"]:
        scores = sepsis.get("classifiers", {}).get(name, {})
        drop = scores.get("auroc_drop")
        checks.append({"check": f"sepsis_6h AUROC drop, {name}", "value": drop, "target": f"<= {TARGETS['sepsis_auroc_drop']}",
                       "passed": None if drop is None else drop <= TARGETS["sepsis_auroc_drop"],
                       "interval_95": scores.get("auroc_drop_interval_95")})
    detection = metrics["fidelity"]["detection"]["auroc"]
    checks.append({"check": "detection AUROC (synthetic vs real-test)", "value": detection, "target": f"< {TARGETS['detection_auroc']}",
                   "passed": detection < TARGETS["detection_auroc"]})
    dcr = metrics["privacy"]["distance_to_closest_record"]
    checks.append({"check": "median distance to closest record, synthetic / holdout",
                   "value": dcr["median_ratio"], "target": ">= 1", "passed": dcr["synthetic_not_closer_at_median"],
                   "interval_95": dcr["median_ratio_interval_95"]})
    attack = metrics["privacy"]["membership_inference"]["auroc"]
    checks.append({"check": "membership-inference AUROC", "value": attack,
                   "target": f"< {TARGETS['membership_inference_auroc']}", "passed": attack < TARGETS["membership_inference_auroc"]})
    return checks


def build_synthetic_report(
    synthetic: Cohort,
    real_train: Cohort,
    real_test: Cohort,
    config: ReportConfig | None = None,
    *,
    inputs: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> SyntheticReport:
    """Measure ``synthetic`` against ``real_train`` and ``real_test`` (see the module docstring).

    Parameters
    ----------
    synthetic, real_train, real_test
        The three cohorts (whole; take splits before calling).
    config
        Settings (default :class:`ReportConfig`).
    inputs
        Optional description of where the cohorts came from (e.g. their directories), stored in
        ``settings.inputs``.
    progress
        Called with a description before each of ``config.steps`` steps.

    Returns
    -------
    SyntheticReport
        The metrics document and the figures.
    """
    config = config or ReportConfig()
    with threadpool_limits(limits=config.threads):
        return _build(synthetic, real_train, real_test, config, inputs or {}, progress)


def _build(synthetic: Cohort, real_train: Cohort, real_test: Cohort, config: ReportConfig, inputs: dict[str, str],
           progress: ProgressCallback | None) -> SyntheticReport:
    seed = config.seed

    def step(description: str) -> None:
        if progress:
            progress(description)

    synthetic, real_train, real_test = (fidelity.subsample_stays(c, config.max_stays, seed + i)
                                        for i, c in enumerate((synthetic, real_train, real_test)))
    for name, cohort in (("synthetic", synthetic), ("real-train", real_train), ("real-test", real_test)):
        if cohort.hourly.height == 0:
            raise ValueError(f"the {name} cohort has no hourly rows")
    variables = fidelity.measured_variables(real_train, fidelity.MIN_VALUES)
    if not variables:
        raise ValueError(f"real-train measures no variable at least {fidelity.MIN_VALUES} times")
    absent = [v for v in variables if synthetic.hourly[v].null_count() == synthetic.hourly.height]

    step("fidelity: per-variable distributions")
    distributions = {name: fidelity.distribution_distances(real_train, cohort, variables, max_values=config.max_values, seed=seed)
                     for name, cohort in (("synthetic", synthetic), ("holdout", real_test))}
    step("fidelity: correlations")
    correlations = {name: fidelity.compare_correlations(real_train, cohort, variables)
                    for name, cohort in (("synthetic", synthetic), ("holdout", real_test))}
    step("fidelity: sequence statistics")
    sequences = {name: fidelity.sequence_distances(real_train, cohort, variables, max_values=config.max_values, seed=seed)
                 for name, cohort in (("synthetic", synthetic), ("holdout", real_test))}
    step("fidelity: missingness")
    missingness = fidelity.missingness_rates(real_train, synthetic, variables)
    step("fidelity: real-vs-synthetic detection")
    detection, detection_train, detection_holdout = (
        {"reference": reference, **fidelity.detection_auroc(real, candidate, variables, folds=config.detection_folds,
                                                            seed=seed, threads=config.threads)}
        for reference, real, candidate in (("real_test", real_test, synthetic), ("real_train", real_train, synthetic),
                                           ("real_train", real_train, real_test)))

    tstr = utility.train_on_synthetic_test_on_real(
        real_train, synthetic, real_test, variables, tasks=config.tasks, classifiers=config.classifiers,
        window_hours=config.window_hours, seed=seed, threads=config.threads,
        match_training_stays=config.match_training_stays, progress=step)
    skipped_steps = sum(2 * len(config.classifiers) for t in tstr.values() if t["status"] == "skipped")
    for _ in range(skipped_steps):
        step("utility: skipped task")

    step("privacy: distance to closest record, membership inference")
    privacy_summary, dcr, attack = privacy.privacy_metrics(real_train, synthetic, real_test, variables, seed=seed)

    metrics: dict[str, Any] = {
        "report": "organsim synthetic cohort report",
        "organsim_version": version("organsim"),
        "settings": {**asdict(config), "tasks": list(config.tasks), "classifiers": list(config.classifiers),
                     "variables": variables, "utility_parameters": asdict(utility.PHYSIONET_2019),
                     "inputs": inputs, "libraries": LIBRARIES},
        "cohorts": {name: _cohort_facts(c) for name, c in
                    (("synthetic", synthetic), ("real_train", real_train), ("real_test", real_test))},
        "fidelity": {
            "variables_absent_in_synthetic": absent,
            "distributions": distributions,
            "correlations": {name: c.summary() for name, c in correlations.items()},
            "sequences": sequences,
            "missingness": missingness,
            "detection": detection,
            "detection_train": {**detection_train, "holdout_auroc": detection_holdout["auroc"]},
        },
        "utility": tstr,
        "privacy": privacy_summary,
    }
    metrics["checks"] = _checks(metrics)
    step("plots")
    figures = {
        "distributions": _plot_distributions(real_train, synthetic, variables, seed),
        "distribution_distances": _plot_ks(distributions, variables),
        "correlations": _plot_correlations(correlations["synthetic"]),
        "missingness": _plot_missingness(missingness),
        "sequences": _plot_sequences(real_train, synthetic, sequences, variables),
        "detection": _plot_detection(detection),
        "utility": _plot_utility(tstr),
        "privacy": _plot_privacy(dcr, attack),
    }
    return SyntheticReport(metrics, {k: v for k, v in figures.items() if v is not None})


# ------------------------------------------------------------------------------------------ plots
def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})  # constrained layout: no "tight" redraw
    return buffer.getvalue()


def _grid(n: int, columns: int, width: float = 2.6, height: float = 2.0) -> tuple[Figure, np.ndarray]:
    rows = max(1, math.ceil(n / columns))
    figure = Figure(figsize=(columns * width, rows * height), layout="constrained")
    return figure, np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())


def _plot_distributions(real: Cohort, synthetic: Cohort, variables: list[str], seed: int) -> bytes:
    """Density histograms of each variable's hourly values, real-train vs synthetic."""
    figure, axes = _grid(len(variables), 6)
    for ax, v in zip(axes, variables, strict=False):
        reference = fidelity.measured_values(real, v, PLOT_VALUES, seed)
        candidate = fidelity.measured_values(synthetic, v, PLOT_VALUES, seed)
        low, high = np.quantile(reference, [0.005, 0.995])
        if high <= low:
            low, high = low - 0.5, high + 0.5
        bins = np.linspace(low, high, 41)
        ax.hist(reference, bins=bins, density=True, histtype="step", color=REAL, label="real-train")
        if len(candidate):
            ax.hist(np.clip(candidate, low, high), bins=bins, density=True, histtype="step", color=SYNTHETIC,
                    label="synthetic")
        unit = real.catalog.variable(v).unit
        ax.set_title(f"{v} ({unit})", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    for ax in axes[len(variables):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6, loc="upper right")
    return _png(figure)


def _plot_ks(distributions: dict[str, Any], variables: list[str]) -> bytes:
    figure = Figure(figsize=(7, 0.22 * len(variables) + 1), layout="constrained")
    ax = figure.subplots()
    y = np.arange(len(variables))
    for offset, (name, color) in ((-0.2, ("synthetic", SYNTHETIC)), (0.2, ("holdout", HOLDOUT))):
        ks = [distributions[name]["per_variable"][v]["ks"] for v in variables]
        ax.barh(y + offset, [np.nan if k is None else k for k in ks], height=0.4, color=color,
                label=f"{name} vs real-train")
    ax.set_yticks(y, variables, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("Kolmogorov-Smirnov statistic (0 = same distribution)")
    ax.legend(fontsize=7, loc="lower right")
    return _png(figure)


def _plot_correlations(comparison: fidelity.CorrelationComparison) -> bytes:
    figure = Figure(figsize=(13, 4.6), layout="constrained")
    axes = figure.subplots(1, 3)
    panels = (("real-train", comparison.reference, "RdBu_r", (-1, 1)),
              ("synthetic", comparison.candidate, "RdBu_r", (-1, 1)),
              ("synthetic minus real-train", comparison.candidate - comparison.reference, "PuOr_r", (-1, 1)))
    ticks = np.arange(len(comparison.variables))
    for ax, (title, matrix, cmap, (vmin, vmax)) in zip(axes, panels, strict=True):
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(ticks, comparison.variables, rotation=90, fontsize=5)
        ax.set_yticks(ticks, comparison.variables, fontsize=5)
    figure.colorbar(image, ax=axes, shrink=0.8, label="Pearson correlation (grey: too few pairs)")
    return _png(figure)


def _plot_missingness(missingness: dict[str, Any]) -> bytes:
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    ax = figure.subplots()
    rows = missingness["per_variable"]
    x = [r["reference"] for r in rows.values()]
    y = [r["candidate"] for r in rows.values()]
    ax.plot([0, 1], [0, 1], color=HOLDOUT, lw=0.8)
    ax.scatter(x, y, s=12, color=SYNTHETIC)
    for name, xi, yi in zip(rows, x, y, strict=True):
        ax.annotate(name, (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("fraction of hours not measured, real-train")
    ax.set_ylabel("fraction of hours not measured, synthetic")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    return _png(figure)


def _plot_sequences(real: Cohort, synthetic: Cohort, sequences: dict[str, Any], variables: list[str]) -> bytes:
    figure = Figure(figsize=(12, 0.2 * len(variables) + 2), layout="constrained")
    length_ax, ks_ax = figure.subplots(1, 2, width_ratios=(1, 1.4))
    lengths = [c.stays["n_hours"].to_numpy() for c in (real, synthetic)]
    bins = np.linspace(0, max(int(np.quantile(np.concatenate(lengths), 0.99)), 1), 41)
    for values, color, label in zip(lengths, (REAL, SYNTHETIC), ("real-train", "synthetic"), strict=True):
        length_ax.hist(np.clip(values, 0, bins[-1]), bins=bins, density=True, histtype="step", color=color, label=label)
    length_ax.set_xlabel("hourly rows per stay")
    length_ax.set_yticks([])
    length_ax.legend(fontsize=7, loc="upper right")
    y = np.arange(len(variables))
    for offset, (statistic, color) in zip((-0.27, 0, 0.27), (("stay_mean", "#2ca02c"), ("stay_std", "#9467bd"),
                                                            ("hourly_change", "#ff7f0e")), strict=True):
        ks = [sequences["synthetic"]["per_variable"][v][statistic]["ks"] for v in variables]
        ks_ax.barh(y + offset, [np.nan if k is None else k for k in ks], height=0.27, color=color, label=statistic)
    ks_ax.set_yticks(y, variables, fontsize=7)
    ks_ax.invert_yaxis()
    ks_ax.set_xlabel("KS statistic, synthetic vs real-train")
    ks_ax.legend(fontsize=7, loc="lower right")
    return _png(figure)


def _plot_detection(detection: dict[str, Any]) -> bytes | None:
    features = detection["top_features"]
    if not features:
        return None
    figure = Figure(figsize=(6, 0.3 * len(features) + 1), layout="constrained")
    ax = figure.subplots()
    ax.barh([f for f, _ in features], [g for _, g in features], color=SYNTHETIC)
    ax.invert_yaxis()
    ax.tick_params(labelsize=7)
    ax.set_xlabel("share of the detection classifier's split gain")
    return _png(figure)


def _plot_utility(tstr: dict[str, Any]) -> bytes | None:
    bars = [(f"{task}\n{name}", scores["real"]["auroc"], scores["synthetic"]["auroc"])
            for task, entry in tstr.items() if entry["status"] == "ok"
            for name, scores in entry["classifiers"].items()]
    if not bars:
        return None
    figure = Figure(figsize=(1.4 * len(bars) + 2, 3.6), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(bars))
    ax.bar(x - 0.2, [b[1] for b in bars], width=0.4, color=REAL, label="trained on real-train")
    ax.bar(x + 0.2, [b[2] for b in bars], width=0.4, color=SYNTHETIC, label="trained on synthetic")
    ax.axhline(0.5, color=HOLDOUT, lw=0.8, ls="--")
    ax.set_xticks(x, [b[0] for b in bars], fontsize=7)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("AUROC on real-test")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(figure)


def _plot_privacy(dcr: privacy.DistanceToClosestRecord, attack: privacy.MembershipInference) -> bytes:
    figure = Figure(figsize=(11, 3.6), layout="constrained")
    dcr_ax, attack_ax = figure.subplots(1, 2)
    both = np.concatenate([dcr.synthetic, dcr.holdout])
    bins = np.linspace(0, np.quantile(both, 0.99), 41)
    dcr_ax.hist(np.clip(dcr.synthetic, 0, bins[-1]), bins=bins, density=True, histtype="step", color=SYNTHETIC,
                label="synthetic -> real-train")
    dcr_ax.hist(np.clip(dcr.holdout, 0, bins[-1]), bins=bins, density=True, histtype="step", color=HOLDOUT,
                label="real-test -> real-train")
    dcr_ax.set_xlabel("distance to the closest real-train stay (standardised)")
    dcr_ax.set_yticks([])
    dcr_ax.legend(fontsize=7, loc="upper right")
    distances = np.concatenate([-attack.members, -attack.non_members])
    bins = np.linspace(0, np.quantile(distances, 0.99), 41)
    attack_ax.hist(np.clip(-attack.members, 0, bins[-1]), bins=bins, density=True, histtype="step", color=REAL,
                   label="real-train (members)")
    attack_ax.hist(np.clip(-attack.non_members, 0, bins[-1]), bins=bins, density=True, histtype="step", color=HOLDOUT,
                   label="real-test (non-members)")
    attack_ax.set_xlabel(f"distance to the closest synthetic stay (attack AUROC {attack.auroc:.3f})")
    attack_ax.set_yticks([])
    attack_ax.legend(fontsize=7, loc="upper right")
    return _png(figure)


# ------------------------------------------------------------------------------------------ HTML
def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "&ndash;"
    return html.escape(str(value))


class Markup(str):
    """Trusted HTML for a table cell (not escaped)."""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, Markup) else _number(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(report: SyntheticReport, name: str, caption: str) -> str:
    if name not in report.figures:
        return ""
    data = base64.b64encode(report.figures[name]).decode("ascii")
    return f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _check_value(check: dict[str, Any]) -> Markup:
    """The check's value, with its 95 % interval when it has one."""
    interval = check.get("interval_95")
    shown = _number(check["value"])
    return Markup(f"{shown} (95 %: {_number(interval[0])} &ndash; {_number(interval[1])})" if interval else shown)


def _verdict(passed: bool | None) -> Markup:
    if passed is None:
        return Markup('<span class="na">not measured</span>')
    return Markup('<span class="pass">pass</span>' if passed else '<span class="fail">fail</span>')


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%}figcaption{font-size:.85em;color:#555}
.pass{color:#fff;background:#2a7d2a;padding:0 .5em;border-radius:3px}.fail{color:#fff;background:#b22;padding:0 .5em;border-radius:3px}
.na{color:#555;background:#e5e5e5;padding:0 .5em;border-radius:3px}p.note{font-size:.85em;color:#444}
"""


def render_html(report: SyntheticReport) -> str:
    """The self-contained HTML page of ``report`` (inline CSS, PNGs as data URIs)."""
    m = report.metrics
    fid = m["fidelity"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Synthetic cohort report</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>Synthetic cohort report</h1>",
             f"<p class='note'>organsim {html.escape(m['organsim_version'])}; seed {m['settings']['seed']}; "
             f"{len(m['settings']['variables'])} variables (measured at least {fidelity.MIN_VALUES} times in real-train). "
             f"Libraries: {html.escape(LIBRARIES)}.</p>"]

    parts.append("<h2>Checks</h2>")
    parts.append(_table(["check", "value", "target", "verdict"],
                        [[c["check"], _check_value(c), c["target"], _verdict(c["passed"])] for c in m["checks"]]))

    parts.append("<h2>Cohorts</h2>")
    cohorts = m["cohorts"]
    inputs = m["settings"]["inputs"]
    parts.append(_table(["cohort", "source", "stays", "hours", "hours per stay", "septic fraction", "death fraction", "input"],
                        [[name, c["source"], c["stays"], c["hours"], c["mean_hours_per_stay"], c["septic_fraction"],
                          c["death_fraction"], inputs.get(name, "")] for name, c in cohorts.items()]))

    parts.append("<h2>Fidelity</h2>")
    dist, corr, seq, det = fid["distributions"], fid["correlations"], fid["sequences"], fid["detection"]
    parts.append("<p class='note'>Each figure compares a cohort with real-train. The holdout column compares real-test "
                 "with real-train: the distance two real samples of the same population lie apart.</p>")
    parts.append(_table(["measure", "synthetic", "holdout"], [
        ["mean KS, hourly values", dist["synthetic"]["mean_ks"], dist["holdout"]["mean_ks"]],
        ["mean Wasserstein / real std, hourly values", dist["synthetic"]["mean_wasserstein_normalised"],
         dist["holdout"]["mean_wasserstein_normalised"]],
        ["correlation matrix: mean |difference|", corr["synthetic"]["mean_abs_difference"], corr["holdout"]["mean_abs_difference"]],
        ["correlation matrix: Frobenius distance", corr["synthetic"]["frobenius"], corr["holdout"]["frobenius"]],
        ["correlation pairs compared", corr["synthetic"]["pairs"], corr["holdout"]["pairs"]],
        ["mean KS, per-stay means", seq["synthetic"]["mean_ks"]["stay_mean"], seq["holdout"]["mean_ks"]["stay_mean"]],
        ["mean KS, per-stay standard deviations", seq["synthetic"]["mean_ks"]["stay_std"], seq["holdout"]["mean_ks"]["stay_std"]],
        ["mean KS, hour-to-hour changes", seq["synthetic"]["mean_ks"]["hourly_change"], seq["holdout"]["mean_ks"]["hourly_change"]],
        ["KS, stay length", seq["synthetic"]["stay_length"]["ks"], seq["holdout"]["stay_length"]["ks"]],
        ["mean |missingness difference|", fid["missingness"]["mean_abs_difference"], None],
        ["detection AUROC against real-test (0.5 is best; checked)", det["auroc"], None],
        ["detection AUROC against real-train (holdout: real-test against real-train)", fid["detection_train"]["auroc"],
         fid["detection_train"]["holdout_auroc"]],
    ]))
    if fid["variables_absent_in_synthetic"]:
        parts.append("<p class='note'>Never measured in the synthetic cohort: "
                     + html.escape(", ".join(fid["variables_absent_in_synthetic"])) + ".</p>")
    parts.append(_image(report, "distributions", "Hourly values: real-train (blue) and synthetic (red) densities."))
    parts.append(_image(report, "distribution_distances", "Per-variable KS statistic against real-train."))
    rows = []
    for v in m["settings"]["variables"]:
        s, h = dist["synthetic"]["per_variable"][v], dist["holdout"]["per_variable"][v]
        miss = fid["missingness"]["per_variable"][v]
        rows.append([v, s["mean_reference"], s["mean_candidate"], s["ks"], h["ks"], s["wasserstein_normalised"],
                     h["wasserstein_normalised"], miss["reference"], miss["candidate"]])
    parts.append("<h3>Per variable</h3>")
    parts.append(_table(["variable", "mean real", "mean synthetic", "KS synthetic", "KS holdout", "W/std synthetic",
                         "W/std holdout", "missing real", "missing synthetic"], rows))
    parts.append(_image(report, "correlations", "Pairwise-complete Pearson correlations of the hourly values."))
    parts.append(_image(report, "missingness", "Missingness per variable (on the diagonal: same rate)."))
    parts.append(_image(report, "sequences", "Stay length, and KS of per-stay means, standard deviations and hour-to-hour changes."))
    parts.append(f"<h3>Detection</h3><p>A LightGBM classifier on per-stay summaries, {det['folds']}-fold cross-validated on "
                 f"{det['stays_per_cohort']:,} stays of each cohort, tells synthetic from real-train stays with out-of-fold "
                 f"AUROC <b>{det['auroc']:.3f}</b> (0.5: indistinguishable). What gives the synthetic stays away:</p>")
    parts.append(_image(report, "detection", "Summaries with the largest share of the detection classifier's gain."))

    parts.append("<h2>Utility: train on synthetic, test on real</h2>")
    matched = ("The larger training cohort was first reduced to a random sample as large as the smaller one, so the "
               "drop measures what the data are worth, not how much there is. " if m["settings"]["match_training_stays"] else "")
    parts.append("<p class='note'>Each classifier is trained once on real-train and once on synthetic (80 % of the stays; "
                 "the other 20 % for early stopping and the utility threshold) and scored on real-test. " + matched +
                 "Utility: the PhysioNet 2019 normalised utility (1 = perfect, 0 = never alarming).</p>")
    rows = []
    for task, entry in m["utility"].items():
        if entry["status"] != "ok":
            rows.append([task, "skipped: " + entry["reason"], None, None, None, None, None, None, None, None])
            continue
        for name, scores in entry["classifiers"].items():
            interval = scores.get("auroc_drop_interval_95")
            shown = Markup(f"{_number(interval[0])} &ndash; {_number(interval[1])}") if interval else None
            rows.append([task, name, scores["real"]["auroc"], scores["synthetic"]["auroc"], scores["auroc_drop"], shown,
                         scores["real"]["auprc"], scores["synthetic"]["auprc"], scores["real"].get("utility"),
                         scores["synthetic"].get("utility")])
    parts.append("<p class='note'>AUROC drop 95 %: the drop over resamples of the real-test stays (the test split's "
                 "sampling error only; another synthetic cohort or training seed adds its own).</p>")
    parts.append(_table(["task", "classifier", "AUROC real", "AUROC synthetic", "AUROC drop", "AUROC drop 95 %",
                         "AUPRC real", "AUPRC synthetic", "utility real", "utility synthetic"], rows))
    parts.append(_image(report, "utility", "AUROC on real-test of classifiers trained on real-train and on synthetic data."))

    parts.append("<h2>Privacy</h2>")
    dcr, attack = m["privacy"]["distance_to_closest_record"], m["privacy"]["membership_inference"]
    parts.append(_table(["measure", "synthetic -> real-train", "real-test -> real-train"], [
        ["median distance to closest record", dcr["synthetic_to_train"]["median"], dcr["holdout_to_train"]["median"]],
        ["median ratio synthetic / holdout (95 % bootstrap interval)", Markup(
            f"{_number(dcr['median_ratio'])} ({' &ndash; '.join(_number(x) for x in dcr['median_ratio_interval_95'] or [])})"), None],
        ["5th percentile", dcr["synthetic_to_train"]["p05"], dcr["holdout_to_train"]["p05"]],
        ["share closer than the holdout's 5th percentile", dcr["share_closer_than_holdout_p05"], 0.05],
        ["exact copies", dcr["exact_copies"], None],
    ]))
    parts.append(f"<p>Membership inference (distance to the closest synthetic stay, {attack['members']:,} members, "
                 f"{attack['non_members']:,} non-members): AUROC <b>{attack['auroc']:.3f}</b> (0.5: no leak).</p>")
    parts.append(_image(report, "privacy", "Distances to the closest record, and the membership attack's distances."))
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, non-finite floats to None, floats rounded to 6 significant digits."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    return value


def write_synthetic_report(report: SyntheticReport, out: str | Path, *, overwrite: bool = True) -> list[Path]:
    """Write ``out/metrics.json`` and ``out/report.html`` atomically; return their paths."""
    out = Path(out)
    document = json.dumps(_clean(report.metrics), indent=2) + "\n"
    page = render_html(report)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        atomic_write_text(tmp / "metrics.json", document)
        atomic_write_bytes(tmp / "report.html", page.encode("utf-8"))
    return [out / "metrics.json", out / "report.html"]
