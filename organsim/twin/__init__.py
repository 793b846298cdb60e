"""Layer 5: the coordinated twin: organ agents, reference selection, error correction, batched rollouts.

>>> from organsim.twin import PatientTwin, Rollout                                # doctest: +SKIP
>>> twin = PatientTwin.load(model_dir, device="auto")                               # doctest: +SKIP
>>> r = twin.rollout(batch, horizon=24, n_samples=8, seed=0, references="policy")  # doctest: +SKIP
>>> r.values.shape       # (n_samples, B, horizon, V) raw catalog units            # doctest: +SKIP

Modules: :mod:`~organsim.twin.twin` (PatientTwin, Rollout, the hour-by-hour loop),
:mod:`~organsim.twin.policy` (the reference-selection policy), :mod:`~organsim.twin.summary` (the
state summary it decides from), :mod:`~organsim.twin.bedside` (the state a treatment policy sees),
:mod:`~organsim.twin.correction` and :mod:`~organsim.twin.constraints` (the error-correction agent),
:mod:`~organsim.twin.calibration` (calibrated bands), :mod:`~organsim.twin.draw_correlation` (the
correlation of one simulated hour's draws across variables).
"""

from organsim.twin.bedside import BedsideRecord
from organsim.twin.correction import ErrorCorrector
from organsim.twin.draw_correlation import DrawCorrelation, fit_draw_correlation
from organsim.twin.policy import ReferencePolicy, ReferencePolicyConfig
from organsim.twin.summary import state_summary
from organsim.twin.twin import CORRECTION_COLUMNS, Corrector, PatientTwin, Rollout, TwinForecaster

__all__ = [
    "CORRECTION_COLUMNS",
    "BedsideRecord",
    "Corrector",
    "DrawCorrelation",
    "ErrorCorrector",
    "PatientTwin",
    "ReferencePolicy",
    "ReferencePolicyConfig",
    "Rollout",
    "TwinForecaster",
    "fit_draw_correlation",
    "state_summary",
]
