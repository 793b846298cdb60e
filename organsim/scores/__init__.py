"""Layer 3: clinical scores and critical events, hour by hour, for real cohorts and simulated
trajectories alike (frame -> frame, vectorised with polars over whole cohorts).

>>> from organsim.scores import score_cohort
>>> hourly_scores, events = score_cohort(cohort)          # doctest: +SKIP

Scores: :func:`sofa` (Vincent 1996), :func:`apache_ii` (Knaus 1985), :func:`news2` (RCP 2017),
:func:`qsofa` (Singer 2016), :func:`sirs` (Bone 1992); :func:`sepsis3_onset`; :func:`critical_events`
from the catalog's event rules; :func:`compare_event_chains` for real vs simulated. Missing values
follow one documented rule (:mod:`organsim.scores.imputation`); the published point tables are in
:mod:`organsim.scores.tables`.
"""

from organsim.scores.apache_ii import APACHE_II_COMPONENTS, apache_ii
from organsim.scores.chains import EventChainComparison, compare_event_chains
from organsim.scores.cohort import (
    SEPSIS_EVENT,
    Scores,
    first_window,
    score_cohort,
    score_trajectories,
)
from organsim.scores.events import EVENT_SCHEMA, critical_events
from organsim.scores.imputation import DEFAULT_CARRY_FORWARD_HOURS, carry_forward
from organsim.scores.news2 import NEWS2_COMPONENTS, news2
from organsim.scores.qsofa import QSOFA_COMPONENTS, qsofa
from organsim.scores.sepsis import SEPSIS_SCHEMA, sepsis3_onset
from organsim.scores.sirs import SIRS_COMPONENTS, sirs
from organsim.scores.sofa import SOFA_COMPONENTS, sofa, sofa_stratum

__all__ = [
    "APACHE_II_COMPONENTS",
    "DEFAULT_CARRY_FORWARD_HOURS",
    "EVENT_SCHEMA",
    "NEWS2_COMPONENTS",
    "QSOFA_COMPONENTS",
    "SEPSIS_EVENT",
    "SEPSIS_SCHEMA",
    "SIRS_COMPONENTS",
    "SOFA_COMPONENTS",
    "EventChainComparison",
    "Scores",
    "apache_ii",
    "carry_forward",
    "compare_event_chains",
    "critical_events",
    "first_window",
    "news2",
    "qsofa",
    "score_cohort",
    "score_trajectories",
    "sepsis3_onset",
    "sirs",
    "sofa",
    "sofa_stratum",
]
