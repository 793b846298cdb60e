"""Value tokenizers: hourly values <-> per-variable bin ids, and values <-> text for pretrained LLMs.

:class:`BinTokenizer` maps each catalog variable's values onto its own bins (Chronos style:
``encode(values) -> (ids, mask, state)`` and ``decode(ids, state) -> values``). NaN is the one sign
of "missing": it encodes to :data:`MISSING_ID` (0) and id 0 decodes to NaN. The bins of a variable
are fitted on training values (quantile- or range-based) and every clinical cut-off of the catalog
(``Variable.cutoffs``: MAP 65, lactate 2 and 4, SpO2 90 and 94, ...) is a bin edge, so a token
never straddles a decision threshold. A bin decodes to the mean of the training values that fell
into it (its midpoint where none did). The outermost edges are the variable's plausible range;
values beyond it fall into the first or last bin.

:class:`TextSerializer` writes hours of values as text (``"hr=93.0 map=65.5 spo2=NA"``, one line
per hour) and parses it back, for prompting pretrained causal language models.

Both are rebuilt from the dicts they save (:meth:`BinTokenizer.to_dict`), so a model directory
holds everything needed to tokenize exactly as in training.

>>> tokenizer = BinTokenizer.fit(train_values, catalog.variable_codes, catalog)   # doctest: +SKIP
>>> ids, mask, state = tokenizer.encode(values)                                    # doctest: +SKIP
>>> approx = tokenizer.decode(ids, state)                                          # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import ndtr

from organsim.utils.errors import DataError

if TYPE_CHECKING:
    from organsim.catalog import Catalog
    from organsim.data.cohort import Cohort

MISSING_ID = 0
"""The token id of a missing value (NaN) for every variable; bin ``k`` (0-based) has id ``k + 1``."""

BIN_METHODS = ("quantile", "range")
"""``quantile``: interior edges at quantiles of the training values whose levels are equally spaced
in normal scores between -3.7 and +3.7 sd (so the tails get narrow bins: on PhysioNet 2019 this cuts
the mean quantisation error in z-units squared from 0.064 with equal-count quantiles to 0.005 at 48
bins); ``range``: equally spaced between the training 1st and 99th percentiles. Clinical cut-offs
are added to either."""

QUANTILE_SPAN_SD = 3.7
"""Normal-score half-span of the quantile levels of the ``quantile`` method."""

_FORMAT = "organsim.BinTokenizer/1"


@dataclass(frozen=True)
class TokenizerState:
    """What :meth:`BinTokenizer.encode` remembers for :meth:`BinTokenizer.decode`.

    Attributes
    ----------
    variables : tuple[str, ...]
        The codes of the encoded columns, in the order of the last axis of ``values``.
    columns : np.ndarray
        ``(len(variables),)`` int64, the tokenizer's own index of each encoded column.
    """

    variables: tuple[str, ...]
    columns: np.ndarray


@dataclass(frozen=True)
class BinTokenizer:
    """Per-variable bins anchored on the catalog's clinical cut-offs.

    Attributes
    ----------
    variables : tuple[str, ...]
        The variable codes the tokenizer knows, in its column order.
    edges : tuple[np.ndarray, ...]
        Per variable, ``(n_bins + 1,)`` strictly ascending bin edges in catalog units (float32
        numbers held as float64); the first and last are the plausible range. Bin ``k`` covers
        ``[edges[k], edges[k + 1])`` (the last bin includes its upper edge).
    centers : tuple[np.ndarray, ...]
        Per variable, ``(n_bins,)`` float64 decode value of each bin: the mean of the training
        values inside it, or its midpoint where it held none. Always inside the bin.
    method : str
        How the interior edges were placed (one of :data:`BIN_METHODS`).
    n_bins : int
        The requested number of data-driven bins per variable before cut-offs were added (a
        variable may end up with fewer, e.g. for integer-valued GCS, or more, through cut-offs).
    """

    variables: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    centers: tuple[np.ndarray, ...]
    method: str
    n_bins: int

    def __post_init__(self) -> None:
        if self.method not in BIN_METHODS:
            raise ValueError(f"method must be one of {BIN_METHODS}, got {self.method!r}")
        if not (len(self.variables) == len(self.edges) == len(self.centers)):
            raise ValueError("variables, edges and centers must have one entry per variable")
        for code, edges, centers in zip(self.variables, self.edges, self.centers, strict=True):
            if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
                raise ValueError(f"variable {code!r}: edges must be strictly ascending with at least 2 entries")
            if centers.shape != (len(edges) - 1,):
                raise ValueError(f"variable {code!r}: {len(edges) - 1} bins need {len(edges) - 1} centers, got {centers.shape}")
            if not (np.all(centers >= edges[:-1]) and np.all(centers[:-1] < edges[1:-1]) and centers[-1] <= edges[-1]):
                raise ValueError(f"variable {code!r}: every bin center must lie inside its bin")
        if len(set(self.variables)) != len(self.variables):
            dup = sorted({c for c in self.variables if self.variables.count(c) > 1})
            raise ValueError(f"variables listed more than once: {dup}")

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        values: np.ndarray,
        variables: Sequence[str],
        catalog: Catalog,
        *,
        n_bins: int = 64,
        method: str = "quantile",
    ) -> BinTokenizer:
        """Fit bins on training values.

        Parameters
        ----------
        values
            ``(N, V)`` training values in catalog units, NaN = not measured (e.g. the hourly rows
            of a training split).
        variables
            The ``V`` variable codes of the columns of ``values``.
        catalog
            Source of each variable's plausible range, normal range and clinical cut-offs.
        n_bins
            Data-driven bins per variable (>= 2); cut-offs add edges on top.
        method
            ``"quantile"`` or ``"range"`` (see :data:`BIN_METHODS`). A variable without training
            values gets equal bins over its catalog normal range either way.

        Returns
        -------
        BinTokenizer
        """
        if method not in BIN_METHODS:
            raise ValueError(f"method must be one of {BIN_METHODS}, got {method!r}")
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(variables):
            raise ValueError(f"values must be (N, V={len(variables)}), got {values.shape}")
        edges_all, centers_all = [], []
        for column, code in enumerate(variables):
            variable = catalog.variable(code)
            lo, hi = (float(b) for b in variable.plausible)
            observed = values[:, column]
            observed = np.clip(observed[~np.isnan(observed)], lo, hi)
            interior = _interior_edges(observed, n_bins, method, variable.normal, (lo, hi))
            edges = _merge_edges(interior, variable.cutoffs, lo, hi)
            edges_all.append(edges)
            centers_all.append(_bin_centers(observed, edges))
        return cls(variables=tuple(variables), edges=tuple(edges_all), centers=tuple(centers_all), method=method, n_bins=n_bins)

    @classmethod
    def fit_cohort(cls, cohort: Cohort, *, split: str | None = "train", n_bins: int = 64, method: str = "quantile") -> BinTokenizer:
        """Fit on the hourly values of ``cohort``'s ``split`` (every stay when unsplit or ``split=None``)."""
        import polars as pl

        hourly = cohort.hourly
        stays = cohort.stays
        if split is not None and stays["split"].null_count() < stays.height:
            ids = stays.filter(pl.col("split") == split)["stay_id"]
            if ids.len() == 0:
                raise ValueError(f"the cohort has no stay in split {split!r}; cannot fit a tokenizer on it")
            hourly = hourly.filter(pl.col("stay_id").is_in(ids.implode()))
        codes = cohort.catalog.variable_codes
        values = hourly.select(codes).to_numpy().astype(np.float64)
        return cls.fit(values, codes, cohort.catalog, n_bins=n_bins, method=method)

    # ------------------------------------------------------------------ sizes
    @property
    def vocab_sizes(self) -> tuple[int, ...]:
        """Per variable, the number of ids including :data:`MISSING_ID` (= bins + 1)."""
        return tuple(len(e) for e in self.edges)

    @property
    def bin_counts(self) -> tuple[int, ...]:
        """Per variable, the number of bins (ids 1..n)."""
        return tuple(len(e) - 1 for e in self.edges)

    def columns_of(self, variables: Sequence[str]) -> np.ndarray:
        """The tokenizer's column index of each code; an unknown code is a ``KeyError``."""
        position = {c: i for i, c in enumerate(self.variables)}
        unknown = [c for c in variables if c not in position]
        if unknown:
            raise KeyError(f"variables {unknown} are not known to this tokenizer (it has {len(self.variables)})")
        return np.array([position[c] for c in variables], dtype=np.int64)

    # ------------------------------------------------------------------ encode / decode
    def encode(self, values: np.ndarray, variables: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, TokenizerState]:
        """Values -> bin ids.

        Parameters
        ----------
        values
            ``(..., V')`` values in catalog units, NaN = missing; compared with the edges as
            float32 (the cohort's dtype), so 1.2 is at the creatinine cut-off 1.2, not below it.
        variables
            The ``V'`` codes of the last axis (default: all of :attr:`variables`, in order).

        Returns
        -------
        ids : np.ndarray
            ``(..., V')`` int64, :data:`MISSING_ID` where the value is NaN, else bin index + 1.
        mask : np.ndarray
            ``(..., V')`` bool, True where a value was observed.
        state : TokenizerState
            The column layout, for :meth:`decode`.
        """
        codes = tuple(self.variables if variables is None else variables)
        values = np.asarray(values, dtype=np.float32)  # edges are float32 numbers: compare in float32
        if values.ndim < 1 or values.shape[-1] != len(codes):
            raise ValueError(f"the last axis of values must have {len(codes)} entries (one per variable), got {values.shape}")
        columns = self.columns_of(codes)
        mask = ~np.isnan(values)
        ids = np.zeros(values.shape, dtype=np.int64)
        for axis_index, column in enumerate(columns):
            interior = self.edges[column][1:-1].astype(np.float32)
            x = values[..., axis_index]
            ids[..., axis_index] = np.searchsorted(interior, x, side="right") + 1
        ids[~mask] = MISSING_ID
        return ids, mask, TokenizerState(variables=codes, columns=columns)

    def decode(self, ids: np.ndarray, state: TokenizerState) -> np.ndarray:
        """Bin ids -> values (the bins' training means); :data:`MISSING_ID` -> NaN.

        Parameters
        ----------
        ids
            ``(..., V')`` integer ids laid out as ``state`` says.
        state
            From :meth:`encode` (or built with :meth:`state_for`).

        Returns
        -------
        np.ndarray
            ``(..., V')`` float32 in catalog units.
        """
        ids = np.asarray(ids)
        if ids.shape[-1] != len(state.columns):
            raise ValueError(f"the last axis of ids must have {len(state.columns)} entries, got {ids.shape}")
        table = self.center_table()[state.columns]  # (V', max_vocab)
        vocab = np.array(self.vocab_sizes)[state.columns]  # (V',)
        invalid = (ids < 0) | (ids >= vocab)
        if invalid.any():
            bad = int(np.nonzero(invalid.reshape(-1, ids.shape[-1]).any(axis=0))[0][0])
            raise ValueError(f"ids out of range for variable {state.variables[bad]!r} (valid 0..{vocab[bad] - 1})")
        return table[np.arange(len(state.columns)), ids].astype(np.float32)

    def state_for(self, variables: Sequence[str] | None = None) -> TokenizerState:
        """The :class:`TokenizerState` of a column layout, to decode ids that did not come from :meth:`encode`."""
        codes = tuple(self.variables if variables is None else variables)
        return TokenizerState(variables=codes, columns=self.columns_of(codes))

    def center_table(self) -> np.ndarray:
        """``(V, max_vocab)`` float64 decode table: column 0 NaN (missing), then each bin's center, NaN-padded."""
        table = np.full((len(self.variables), max(self.vocab_sizes)), np.nan)
        for column, centers in enumerate(self.centers):
            table[column, 1 : len(centers) + 1] = centers
        return table

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` rebuilds the identical tokenizer."""
        return {
            "format": _FORMAT,
            "method": self.method,
            "n_bins": self.n_bins,
            "variables": {
                code: {"edges": [float(e) for e in edges], "centers": [float(c) for c in centers]}
                for code, edges, centers in zip(self.variables, self.edges, self.centers, strict=True)
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BinTokenizer:
        """Rebuild from :meth:`to_dict` output; a malformed dict is a ``ValueError`` naming what is wrong."""
        if data.get("format") != _FORMAT:
            raise ValueError(f"not a BinTokenizer config (format {data.get('format')!r}, expected {_FORMAT!r})")
        missing = [k for k in ("method", "n_bins", "variables") if k not in data]
        if missing:
            raise ValueError(f"tokenizer config lacks {missing}")
        variables = tuple(data["variables"])
        try:
            edges = tuple(np.asarray(data["variables"][c]["edges"], dtype=np.float64) for c in variables)
            centers = tuple(np.asarray(data["variables"][c]["centers"], dtype=np.float64) for c in variables)
        except KeyError as exc:
            raise ValueError(f"tokenizer config: a variable lacks {exc.args[0]!r}") from None
        return cls(variables=variables, edges=edges, centers=centers, method=data["method"], n_bins=int(data["n_bins"]))


def _interior_edges(
    observed: np.ndarray, n_bins: int, method: str, normal: tuple[float, float], plausible: tuple[float, float]
) -> np.ndarray:
    """Data-driven interior edges (before cut-offs are merged in)."""
    if len(observed) == 0:
        lo, hi = normal if normal[1] > normal[0] else plausible
        return np.linspace(lo, hi, n_bins + 1)[1:-1]
    if method == "quantile":
        levels = ndtr(np.linspace(-QUANTILE_SPAN_SD, QUANTILE_SPAN_SD, n_bins + 1)[1:-1])
        return np.unique(np.quantile(observed, levels))
    p01, p99 = np.percentile(observed, [1, 99])
    if p99 <= p01:
        return np.array([p01])
    return np.linspace(p01, p99, n_bins + 1)[1:-1]


def _merge_edges(interior: np.ndarray, cutoffs: Sequence[float], lo: float, hi: float) -> np.ndarray:
    """Outer edges (plausible range) + cut-offs + data edges not within a hair of a cut-off.

    Every edge is rounded to a float32 value, so each bin holds at least one float32 number (its
    lower edge) and float32 data bins exactly as float64 data does.
    """
    tolerance = (hi - lo) * 1e-6
    cuts = np.array([c for c in cutoffs if lo < c < hi], dtype=np.float64)
    data = interior[(interior > lo + tolerance) & (interior < hi - tolerance)]
    if len(cuts):
        data = data[np.min(np.abs(data[:, None] - cuts[None, :]), axis=1) > tolerance]
    edges = np.concatenate([[lo, hi], cuts, data]).astype(np.float32)
    return np.unique(edges).astype(np.float64)


def _bin_centers(observed: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of the training values in each bin (the midpoint for an empty bin), as exact float32 values.

    Decoded values are float32, so each center is rounded to float32 and then moved by at most a
    few float32 steps until it lies inside its bin: ``encode(decode(ids)) == ids`` holds exactly.
    """
    n = len(edges) - 1
    bins = np.searchsorted(edges[1:-1], observed, side="right")
    sums = np.bincount(bins, weights=observed, minlength=n)
    counts = np.bincount(bins, minlength=n)
    midpoints = (edges[:-1] + edges[1:]) / 2
    means = np.where(counts > 0, sums / np.maximum(counts, 1), midpoints)
    centers = np.clip(means, edges[:-1], edges[1:]).astype(np.float32)
    upper = edges[1:].copy()
    upper[-1] = np.inf  # the last bin includes its upper edge
    while True:
        low = centers.astype(np.float64) < edges[:-1]
        high = centers.astype(np.float64) >= upper
        if not (low.any() or high.any()):
            return centers.astype(np.float64)
        centers = np.where(low, np.nextafter(centers, np.float32(np.inf)), centers)
        centers = np.where(high, np.nextafter(centers, np.float32(-np.inf)), centers)


# ====================================================================================== changes
_CHANGE_FORMAT = "organsim.ChangeTokenizer/1"


@dataclass(frozen=True)
class ChangeState:
    """What :meth:`ChangeTokenizer.encode` remembers for :meth:`ChangeTokenizer.decode`.

    Attributes
    ----------
    variables : tuple[str, ...]
        Codes of the encoded columns.
    columns : np.ndarray
        ``(V',)`` the tokenizer's index of each column.
    previous : np.ndarray
        ``(..., V')`` float64 previous values the changes are measured from (NaN = none).
    """

    variables: tuple[str, ...]
    columns: np.ndarray
    previous: np.ndarray


@dataclass(frozen=True)
class ChangeTokenizer:
    """Per-variable bins of the change from a previous value, in units of the variable's scale.

    A value ``x`` with previous value ``p`` encodes the change ``(x - p) / scale`` into the
    variable's change bins; it decodes to ``p + scale * center``. The previous values are the
    tokenizer's *state* (as the scale is in Chronos): a model forecasting in change bins stays
    anchored on the last measurement however far out of the training range it lies. Id 0 means
    missing (value or previous value NaN); bin ``k`` has id ``k + 1``. Bins are quantiles of the
    training changes between consecutive measurements (normal-score spaced levels, as for
    :class:`BinTokenizer`), so "no change" gets narrow bins.

    Attributes
    ----------
    variables : tuple[str, ...]
        Codes, in column order.
    scales : np.ndarray
        ``(V,)`` float64 > 0, the unit of each variable's changes (its training standard deviation).
    edges : tuple[np.ndarray, ...]
        Per variable, ``(n_bins - 1,)`` strictly ascending interior edges in scaled-change units
        (the outer bins are open); bin ``k`` covers ``[edges[k - 1], edges[k])``.
    centers : tuple[np.ndarray, ...]
        Per variable, ``(n_bins,)`` mean training change in each bin (its midpoint, or half a unit
        beyond the edge of an outer bin, where it held none).
    """

    variables: tuple[str, ...]
    scales: np.ndarray
    edges: tuple[np.ndarray, ...]
    centers: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if not (len(self.variables) == len(self.scales) == len(self.edges) == len(self.centers)):
            raise ValueError("variables, scales, edges and centers need one entry per variable")
        if not np.all(np.asarray(self.scales) > 0):
            raise ValueError("every change scale must be > 0")
        for code, edges, centers in zip(self.variables, self.edges, self.centers, strict=True):
            if edges.ndim != 1 or not np.all(np.diff(edges) > 0):
                raise ValueError(f"variable {code!r}: change edges must be strictly ascending")
            if centers.shape != (len(edges) + 1,):
                raise ValueError(f"variable {code!r}: {len(edges) + 1} change bins need as many centers")

    @classmethod
    def fit(cls, changes: Sequence[np.ndarray], variables: Sequence[str], scales: np.ndarray, *, n_bins: int = 32) -> ChangeTokenizer:
        """Fit change bins.

        Parameters
        ----------
        changes
            Per variable, 1-D raw-unit changes between consecutive measurements in training data
            (may be empty).
        variables
            The codes.
        scales
            ``(V,)`` the unit of each variable's changes (e.g. its training standard deviation).
        n_bins
            Bins per variable (>= 2; fewer when the changes take few distinct values).
        """
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        scales = np.asarray(scales, dtype=np.float64)
        if len(changes) != len(variables) or scales.shape != (len(variables),):
            raise ValueError("changes and scales need one entry per variable")
        if not np.all(scales > 0):
            raise ValueError("every change scale must be > 0")
        levels = ndtr(np.linspace(-QUANTILE_SPAN_SD, QUANTILE_SPAN_SD, n_bins + 1)[1:-1])
        edges_all, centers_all = [], []
        for raw, scale in zip(changes, scales, strict=True):
            scaled = np.asarray(raw, dtype=np.float64) / scale
            scaled = scaled[np.isfinite(scaled)]
            if len(scaled) == 0:
                edges = np.linspace(-2, 2, n_bins + 1)[1:-1]
            else:
                edges = np.unique(np.quantile(scaled, levels).astype(np.float32)).astype(np.float64)
            edges_all.append(edges)
            centers_all.append(_change_centers(scaled, edges))
        return cls(variables=tuple(variables), scales=scales, edges=tuple(edges_all), centers=tuple(centers_all))

    @property
    def bin_counts(self) -> tuple[int, ...]:
        """Per variable, the number of change bins."""
        return tuple(len(e) + 1 for e in self.edges)

    def columns_of(self, variables: Sequence[str]) -> np.ndarray:
        """The tokenizer's column index of each code; an unknown code is a ``KeyError``."""
        position = {c: i for i, c in enumerate(self.variables)}
        unknown = [c for c in variables if c not in position]
        if unknown:
            raise KeyError(f"variables {unknown} are not known to this change tokenizer")
        return np.array([position[c] for c in variables], dtype=np.int64)

    def encode(
        self, values: np.ndarray, previous: np.ndarray, variables: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, ChangeState]:
        """Values -> change-bin ids relative to ``previous`` (same shape ``(..., V')``).

        Returns ids (0 where the value or the previous value is NaN), the mask of encoded
        entries, and the state (the previous values) for :meth:`decode`.
        """
        codes = tuple(self.variables if variables is None else variables)
        values = np.asarray(values, dtype=np.float64)
        previous = np.asarray(previous, dtype=np.float64)
        if values.shape != previous.shape or values.shape[-1] != len(codes):
            raise ValueError(f"values and previous must have the same shape (..., {len(codes)}), got {values.shape} and {previous.shape}")
        columns = self.columns_of(codes)
        scaled = (values - previous) / self.scales[columns]
        mask = np.isfinite(scaled)
        ids = np.zeros(values.shape, dtype=np.int64)
        for axis_index, column in enumerate(columns):
            ids[..., axis_index] = np.searchsorted(self.edges[column], scaled[..., axis_index], side="right") + 1
        ids[~mask] = MISSING_ID
        return ids, mask, ChangeState(variables=codes, columns=columns, previous=previous)

    def decode(self, ids: np.ndarray, state: ChangeState) -> np.ndarray:
        """Change-bin ids -> ``previous + scale * center`` (float64); id 0 or no previous value -> NaN."""
        ids = np.asarray(ids)
        table = self.center_table()[state.columns]  # (V', max_bins + 1), column 0 NaN
        vocab = np.array(self.bin_counts)[state.columns] + 1
        if np.any((ids < 0) | (ids >= vocab)):
            raise ValueError("change ids out of range")
        change = table[np.arange(len(state.columns)), ids]
        return state.previous + self.scales[state.columns] * change

    def center_table(self) -> np.ndarray:
        """``(V, max_bins + 1)`` float64: column 0 NaN (missing), then each bin's center, NaN-padded."""
        table = np.full((len(self.variables), max(self.bin_counts) + 1), np.nan)
        for column, centers in enumerate(self.centers):
            table[column, 1 : len(centers) + 1] = centers
        return table

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` rebuilds the identical tokenizer."""
        return {
            "format": _CHANGE_FORMAT,
            "variables": {
                code: {"scale": float(scale), "edges": [float(e) for e in edges], "centers": [float(c) for c in centers]}
                for code, scale, edges, centers in zip(self.variables, self.scales, self.edges, self.centers, strict=True)
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeTokenizer:
        """Rebuild from :meth:`to_dict` output."""
        if data.get("format") != _CHANGE_FORMAT:
            raise ValueError(f"not a ChangeTokenizer config (format {data.get('format')!r}, expected {_CHANGE_FORMAT!r})")
        variables = tuple(data["variables"])
        entries = [data["variables"][c] for c in variables]
        return cls(
            variables=variables,
            scales=np.array([e["scale"] for e in entries], dtype=np.float64),
            edges=tuple(np.asarray(e["edges"], dtype=np.float64) for e in entries),
            centers=tuple(np.asarray(e["centers"], dtype=np.float64) for e in entries),
        )


def _change_centers(scaled: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean scaled change per bin; an empty bin gets its midpoint (an outer bin: its edge -/+ half a unit)."""
    n = len(edges) + 1
    bins = np.searchsorted(edges, scaled, side="right")
    sums = np.bincount(bins, weights=scaled, minlength=n)
    counts = np.bincount(bins, minlength=n)
    if len(edges):
        fallback = np.concatenate([[edges[0] - 0.5], (edges[:-1] + edges[1:]) / 2, [edges[-1] + 0.5]])
    else:
        fallback = np.zeros(1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), fallback)


