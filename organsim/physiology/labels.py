"""Outcome labels from the latent truth: a SOFA score, Sepsis-3 onset and death.

organsim.scores computes SOFA from observed data; this module cannot import it (same layer) and
does not need to: the engine knows the true state every hour, so it scores that.

SOFA (Vincent et al., Intensive Care Med 1996;22:707), on true hourly values:

- respiration: PaO2/FiO2 >= 400: 0, < 400: 1, < 300: 2, < 200 with ventilation: 3, < 100 with
  ventilation: 4 (without ventilation at most 2);
- coagulation: platelets >= 150: 0, < 150: 1, < 100: 2, < 50: 3, < 20: 4 (x10^3/uL);
- liver: bilirubin < 1.2: 0, < 2: 1, < 6: 2, < 12: 3, else 4 (mg/dL);
- cardiovascular: MAP >= 70: 0, < 70: 1, norepinephrine <= 0.1: 3, > 0.1: 4 (ug/kg/min);
- central nervous system: the unsedated GCS (latent; sedation hides it at the bedside)
  15: 0, 13-14: 1, 10-12: 2, 6-9: 3, < 6: 4;
- renal: creatinine < 1.2: 0, < 2: 1, < 3.5: 2, < 5: 3, else 4 (mg/dL), or urine over the last
  24 h < 500 mL: 3, < 200 mL: 4 (the larger).

Sepsis-3 (Singer et al., JAMA 2016;315:801): infection plus an acute rise of SOFA by 2 or more.
Here the infection is known, not suspected: onset is the first hour from the infection's start
(and within 72 h of it) at which SOFA exceeds its value at the start of the infection by >= 2. An
onset before ICU admission is reported as hour 1 (sepsis present on admission); an onset after the
stay ended (death) does not count. Non-infected patients are never septic, whatever their SOFA.

Death: the first ICU hour at which tissue damage reaches the patient's lethal threshold; the stay
ends with that hour.
"""

from __future__ import annotations

import numpy as np

SEPSIS_WINDOW_HOURS = 72


def _bins(values: np.ndarray, edges: tuple[float, ...], *, descending: bool) -> np.ndarray:
    """Points 0..len(edges) by how many cut-offs ``values`` pass (below each edge when ``descending``)."""
    points = np.zeros(values.shape, dtype=np.int8)
    for edge in edges:
        points += (values < edge) if descending else (values >= edge)
    return points


def sofa_score(
    pao2: np.ndarray,
    fio2: np.ndarray,
    ventilated: np.ndarray,
    platelets: np.ndarray,
    bilirubin: np.ndarray,
    mean_arterial_pressure: np.ndarray,
    norepinephrine: np.ndarray,
    gcs_unsedated: np.ndarray,
    creatinine: np.ndarray,
    urine_24h_ml: np.ndarray,
) -> np.ndarray:
    """Total SOFA (0-24) of true values; every argument has the same shape, e.g. ``(n, hours)``."""
    ratio = pao2 / fio2
    respiration = _bins(ratio, (400.0, 300.0, 200.0, 100.0), descending=True)
    respiration = np.where(ventilated > 0.5, respiration, np.minimum(respiration, 2))
    coagulation = _bins(platelets, (150.0, 100.0, 50.0, 20.0), descending=True)
    liver = _bins(bilirubin, (1.2, 2.0, 6.0, 12.0), descending=False)
    cardiovascular = np.where(
        norepinephrine > 0.1, 4, np.where(norepinephrine > 0.0, 3, (mean_arterial_pressure < 70.0).astype(np.int8))
    )
    nervous = np.select([gcs_unsedated >= 15, gcs_unsedated >= 13, gcs_unsedated >= 10, gcs_unsedated >= 6], [0, 1, 2, 3], 4)
    renal = np.maximum(
        _bins(creatinine, (1.2, 2.0, 3.5, 5.0), descending=False),
        np.where(urine_24h_ml < 200.0, 4, np.where(urine_24h_ml < 500.0, 3, 0)),
    )
    return (respiration + coagulation + liver + cardiovascular + nervous + renal).astype(np.int16)


def rolling_24h_urine(urine_ml: np.ndarray) -> np.ndarray:
    """``(n, hours)`` urine over the last 24 h (fewer hours early on are scaled up to 24 h)."""
    cumulative = np.cumsum(urine_ml, axis=1)
    window = np.minimum(np.arange(1, urine_ml.shape[1] + 1), 24)
    shifted = np.concatenate([np.zeros((urine_ml.shape[0], 24)), cumulative], axis=1)[:, : urine_ml.shape[1]]
    return (cumulative - shifted) * 24.0 / window[None, :]


def sepsis_onset(
    sofa: np.ndarray, infection_hour: np.ndarray, first_hour: int, n_hours: np.ndarray
) -> np.ndarray:
    """ICU hour of Sepsis-3 onset per patient (NaN = not septic).

    Parameters
    ----------
    sofa
        ``(n, total_hours)`` SOFA of every engine hour; column ``k`` is engine hour ``first_hour + k``
        (ICU hours are 1, 2, ...; hours <= 0 are before admission).
    infection_hour
        ``(n,)`` engine-clock time the infection started (NaN = never infected).
    first_hour
        Engine hour of column 0 (e.g. -47 when 48 pre-ICU hours are simulated).
    n_hours
        ``(n,)`` ICU hours the stay lasted (the death hour, or all hours).
    """
    n, total = sofa.shape
    hours = first_hour + np.arange(total)
    onset = np.full(n, np.nan)
    infected = np.isfinite(infection_hour)
    # the engine hour whose end first follows the infection's start holds the pre-infection SOFA
    start_hour = np.where(infected, np.floor(np.nan_to_num(infection_hour, nan=0.0)), 0).astype(int)
    base_col = np.clip(start_hour - first_hour, 0, total - 1)
    baseline = sofa[np.arange(n), base_col]
    after = (hours[None, :] > start_hour[:, None]) & (hours[None, :] <= start_hour[:, None] + SEPSIS_WINDOW_HOURS)
    rise = (sofa - baseline[:, None] >= 2) & after & infected[:, None]
    any_rise = rise.any(axis=1)
    first = hours[np.argmax(rise, axis=1)]
    icu_hour = np.maximum(first, 1)
    valid = any_rise & (icu_hour <= n_hours)
    onset[valid] = icu_hour[valid]
    return onset
