"""Scheduled sampling: train the agents on inputs that hold their own sampled forecasts.

In free-running rollouts the twin feeds its own draws of the vital signs back as the next hour
(:class:`~organsim.agents.forecaster.AgentStepper`); teacher-forced training only ever shows it
real values, so its errors compound at generation time (exposure bias: on PhysioNet 2019 the
one-step forecasts under-revert to the stay's level and free-running vitals wander). Scheduled
sampling (Bengio et al., 2015) replaces some inputs by the model's own predictions while the
targets stay the real values. For a transformer trained on whole windows in one pass it is done
in two passes (Mihaylova & Martins, "Scheduled Sampling for Transformers", ACL SRW 2019):

1. a first pass without gradients over the real (teacher-forced) window gives, at every position
   ``t``, the predictive distribution of hour ``t + 1``;
2. for the fed-back variables (:attr:`AgentConfig.fed_back`: those a rollout feeds back as
   measured) one value is drawn from it (a bin's value, as
   :meth:`~organsim.agents.distribution.BinnedDistribution.sample` draws), and with probability
   ``p`` per window and hour every fed-back variable measured at hour ``t + 1`` gets its draw in
   place of its real value (a window's first hour, which has no forecast, is never replaced);
3. the window is re-encoded from the replaced values by the same
   :class:`~organsim.agents.features.FeatureEncoder` as rollouts use (bin token, z-score, measured
   flag, hours since), and the training pass reads it; the targets are the real next values,
   their change bins taken from the replaced last values, so the model learns to come back from
   its own drift to where the patient really went.

Variables that are not fed back (labs, drawn every few hours or days) are never replaced: a
rollout does not feed them back either.

Measured on PhysioNet 2019 (tiny agents, 64 bins, cross-entropy only, 8 epochs on the 4,200-stay
train split, each calibrated by ``organsim calibrate``; p = 0 is the recorded model of
bench/results/synthesize_physionet.json; real in brackets). p = 0 / 0.25 / 0.5:

- teacher-forced validation loss 2.7026 / 2.6984 / 2.7051; the first pass costs little on a
  shared 2-core CPU (epochs of 56-70 s at p = 0.25 against 62-108 s at p = 0);
- one-step reversion to the stay's 24-h level (slope of the predictive mean's change on the last
  value's deviation, 3,535 test problems): HR -0.214 / -0.279 / -0.320 (-0.269), SBP
  -0.357 / -0.409 / -0.440 (-0.484), MAP -0.439 / -0.450 / -0.461 (-0.518); but the one-step
  draws spread more: SD of the drawn HR change 7.66 / 8.02 / 8.25 (7.54);
- 32-hour free-running rollouts of 437 test stays: lag-1 reversion HR -0.32 / -0.38 / -0.39
  (-0.38), drift of the window mean from the last context value (SD) HR 12.3 / 11.3 / 11.4
  (10.1), but per-window SD HR 8.81 / 8.50 / 8.62 (7.13), SBP 14.7 / 14.8 / 15.5 (13.6);
- the 4,200-stay synthetic cohort (bench/synthesize.py): median per-stay SD HR
  8.75 / 8.74 / 8.90 (7.33), MAP 10.3 / 10.7 / 11.2 (9.3); MAP mean absolute hourly change
  8.03 / 8.20 / 8.55 (7.38); detection AUROC 0.968 / 0.967 / 0.969; sepsis-6h AUROC drop,
  LightGBM 0.038 (-0.005..0.077) / 0.083 (0.046..0.124) / 0.068 (0.025..0.108).

So the agents learn to come back from their own draws (the reversion is right, the level drifts
less), but their one-step distributions widen too (a target is now a real value read against a
drawn one): within-stay spread and hourly changes of synthetic vitals do not fall, and the
default stays 0.
"""

from __future__ import annotations

import numpy as np
import torch

from organsim.agents.distribution import center_tensor
from organsim.agents.features import FeatureEncoder, carry_forward
from organsim.agents.model import HourInputs, OrganAgents


@torch.no_grad()
def sampled_input_values(
    model: OrganAgents,
    encoder: FeatureEncoder,
    inputs: HourInputs,
    references: torch.Tensor,
    values: np.ndarray,
    probability: float,
    generator: torch.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1 and 2 of the module docstring: the windows' input values with sampled forecasts in place.

    Parameters
    ----------
    model
        The agents being trained (read in eval mode, no gradients; their mode is restored).
    encoder
        The feature encoder ``inputs`` were built with.
    inputs
        The teacher-forced inputs of B windows of T hours (from ``values``), on the model's device.
    references
        ``(B, S, S)`` bool reference sets of the windows (those of the training pass).
    values
        ``(B, T, V)`` raw input values of the windows (catalog units, NaN = not measured), model
        variable order.
    probability
        Chance that an hour's measured fed-back values are replaced, in [0, 1].
    generator
        CPU generator of the hours chosen and of the draws: the same seed gives the same values.

    Returns
    -------
    replaced_values
        ``(B, T, V)`` ``values`` with the chosen hours' measured fed-back values replaced by draws.
    replaced
        ``(B, T, V)`` bool: where a value was replaced.
    """
    if not 0 <= probability <= 1:
        raise ValueError(f"the scheduled-sampling probability must be in [0, 1], got {probability}")
    fed_back = np.flatnonzero(model.config.fed_back)  # (n,)
    b, t, _ = values.shape
    replaced = np.zeros(values.shape, dtype=bool)
    if len(fed_back) == 0 or t < 2:
        return values.copy(), replaced
    was_training = model.training
    model.eval()
    logits, relative = model.hourly_logits(inputs, references, fed_back.tolist())  # (B, T, n, K), (B, T, n)
    model.train(was_training)
    width = logits.shape[-1]
    probs = torch.softmax(logits.float().cpu(), dim=-1).reshape(-1, width)  # (B*T*n, K)
    bins = torch.multinomial(probs, 1, generator=generator).reshape(b, t, len(fed_back))  # (B, T, n)
    choose_hour = torch.rand(b, t, generator=generator).numpy() < probability  # (B, T)

    codes = [encoder.variables[v] for v in fed_back]
    value_centers = center_tensor(encoder.tokenizer, codes, width).numpy()  # (n, K) catalog units
    change_centers = center_tensor(encoder.changes, codes, width).numpy()  # (n, K) change scales
    change_scales = encoder.changes.scales[encoder.changes.columns_of(codes)]  # (n,)
    columns = np.arange(len(fed_back))[None, None, :]
    bins = bins.numpy()
    carried, _ = carry_forward(values[:, :, fed_back])  # (B, T, n) last real value at each position
    draws = np.where(
        relative.cpu().numpy(),
        carried + change_scales * change_centers[columns, bins],
        value_centers[columns, bins],
    )  # (B, T, n): a draw of hour t + 1 from position t

    # the forecast made at position t replaces hour t + 1
    measured = ~np.isnan(values[:, 1:, fed_back])  # (B, T - 1, n)
    replaced[:, 1:, fed_back] = choose_hour[:, 1:, None] & measured
    replaced_values = values.copy()
    replaced_values[:, 1:, fed_back] = np.where(replaced[:, 1:, fed_back], draws[:, :-1], values[:, 1:, fed_back])
    return replaced_values.astype(values.dtype, copy=False), replaced