# ====================================================================================== text
_TOKEN = re.compile(r"^([a-z][a-z0-9_]*)=(\S+)$")


@dataclass(frozen=True)
class TextSerializer:
    """Hourly values as text, ``"hr=93.0 map=65.5 spo2=NA"`` (one line per hour), and back.

    Attributes
    ----------
    variables : tuple[str, ...]
        The codes written, in order.
    decimals : tuple[int, ...]
        Digits after the decimal point per variable.
    missing : str
        The text of a missing value.
    """

    variables: tuple[str, ...]
    decimals: tuple[int, ...]
    missing: str = "NA"

    def __post_init__(self) -> None:
        if len(self.decimals) != len(self.variables):
            raise ValueError(f"decimals needs one entry per variable ({len(self.variables)}), got {len(self.decimals)}")
        if any(d < 0 for d in self.decimals):
            raise ValueError("decimals must be >= 0")
        if not self.missing or any(ch.isspace() or ch == "=" for ch in self.missing):
            raise ValueError(f"missing marker {self.missing!r} must be non-empty without spaces or '='")

    @classmethod
    def from_catalog(cls, catalog: Catalog, variables: Sequence[str] | None = None, *, missing: str = "NA") -> TextSerializer:
        """Digits per variable from the catalog: enough for 1/200 of the normal range (at least 1 for non-integer data).

        GCS (normal 15-15) and other zero-width normal ranges use their plausible range instead.
        """
        codes = tuple(catalog.variable_codes if variables is None else variables)
        decimals = []
        for code in codes:
            variable = catalog.variable(code)
            lo, hi = variable.normal if variable.normal[1] > variable.normal[0] else variable.plausible
            decimals.append(max(1, math.ceil(-math.log10((hi - lo) / 200))))
        return cls(variables=codes, decimals=tuple(decimals), missing=missing)

    def serialize(self, values: np.ndarray) -> str:
        """``(H, V)`` values -> H lines of ``code=value`` pairs; NaN -> the missing marker.

        A 1-D ``(V,)`` array is one hour.
        """
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        if values.ndim != 2 or values.shape[1] != len(self.variables):
            raise ValueError(f"values must be (H, V={len(self.variables)}), got {values.shape}")
        lines = []
        for row in values:
            parts = []
            for code, digits, value in zip(self.variables, self.decimals, row, strict=True):
                text = self.missing if np.isnan(value) else f"{value:.{digits}f}"
                parts.append(f"{code}={text}")
            lines.append(" ".join(parts))
        return "\n".join(lines)

    def parse(self, text: str, *, source: str = "<text>") -> np.ndarray:
        """Lines written by :meth:`serialize` -> ``(H, V)`` float32 (NaN for the missing marker).

        Variables may appear in any order; one absent from a line is NaN. A malformed pair, an
        unknown code or a code given twice raises :class:`DataError` naming ``source``, the line
        (row, 1-based) and the variable (column).
        """
        position = {c: i for i, c in enumerate(self.variables)}
        lines = [line for line in text.splitlines() if line.strip()]
        out = np.full((len(lines), len(self.variables)), np.nan, dtype=np.float32)
        for row, line in enumerate(lines):
            seen: set[str] = set()
            for pair in line.split():
                match = _TOKEN.match(pair)
                if match is None:
                    raise DataError(f"expected code=value, got {pair!r}", file=source, row=row + 1)
                code, raw = match.groups()
                if code not in position:
                    raise DataError(f"unknown variable {code!r}", file=source, row=row + 1, column=code)
                if code in seen:
                    raise DataError("variable given twice on one line", file=source, row=row + 1, column=code)
                seen.add(code)
                if raw == self.missing:
                    continue
                try:
                    out[row, position[code]] = float(raw)
                except ValueError:
                    raise DataError(f"not a number: {raw!r}", file=source, row=row + 1, column=code) from None
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` rebuilds the identical serializer."""
        return {"variables": list(self.variables), "decimals": list(self.decimals), "missing": self.missing}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextSerializer:
        """Rebuild from :meth:`to_dict` output."""
        return cls(variables=tuple(data["variables"]), decimals=tuple(int(d) for d in data["decimals"]), missing=data["missing"])
