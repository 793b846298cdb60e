"""The generative model of a new stay's static data and first hours: a Gaussian copula.

Each training stay (train split only) is one row of columns (:class:`InitialStateModel`):

- the statics age, sex, weight, hospital-to-ICU hours and ICU unit (a column the training data
  never fill stays null in every synthetic stay);
- the stay's structure: its first ICU hour, its length in hours, ``sepsis`` (0/1), for septic
  stays ``onset_to_end`` = last hour - onset hour (PhysioNet stays end a few hours after onset),
  and ``death`` (0/1, null where the cohort does not record it);
- its first ``initial_hours`` hours: per catalog variable a ``measured`` indicator (0/1) and the
  value when measured.

There is one copula per sepsis stratum (septic, not septic), fitted on that stratum's stays, so
a stay drawn as septic has the statics, length, onset position and first hours of septic stays.
Every column is mapped to normal scores through the stratum's empirical distribution of it (ranks,
ties averaged; missing entries left out); the correlation of those scores is estimated from
pairwise-complete rows, shrunk toward the identity (more for a stratum with few stays relative to
its columns) and made positive definite. Sampling draws correlated normals and maps each back
through its column's inverse empirical distribution: linear interpolation between neighbouring
order statistics for continuous columns (so no value is a training value by construction), the
order statistic itself for discrete ones (sex, unit, hours, indicators). A synthetic stay is
therefore a new combination of per-column quantiles, never a copied row; the privacy report's
distance to closest record checks that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from organsim.data import Cohort

STATIC_COLUMNS = ("age", "sex", "weight", "hosp_adm_hours")
UNIT_COLUMN = "unit"
STRUCTURE_COLUMNS = ("first_hour", "n_hours", "sepsis", "onset_to_end", "death")
DISCRETE_STRUCTURE = frozenset({"first_hour", "n_hours", "sepsis", "onset_to_end", "death", "sex", UNIT_COLUMN})
MIN_SHRINKAGE = 0.05
"""Least weight of the identity in a stratum's shrunk correlation; a stratum of ``n`` stays and ``K``
columns uses ``max(MIN_SHRINKAGE, K / (K + n))`` (about 0.4 for 150 columns and 237 septic stays)."""


@dataclass(frozen=True)
class Column:
    """One copula column: its name, whether it is discrete, and its sorted observed values."""

    name: str
    discrete: bool
    sorted_values: np.ndarray

    @property
    def empty(self) -> bool:
        """True when the training data never observed this column."""
        return len(self.sorted_values) == 0

    def normal_scores(self, values: np.ndarray) -> np.ndarray:
        """``(n,)`` normal scores of ``values`` (NaN stays NaN): Phi^-1 of mid-ranks / (m + 1)."""
        scores = np.full(len(values), np.nan)
        observed = np.isfinite(values)
        if observed.sum() == 0:
            return scores
        ranks = stats.rankdata(values[observed], method="average")
        scores[observed] = stats.norm.ppf(ranks / (observed.sum() + 1))
        return scores

    def inverse(self, uniforms: np.ndarray) -> np.ndarray:
        """``(n,)`` values at the quantiles ``uniforms`` of the empirical distribution (NaN when empty)."""
        m = len(self.sorted_values)
        if m == 0:
            return np.full(len(uniforms), np.nan)
        if self.discrete or m == 1:
            index = np.clip(np.floor(uniforms * m).astype(np.int64), 0, m - 1)
            return self.sorted_values[index].astype(np.float64)
        # order statistic i sits at quantile (i + 1) / (m + 1); interpolate between neighbours
        position = np.clip(uniforms * (m + 1) - 1, 0, m - 1)
        return np.interp(position, np.arange(m), self.sorted_values)



def _nearest_correlation(matrix: np.ndarray, shrinkage: float) -> np.ndarray:
    """Shrink toward the identity, clip eigenvalues to be positive, rescale to unit diagonal."""
    n = len(matrix)
    shrunk = (1 - shrinkage) * matrix + shrinkage * np.eye(n)
    eigenvalues, eigenvectors = np.linalg.eigh(shrunk)
    fixed = (eigenvectors * np.clip(eigenvalues, 1e-6, None)) @ eigenvectors.T
    scale = 1 / np.sqrt(np.diag(fixed))
    return fixed * scale[:, None] * scale[None, :]


def _pairwise_correlation(scores: np.ndarray) -> np.ndarray:
    """``(K, K)`` correlation of the normal-score columns over pairwise-complete rows (0 when < 3 rows)."""
    observed = np.isfinite(scores).astype(np.float64)  # (n, K)
    filled = np.nan_to_num(scores)
    pairs = observed.T @ observed  # (K, K) rows where both are observed
    sum_xy = filled.T @ filled
    sum_x = filled.T @ observed  # [i, j]: sum of column i over rows where j is observed
    sum_xx = (filled**2).T @ observed
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = sum_x / pairs
        mean_y = sum_x.T / pairs
        cov = sum_xy / pairs - mean_x * mean_y
        var_x = sum_xx / pairs - mean_x**2
        var_y = sum_xx.T / pairs - mean_y**2
        corr = cov / np.sqrt(var_x * var_y)
    corr = np.where((pairs >= 3) & np.isfinite(corr), corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1, 1)


@dataclass(frozen=True)
class Copula:
    """One stratum's copula: its columns (marginals) and the correlation of their normal scores."""

    columns: tuple[Column, ...]
    correlation: np.ndarray
    stays: int

    @classmethod
    def fit(cls, table: pl.DataFrame, names: list[str]) -> Copula:
        """Fit on the rows of ``table`` (one per stay), columns ``names``."""
        columns, scores = [], []
        for name in names:
            values = table[name].to_numpy().astype(np.float64)
            discrete = name in DISCRETE_STRUCTURE or name.endswith("_measured")
            column = Column(name, discrete, np.sort(values[np.isfinite(values)]))
            columns.append(column)
            scores.append(column.normal_scores(values))
        shrinkage = max(MIN_SHRINKAGE, len(names) / (len(names) + table.height))
        correlation = _nearest_correlation(_pairwise_correlation(np.column_stack(scores)), shrinkage)
        return cls(columns=tuple(columns), correlation=correlation, stays=table.height)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` draws: column name -> ``(n,)`` float64 values (NaN where the column is empty)."""
        cholesky = np.linalg.cholesky(self.correlation)
        uniforms = stats.norm.cdf(rng.standard_normal((n, len(self.columns))) @ cholesky.T)
        return {c.name: c.inverse(uniforms[:, i]) for i, c in enumerate(self.columns)}


@dataclass
class InitialStateModel:
    """Gaussian copulas over a stay's statics, structure and first hours, one per sepsis stratum.

    Build with :meth:`fit`; draw with :meth:`sample` (module docstring).

    Attributes
    ----------
    variables
        Catalog variable codes of the first hours' columns.
    initial_hours
        How many first hours each stay is sampled with (the twin rolls forward from them).
    strata_
        ``{True: septic copula, False: non-septic copula}`` (a stratum without training stays is absent).
    units_
        ICU unit labels, indexed by the unit column's integer codes.
    septic_fraction_
        Share of septic stays in the fitting cohort.
    """

    variables: tuple[str, ...]
    initial_hours: int
    strata_: dict[bool, Copula] = field(default_factory=dict)
    units_: tuple[str, ...] = ()
    septic_fraction_: float = 0.0

    @staticmethod
    def value_column(hour_index: int, code: str) -> str:
        """Name of the value column of variable ``code`` in first hour ``hour_index`` (0-based)."""
        return f"h{hour_index}_{code}"

    @staticmethod
    def measured_column(hour_index: int, code: str) -> str:
        """Name of the 0/1 charted indicator of variable ``code`` in first hour ``hour_index``."""
        return f"h{hour_index}_{code}_measured"

    # ------------------------------------------------------------------ fitting
    def table(self, cohort: Cohort) -> pl.DataFrame:
        """The fitting table: one row per stay with hourly rows, every copula column (Float64, null = missing)."""
        hourly = cohort.hourly.sort("stay_id", "hour")
        spans = hourly.group_by("stay_id").agg(
            pl.col("hour").min().alias("first_hour"), pl.col("hour").max().alias("last_hour"))
        stays = cohort.stays.join(spans, on="stay_id", how="inner")
        units = sorted(u for u in stays[UNIT_COLUMN].drop_nulls().unique().to_list())
        self.units_ = tuple(units)
        first_hours = (
            hourly.join(spans.select("stay_id", "first_hour"), on="stay_id")
            .with_columns((pl.col("hour") - pl.col("first_hour")).alias("hour_index"))
            .filter(pl.col("hour_index") < self.initial_hours)
        )
        table = stays.select(
            "stay_id",
            *[pl.col(c).cast(pl.Float64) for c in STATIC_COLUMNS],
            pl.col(UNIT_COLUMN).replace_strict({u: i for i, u in enumerate(units)}, default=None,
                                               return_dtype=pl.Float64).alias(UNIT_COLUMN),
            pl.col("first_hour").cast(pl.Float64),
            (pl.col("last_hour") - pl.col("first_hour") + 1).cast(pl.Float64).alias("n_hours"),
            pl.col("sepsis").cast(pl.Float64),
            pl.when(pl.col("sepsis")).then(pl.col("last_hour") - pl.col("sepsis_onset_hour"))
            .cast(pl.Float64).alias("onset_to_end"),
            pl.col("death").cast(pl.Float64),
        )
        for k in range(self.initial_hours):
            part = first_hours.filter(pl.col("hour_index") == k).select(
                "stay_id",
                *[pl.col(v).cast(pl.Float64).alias(self.value_column(k, v)) for v in self.variables],
                *[pl.col(v).is_not_null().cast(pl.Float64).alias(self.measured_column(k, v)) for v in self.variables],
            )
            table = table.join(part, on="stay_id", how="left")
        # an hour the stay does not have counts as nothing measured
        return table.with_columns(pl.col("^h\\d+_.*_measured$").fill_null(0.0)).sort("stay_id")

    def column_names(self) -> list[str]:
        """The copula's columns, in order."""
        names = [*STATIC_COLUMNS, UNIT_COLUMN, *STRUCTURE_COLUMNS]
        for k in range(self.initial_hours):
            names += [self.measured_column(k, v) for v in self.variables]
            names += [self.value_column(k, v) for v in self.variables]
        return names

    def fit(self, cohort: Cohort) -> InitialStateModel:
        """Fit one copula per sepsis stratum on every stay of ``cohort`` (pass the train split). Returns self.

        Raises
        ------
        ValueError
            When ``initial_hours`` < 1 or the cohort has fewer than 3 stays with hourly rows.
        """
        if self.initial_hours < 1:
            raise ValueError(f"initial_hours must be >= 1, got {self.initial_hours}")
        table = self.table(cohort)
        if table.height < 3:
            raise ValueError(f"the initial-state model needs at least 3 stays with hourly rows, got {table.height}")
        self.septic_fraction_ = float(table["sepsis"].mean())
        names = self.column_names()
        self.strata_ = {}
        for septic in (True, False):
            stratum = table.filter(pl.col("sepsis") == float(septic))
            if stratum.height:
                self.strata_[septic] = Copula.fit(stratum, names)
        return self

    # ------------------------------------------------------------------ sampling
    def sample(
        self, septic: np.ndarray, rng: np.random.Generator, *, max_hours: int | None = None, charted: bool = True
    ) -> pl.DataFrame:
        """Draw one synthetic stay per entry of ``septic``, from the copula of its stratum.

        Parameters
        ----------
        septic
            ``(n,)`` bool, the sepsis status each stay is drawn with.
        rng
            The random generator (same state -> same stays).
        max_hours
            Cap on the stay length in hours (longer draws are cut; the onset of a septic stay is
            kept inside the cut stay).
        charted
            True: a first-hour value is kept where its drawn indicator says measured. False: every
            variable's drawn value is kept (the training data's never-measured variables stay
            null), for a generator whose observation model decides what is charted (the copula's
            indicators keep each variable's measured share but not which variables are measured
            together: on PhysioNet 2019 a stay that charts any of FiO2, pH and PaCO2 in its first two
            hours charts all three in 84 % of the stays, in 25 % of the copula's draws).

        Returns
        -------
        pl.DataFrame
            One row per stay, in the order of ``septic``: ``age, sex, weight, hosp_adm_hours``
            (Float64, null = unknown), ``unit`` (Utf8), ``first_hour``, ``n_hours`` (Int64, at
            least ``initial_hours + 1``), ``sepsis`` (bool, = ``septic``), ``onset_to_end`` (Int64,
            null unless septic), ``death`` (Boolean, null when the fitting cohort does not record
            it) and the first hours' ``h<k>_<code>`` values (Float64, null = not measured, or with
            ``charted=False`` never measured in the training data).

        Raises
        ------
        ValueError
            When a stratum is asked for that the fitting cohort had no stays of.
        """
        if not self.strata_:
            raise RuntimeError("the initial-state model is not fitted; call fit(cohort) first")
        septic = np.asarray(septic, dtype=bool)
        names = self.column_names()
        values = {name: np.full(len(septic), np.nan) for name in names}
        for stratum in (True, False):
            rows = np.flatnonzero(septic == stratum)
            if not len(rows):
                continue
            if stratum not in self.strata_:
                raise ValueError(f"asked for {'septic' if stratum else 'non-septic'} stays, but the training "
                                 "cohort has none to learn them from")
            for name, drawn in self.strata_[stratum].sample(len(rows), rng).items():
                values[name][rows] = drawn
        n_hours = np.maximum(np.rint(values["n_hours"]), self.initial_hours + 1)
        if max_hours is not None:
            n_hours = np.minimum(n_hours, max(max_hours, self.initial_hours + 1))
        onset_to_end = np.where(septic, np.clip(np.rint(np.nan_to_num(values["onset_to_end"])), 0, n_hours - 1), np.nan)
        frame: dict[str, Any] = {c: values[c] for c in STATIC_COLUMNS}
        frame[UNIT_COLUMN] = [self.units_[int(c)] if np.isfinite(c) else None for c in values[UNIT_COLUMN]]
        frame["first_hour"] = np.rint(np.nan_to_num(values["first_hour"])).astype(np.int64)
        frame["n_hours"] = n_hours.astype(np.int64)
        frame["sepsis"] = septic
        frame["onset_to_end"] = onset_to_end
        frame["death"] = values["death"]
        for k in range(self.initial_hours):
            for v in self.variables:
                measured = (values[self.measured_column(k, v)] > 0.5) | (not charted)
                frame[self.value_column(k, v)] = np.where(measured, values[self.value_column(k, v)], np.nan)
        out = pl.DataFrame(frame, nan_to_null=True)
        return out.with_columns(pl.col("onset_to_end").cast(pl.Int64), pl.col(UNIT_COLUMN).cast(pl.Utf8),
                                (pl.col("death") > 0.5).alias("death"))

    def initial_values(self, sampled: pl.DataFrame) -> np.ndarray:
        """``(n, initial_hours, V)`` float32 first-hour values of :meth:`sample`'s stays (NaN = not measured)."""
        hours = [sampled.select([self.value_column(k, v) for v in self.variables]).to_numpy() for k in range(self.initial_hours)]
        return np.stack(hours, axis=1).astype(np.float32)
