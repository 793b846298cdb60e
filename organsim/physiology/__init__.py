"""Layer 3: the mechanistic multi-organ sepsis engine, its clinician behaviour policy and the oracle.

>>> from organsim.physiology import EngineConfig, NoTreatmentPolicy, PhysiologyEngine
>>> engine = PhysiologyEngine(EngineConfig(n_patients=20, hours=24, seed=1))
>>> cohort = engine.generate()                      # canonical Cohort, source "engine"
>>> what_if = engine.counterfactual(3, NoTreatmentPolicy(), from_hour=5)
>>> what_if.true.shape == (1, 24, len(engine.variables))   # (stays, hours, variables): the truth
True

Modules: :mod:`~organsim.physiology.patients` (who the patients are),
:mod:`~organsim.physiology.model` (the equations), :mod:`~organsim.physiology.observation` (what
gets charted), :mod:`~organsim.physiology.policies` (the treatment-policy protocol, the clinician and
simple strategies), :mod:`~organsim.physiology.labels` (SOFA, Sepsis-3, death),
:mod:`~organsim.physiology.noise` (per-stay random streams), :mod:`~organsim.physiology.engine`
(runs, cohorts, counterfactuals), :mod:`~organsim.physiology.calibration` (comparison with
PhysioNet 2019).
"""

from organsim.physiology.engine import ENGINE_VERSION, EngineConfig, PhysiologyEngine, Trajectory
from organsim.physiology.model import ModelConstants
from organsim.physiology.patients import PatientParameters
from organsim.physiology.policies import (
    POLICY_NAMES,
    ClinicianConfig,
    ClinicianPolicy,
    ComposedPolicy,
    ConstantPolicy,
    FixedSchedulePolicy,
    NoTreatmentPolicy,
    ObservedState,
    TreatmentPolicy,
    named_policy,
)

__all__ = [
    "ENGINE_VERSION",
    "POLICY_NAMES",
    "ClinicianConfig",
    "ClinicianPolicy",
    "ComposedPolicy",
    "ConstantPolicy",
    "EngineConfig",
    "FixedSchedulePolicy",
    "ModelConstants",
    "NoTreatmentPolicy",
    "ObservedState",
    "PatientParameters",
    "PhysiologyEngine",
    "Trajectory",
    "TreatmentPolicy",
    "named_policy",
]
