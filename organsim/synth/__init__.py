"""Layer 6: synthetic cohorts, sampled without copying real patients and rolled forward by the twin.

>>> synthesizer = CohortSynthesizer.fit(train_cohort)                                  # doctest: +SKIP
>>> result = synthesizer.generate(PatientTwin.load(model_dir), SynthesisConfig(patients=100, max_hours=48))  # doctest: +SKIP
>>> result.cohort.save("synthetic/")                                                  # doctest: +SKIP

:class:`InitialStateModel` (a Gaussian copula over statics, stay structure and first hours),
:class:`ObservationModel` (which simulated values get charted, panels together), the twin with a
behaviour policy for treatments, :class:`BinSpreader` (the twin's bin values spread within their
bins), :class:`PressureConsistency` (MAP derived from SBP and DBP as in the training hours),
:class:`StayLevels` (the correlated levels a stay's labs are first charted at), and labels read off the generated physiology (:mod:`organsim.synth.labels`).
:func:`training_split` gives the train split a model directory was trained on, checked against its record.
"""

from organsim.synth.consistency import PressureConsistency
from organsim.synth.dequantize import BinSpreader
from organsim.synth.generate import CohortSynthesizer, Simulator, SynthesisConfig, SynthesisResult
from organsim.synth.initial import InitialStateModel
from organsim.synth.levels import StayLevels
from organsim.synth.observation import ObservationModel, ObservationState
from organsim.synth.training import training_split

__all__ = [
    "BinSpreader",
    "CohortSynthesizer",
    "InitialStateModel",
    "ObservationModel",
    "ObservationState",
    "PressureConsistency",
    "Simulator",
    "SynthesisConfig",
    "StayLevels",
    "SynthesisResult",
    "training_split",
]
