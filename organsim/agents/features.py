"""From raw hourly windows (catalog units, NaN = not measured) to :class:`~organsim.agents.model.HourInputs`.

The same functions serve training windows and forecast contexts, so a model sees its inputs built
the same way in both. Per variable and hour: the bin token and z-score of the last value observed
in the window (carried forward; "none" before the first observation), whether it was measured
that hour, and the hours since it last was (capped). Treatments are z-scored (the hour's given
treatment and the next hour's planned one side by side), statics z-scored with known-indicators,
the hour of the stay as ``log1p(hour) / 6``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from organsim.agents.model import HourInputs
from organsim.data.normalize import Normaliser
from organsim.data.tokenizers import BinTokenizer, ChangeTokenizer

Z_CLIP = 8.0
"""Inputs' z-scores are clipped to +-Z_CLIP (extreme values stay extreme but bounded)."""


@dataclass(frozen=True)
class CarryState:
    """Per window and variable, what a new hour's inputs carry forward.

    Attributes
    ----------
    values : np.ndarray
        ``(B, V)`` last observed value, NaN = never observed.
    hours_since : np.ndarray
        ``(B, V)`` float hours since that observation (inf = never).
    """

    values: np.ndarray
    hours_since: np.ndarray


@dataclass(frozen=True)
class FeatureEncoder:
    """Turns raw windows into model inputs with a fitted tokenizer and normaliser.

    Attributes
    ----------
    tokenizer
        Value bins of every variable (fitted on the training split).
    changes
        Change bins of every variable (fitted on changes between consecutive training measurements).
    normaliser
        Training-split means and standard deviations of variables, treatments and statics.
    variables, treatment_codes, static_codes
        Layout of the raw arrays' last axes.
    since_cap_hours
        Cap of the hours-since-observation input.
    """

    tokenizer: BinTokenizer
    changes: ChangeTokenizer
    normaliser: Normaliser
    variables: tuple[str, ...]
    treatment_codes: tuple[str, ...]
    static_codes: tuple[str, ...]
    since_cap_hours: float = 48.0

    def _z(self, values: np.ndarray, codes: tuple[str, ...]) -> np.ndarray:
        return np.clip(self.normaliser.zscore(values, codes), -Z_CLIP, Z_CLIP)

    def encode(
        self,
        values: np.ndarray,
        treatments_given: np.ndarray,
        treatments_planned: np.ndarray,
        static: np.ndarray,
        hours: np.ndarray,
    ) -> HourInputs:
        """Model inputs of B windows of T hours.

        Parameters
        ----------
        values
            ``(B, T, V)`` raw values, NaN = not measured.
        treatments_given
            ``(B, T, n_treatments)`` treatments given at each hour.
        treatments_planned
            ``(B, T, n_treatments)`` treatments planned for the following hour.
        static
            ``(B, n_statics)`` statics, NaN = unknown.
        hours
            ``(B, T)`` ICU hour index of each position.

        Returns
        -------
        HourInputs
            CPU tensors.
        """
        carried, hours_since = carry_forward(values)
        since = np.minimum(hours_since, self.since_cap_hours) / self.since_cap_hours
        return self._inputs(carried, ~np.isnan(values), since, treatments_given, treatments_planned, static, hours)

    def carry_state(self, values: np.ndarray) -> CarryState:
        """The carried-forward state after the last hour of ``(B, T, V)`` windows (for :meth:`encode_step`)."""
        carried, hours_since = carry_forward(values)
        return CarryState(values=carried[:, -1], hours_since=hours_since[:, -1])

    def encode_step(
        self,
        state: CarryState,
        measured: np.ndarray,
        treatments_given: np.ndarray,
        treatments_planned: np.ndarray,
        static: np.ndarray,
        hours: np.ndarray,
    ) -> tuple[HourInputs, CarryState]:
        """Inputs of one more hour after ``state``, and the state after it.

        Parameters
        ----------
        state
            From :meth:`carry_state` or a previous step.
        measured
            ``(B, V)`` the hour's values, NaN = not measured (e.g. a fed-back forecast of the
            variables that are charted hourly, NaN for the others).
        treatments_given, treatments_planned
            ``(B, 1, n_treatments)``.
        static
            ``(B, n_statics)``.
        hours
            ``(B, 1)`` ICU hour index of the new hour.
        """
        observed = ~np.isnan(measured)
        carried = np.where(observed, measured, state.values)
        hours_since = np.where(observed, 0.0, state.hours_since + 1)
        since = np.minimum(hours_since, self.since_cap_hours) / self.since_cap_hours
        inputs = self._inputs(carried[:, None], observed[:, None], since[:, None], treatments_given, treatments_planned, static, hours)
        return inputs, CarryState(values=carried, hours_since=hours_since)

    def _inputs(self, carried, observed, since, treatments_given, treatments_planned, static, hours) -> HourInputs:
        ids, _, _ = self.tokenizer.encode(carried, self.variables)  # NaN (never observed) -> the missing id 0
        z = np.nan_to_num(self._z(carried, self.variables), nan=0.0)
        treatments = np.concatenate(
            [self._z(treatments_given, self.treatment_codes), self._z(treatments_planned, self.treatment_codes)], axis=-1
        )
        known = ~np.isnan(static)
        static_z = np.where(known, np.nan_to_num(self._z(static, self.static_codes)), 0.0)
        hour_feature = np.log1p(np.clip(hours, 0, None)) / 6.0

        def f32(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

        return HourInputs(
            last_ids=torch.from_numpy(ids),
            observed=f32(observed),
            since=f32(since),
            last_z=f32(z),
            treatments=f32(np.nan_to_num(treatments)),
            static=f32(np.concatenate([static_z, known], axis=-1)),
            hours=f32(hour_feature),
        )

    def targets(self, next_values: np.ndarray, carried: np.ndarray) -> torch.Tensor:
        """Training targets: int64 ``(B, T, V)`` 0-based bins, -100 where the next value was not measured.

        Parameters
        ----------
        next_values
            ``(B, T, V)`` raw values at t + 1.
        carried
            ``(B, T, V)`` last observed value up to t (NaN = none): where present, the target is
            the change bin from it, else the value bin.
        """
        value_ids, observed, _ = self.tokenizer.encode(next_values, self.variables)
        change_ids, _, _ = self.changes.encode(next_values, carried, self.variables)
        ids = np.where(np.isnan(carried), value_ids, change_ids)
        return torch.from_numpy(np.where(observed, ids - 1, -100))

    def target_z(self, next_values: np.ndarray, carried: np.ndarray) -> torch.Tensor:
        """Training targets of the mean: float32 ``(B, T, V)`` next value in z units, 0 where not measured.

        Where a last value exists (the target is a change bin) the change of z-score from it, else
        the z-score; clipped to +-2 * Z_CLIP so a single outlier cannot dominate a batch's gradient.

        Parameters
        ----------
        next_values
            ``(B, T, V)`` raw values at t + 1.
        carried
            ``(B, T, V)`` last observed value up to t (NaN = none).
        """
        next_z = self.normaliser.zscore(next_values, self.variables)
        change_z = next_z - self.normaliser.zscore(carried, self.variables)
        z = np.where(np.isnan(carried), next_z, change_z)
        return torch.from_numpy(np.nan_to_num(np.clip(z, -2 * Z_CLIP, 2 * Z_CLIP), nan=0.0).astype(np.float32))

    def bin_values_z(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each bin's value in z units, zero-padded to ``width`` bins: for :meth:`OrganAgents.set_bin_values`.

        Returns
        -------
        value_bins_z, change_bins_z
            ``(V, width)`` float32: the z-score of every value bin's center, and every change bin's
            center as a change of z-score (change bins are in units of the variable's training
            standard deviation, the normaliser's, so their centers rescale by its ratio to it).
        """
        n = len(self.variables)
        value_bins = np.zeros((n, width), dtype=np.float32)
        change_bins = np.zeros((n, width), dtype=np.float32)
        std = self.normaliser.std[self.normaliser.index(self.variables)]
        change_scales = self.changes.scales[self.changes.columns_of(self.variables)]
        value_columns = self.tokenizer.columns_of(self.variables)
        change_columns = self.changes.columns_of(self.variables)
        for v, code in enumerate(self.variables):
            centers = np.asarray(self.tokenizer.centers[value_columns[v]], dtype=np.float64)
            value_bins[v, : len(centers)] = self.normaliser.zscore(centers[:, None], (code,))[:, 0]
            changes = np.asarray(self.changes.centers[change_columns[v]], dtype=np.float64)
            change_bins[v, : len(changes)] = changes * change_scales[v] / std[v]
        return torch.from_numpy(value_bins), torch.from_numpy(change_bins)


def carry_forward(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Last observed value and hours since it, at every hour of ``(B, T, V)`` windows.

    Returns
    -------
    carried, hours_since
        ``(B, T, V)`` float: the value (NaN before the window's first measurement) and the hours
        since it was measured (0 at a measured hour, inf before the first measurement).
    """
    observed = ~np.isnan(values)
    position = np.arange(values.shape[1])[None, :, None]
    last = np.maximum.accumulate(np.where(observed, position, -1), axis=1)  # (B, T, V), -1 = none yet
    carried = np.take_along_axis(values, np.clip(last, 0, None), axis=1)
    carried = np.where(last >= 0, carried, np.nan)
    hours_since = np.where(last >= 0, position - last, np.inf).astype(np.float64)
    return carried, hours_since


def leading_empty_mask(values: np.ndarray) -> np.ndarray:
    """``(B, C)`` int64 attention mask: 0 for the hours before a window's first measurement, else 1.

    The last hour is always kept, so a context with no measurement still has one position.
    """
    any_observed = ~np.all(np.isnan(values), axis=2)  # (B, C)
    started = np.maximum.accumulate(any_observed, axis=1)
    started[:, -1] = True
    return started.astype(np.int64)

