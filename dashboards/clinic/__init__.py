"""Helpers of the clinicians' dashboard (``dashboards/app.py``): where the inputs are
(:mod:`~clinic.sources`), cached loading and per-stay tables (:mod:`~clinic.records`), plotly
figures (:mod:`~clinic.charts`), the what-if simulator (:mod:`~clinic.simulators`), strategies
edited in a form (:mod:`~clinic.strategy_form`), what-if outcome tables (:mod:`~clinic.outcomes`)
and small synthetic cohorts with their exports (:mod:`~clinic.synthetic`).

Everything here is plain Python over organsim's public API, testable without a browser; the pages
in ``dashboards/views/`` only lay it out.
"""
