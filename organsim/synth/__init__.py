"""Layer 6: synthetic cohorts, sampled without copying real patients and rolled forward by the twin.

>>> synthesizer = CohortSynthesizer.fit(train_cohort)                                  # doctest: +SKIP
>>> result = synthesizer.generate(PatientTwin.load(model_dir), SynthesisConfig(patients=100, max_hours=48))  # doctest: +SKIP
>>> result.cohort.save("synthetic/")                                                  # doctest: +SKIP

:class:`InitialStateModel` (a Gaussian copula over statics, stay structure and first hours),
:class:`ObservationModel` (which simulated values get charted), the twin with a behaviour policy
for treatments, and labels read off the generated physiology (:mod:`organsim.synth.labels`).
:func:`training_split` gives the train split a model directory was trained on, checked against its record.
"""

from organsim.synth.generate import CohortSynthesizer, Simulator, SynthesisConfig, SynthesisResult
from organsim.synth.initial import InitialStateModel
from organsim.synth.observation import ObservationModel, ObservationState
from organsim.synth.training import training_split

__all__ = [
    "CohortSynthesizer",
    "InitialStateModel",
    "ObservationModel",
    "ObservationState",
    "Simulator",
    "SynthesisConfig",
    "SynthesisResult",
    "training_split",
]
