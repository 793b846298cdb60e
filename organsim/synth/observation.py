"""The observation model: which simulated values a care team would have charted, hour by hour.

The twin simulates every variable every hour; a real record holds a vital sign most hours and a
lab every few hours or days. :class:`ObservationModel` learns, from the training cohort, one
classifier per variable (LightGBM gradient-boosted trees, :data:`HAZARD_TREES` trees) of the
probability that the variable is charted in an hour, given

- the hours since *each* variable was last charted (missing before its first charting in the
  stay) and the hours since the stay began: labs come on a schedule (on PhysioNet most creatinine
  values about a day apart, the first one in the first half-day), and a panel falls due together;
- whether the variable's last charted value lay outside the catalog's normal range (abnormal
  results are re-checked sooner);
- which of the variables drawn before it in the hour are charted: charting comes in panels (on
  PhysioNet SBP, DBP and MAP are charted together in 99 % of hours; creatinine with BUN,
  potassium, glucose and calcium; haemoglobin with haematocrit, platelets and WBC; pH with PaCO2
  and lactate), so an hour's variables are drawn one after the other (:attr:`ObservationModel.order_`:
  the often-charted vitals first, most often first, then the others rarest first), each given the
  draws before it;
- the stay's charting style for the variable (below);
- the hours until the stay's sepsis onset (missing for a stay that is not septic): care teams chart
  more as sepsis comes on. On the PhysioNet 2019 train split, FiO2 has been charted in the last 6
  hours of 8.6 % of the hours of stays that are not septic, 20 % of the septic stays' hours more
  than 18 h before onset, 17 % from 18 to 6 h before, and 34 % of their hours from 6 h before
  onset on (the hours the challenge labels positive); platelets 29 %, 32 %, 29 % and 43 %. Without
  this feature a synthetic septic stay charted at its own rate throughout (FiO2 18 %, 23 % and 25 %;
  platelets 34 %, 35 % and 36 %), so what told of sepsis in the synthetic stays was that a stay
  charted blood gases at all, not that it had begun to, and trees trained on them read real stays
  that way. A synthetic stay's onset is the one its initial state drew (:mod:`organsim.synth.generate`).
  With the feature (``bench/synthesize.py``, recorded configuration) the synthetic septic stays chart
  FiO2 in 15 %, 19 % and 33 % of those hours, platelets 30 %, 32 % and 42 %, and the LightGBM
  sepsis-within-6-hours AUROC drop fell from 0.045 to 0.020 (mean AUROC over four seeds of the
  utility protocol 0.811 -> 0.827, real-train 0.838).

A stay's *style* for a variable is the decile (:data:`N_STYLES`) of its share of charted hours
among the training stays of similar length (:data:`N_LENGTH_BANDS` quantile bands of stay
length; a share depends on the length: one creatinine is a tenth of a 10-hour stay, a sixtieth
of a 60-hour one), written with its band as ``band * N_STYLES + decile``: the classifiers read
the decile and the band apart, as a decile means another charting rate in a short stay than in a
long one (on PhysioNet the lowest heart-rate decile of the shortest fifth of stays charts 21 % of
its hours, of the longest fifth 60 %; read without the band the short ones charted 45 %, now 30 %).
Stays differ: on PhysioNet most stays chart temperature every 4 hours or so, one in ten nearly
every hour (a probe); the median septic stay charts lactate in 1.5 % of its hours, the median
other stay never.

A synthetic stay draws its deciles one variable after another in :attr:`ObservationModel.order_`,
each from a classification tree (:attr:`ObservationModel.style_trees_`; sequential CART
synthesis as synthpop does it: Reiter 2005, Nowok et al. 2016) fitted on the training stays of
the stay's sepsis status: the variable's decile given the stay's length band and the deciles
drawn before it. The stay falls into a leaf and takes the decile of a random training stay in
that leaf. Every leaf holds at least :data:`MIN_LEAF_STAYS` training stays, so no drawn decile
follows one training stay, and a drawn combination is a mixture of leaves, not a copied stay: on
PhysioNet, 0.8 % of 1,800 drawn decile vectors (for the held-out stays' sepsis status and length)
equal a training stay's, as 0.6 % of the 1,800 held-out real stays' vectors do, and the median
Hamming distance to the closest training vector is 8 of 40 variables (held-out stays 7; 5th
percentile 2 and 2): drawn styles lie no closer to the training stays than unseen stays do. The
trees keep the joint structure that a Gaussian copula of the styles (the former model) lost:
panels whose stays chart all or none (bilirubin, AST and alkaline phosphatase: Spearman
correlation 1.00 of their shares across stays), HCO3 with base excess (0.72 in the records, 0.36
under the copula).

Measured on the PhysioNet 2019 train split (4,200 stays), re-charting the stays' own values made
dense (forward- and back-filled) and telling the charting apart from the real charting (share of
charted hours per variable and stay length; LightGBM, 5-fold AUROC, 0.5 = indistinguishable):
the first model (probabilities counted in cells of hours since the variable's own last charting x
abnormal x one parent variable charted x a style sextile, styles sharing one stay factor) 0.94;
with a copula of styles 0.90 (lactate followed a charted PaCO2 in 41 % of hours with one
shared factor, 71 % with the copula, 79 % in the records); trees over every variable's hours
since (150 trees, rank scores as styles) 0.84, styles ranked within length bands 0.82, the
vitals-then-rarest-first order 0.80 (most-charted-first 0.82, rarest-first throughout 0.80); with
:data:`HAZARD_TREES` trees, decile styles and styles of never-charting stays kept from charting
(:attr:`ObservationModel.charting_styles_`) 0.80 (seed 1: 0.80). Each training stay re-charted
with its *own* deciles gave 0.66: most of the gap lay in how styles were drawn, not in the hourly
classifiers. Style draws tried: the copula over 20 levels 0.81, over continuous ranks 0.82; a
latent class model (40 classes, deciles independent within a class) 0.88 (it split panels: a stay
drew AST without bilirubin); style trees over all stays with leaves of 50 stays 0.73, of 10 stays
0.72, of 20 stays 0.72, per sepsis status 0.72 (seed 1: 0.73); with the band read apart (this
model) 0.71 (seed 1: 0.71); the same with 20 levels instead of deciles 0.72. Tried and left: the hours left until the stay's end as a feature 0.73 (no gain over
0.72); logit offsets per variable, decile and charted-before, fitted by re-charting 1,000 training
stays twice, 0.735 (no gain, fitting twice as long). Fitting takes 50-60 s, charting 110-130 s per
150,000 stay-hours on one core, as before. Stays without any creatinine: real 8.4 %, first model
17 %, copula 11.8 %, trees 13 % (own deciles 11.8 %: 3-16 % of the stays whose decile charts a lab
never chart it, against none in the records). In a cohort the twin generated (2,000 stays, seed
0, against 2,000 train stays), charting-only detection fell from 0.81 (the copula) to 0.74, the
detection on every stay summary from 0.92 to 0.91.

A charted value is written at the resolution the training data record it with
(:attr:`ObservationModel.resolution_`: the coarsest of :data:`RESOLUTIONS` that at least
:data:`RESOLUTION_SHARE` of the variable's training values are multiples of; heart rate in whole
beats, SpO2 in whole percent), so repeated readings repeat exactly as they do at the bedside.
:meth:`ObservationModel.mask` draws the variables hour by hour; its :class:`ObservationState`
carries the last charted hour and value across rollout segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import polars as pl
from scipy import stats
from sklearn.tree import DecisionTreeClassifier

from organsim.catalog import Catalog
from organsim.data import Cohort

HAZARD_TREES = 60
"""Boosting rounds of each variable's charting classifier."""
N_STYLES = 10
"""Charting styles: deciles of a stay's share of charted hours among training stays of its length
band. Levels, not the rank itself, so that no style singles out one training stay."""
N_LENGTH_BANDS = 5
"""Quantile bands of training stay length within which charting shares are ranked into styles."""
MIN_LEAF_STAYS = 20
"""Fewest training stays in a leaf of a style tree: a new stay's style for a variable is drawn from
the styles of at least this many training stays that share its sepsis status, length band and the
styles drawn before it (the leaf), so no drawn style follows one training stay."""
VITALS_RATE = 0.3
"""Variables charted in at least this share of training hours (the vitals) are drawn first, most
often charted first; the others follow, rarest first."""

RESOLUTIONS = (100.0, 50.0, 10.0, 5.0, 1.0, 0.5, 0.1, 0.05, 0.01)
"""Candidate recording resolutions, coarsest first."""
RESOLUTION_SHARE = 0.9


def recording_resolution(values: np.ndarray) -> float:
    """The coarsest of :data:`RESOLUTIONS` that at least :data:`RESOLUTION_SHARE` of ``values`` are
    multiples of (to 1e-4 of a step); 0.0 when none is (values recorded at full precision)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return 0.0
    for step in RESOLUTIONS:
        ratio = values / step
        if (np.abs(ratio - np.rint(ratio)) < 1e-4 * np.maximum(1.0, np.abs(ratio))).mean() >= RESOLUTION_SHARE:
            return step
    return 0.0


@dataclass
class ObservationState:
    """Per stay and variable, the last charted hour and value (NaN = never charted).

    Attributes
    ----------
    last_hour, last_value
        ``(n, V)`` float64.
    style
        ``(n, V)`` float, the stay's charting style per variable: its length band times
        :data:`N_STYLES` plus its decile (:meth:`ObservationModel.draw_styles`).
    first_hour
        ``(n,)`` float64 ICU hour each stay began (the charting classifiers read the hours since).
    onset_hour
        ``(n,)`` float64 ICU hour of each stay's sepsis onset, NaN for a stay that is not septic (the
        classifiers read the hours until it); None: no stay is septic.
    """

    last_hour: np.ndarray
    last_value: np.ndarray
    style: np.ndarray
    first_hour: np.ndarray
    onset_hour: np.ndarray | None = None

    @classmethod
    def from_history(cls, values: np.ndarray, hours: np.ndarray, style: np.ndarray) -> ObservationState:
        """The state after the charted hours ``values`` ``(n, L, V)`` (NaN = not charted) at ICU hours
        ``hours`` ``(n, L)``, for stays of charting ``style`` ``(n, V)`` (:meth:`ObservationModel.draw_styles`)
        that are not septic."""
        charted = np.isfinite(values)  # (n, L, V)
        any_charted = charted.any(axis=1)
        last_index = values.shape[1] - 1 - np.argmax(charted[:, ::-1, :], axis=1)  # (n, V)
        rows = np.arange(values.shape[0])[:, None]
        last_hour = np.where(any_charted, hours[rows, last_index], np.nan).astype(np.float64)
        last_value = np.where(any_charted, values[rows, last_index, np.arange(values.shape[2])[None, :]], np.nan)
        return cls(last_hour=last_hour, last_value=last_value.astype(np.float64), style=np.asarray(style, dtype=np.float64),
                   first_hour=np.asarray(hours[:, 0], dtype=np.float64))

    @classmethod
    def opening(cls, style: np.ndarray, first_hour: np.ndarray, onset_hour: np.ndarray | None = None) -> ObservationState:
        """The state of stays of charting ``style`` ``(n, V)`` that begin at ICU hours ``first_hour``
        ``(n,)`` with nothing charted yet, with sepsis ``onset_hour`` ``(n,)`` (NaN or None: not septic)."""
        style = np.asarray(style, dtype=np.float64)
        return cls(last_hour=np.full(style.shape, np.nan), last_value=np.full(style.shape, np.nan), style=style,
                   first_hour=np.asarray(first_hour, dtype=np.float64),
                   onset_hour=None if onset_hour is None else np.asarray(onset_hour, dtype=np.float64))

    def select(self, index: np.ndarray) -> ObservationState:
        """The state of the stays at ``index``."""
        return ObservationState(self.last_hour[index], self.last_value[index], self.style[index], self.first_hour[index],
                                None if self.onset_hour is None else self.onset_hour[index])

    def hours_to_onset(self, now: np.ndarray) -> np.ndarray:
        """``(n,)`` hours from ICU hours ``now`` ``(n, 1)`` until each stay's sepsis onset (negative
        after it; NaN: not septic)."""
        if self.onset_hour is None:
            return np.full(len(now), np.nan, dtype=np.float32)
        return (self.onset_hour - now[:, 0]).astype(np.float32)

    def stay_hours(self, now: np.ndarray) -> np.ndarray:
        """``(n, 1)`` hours since each stay began at ICU hours ``now`` ``(n, 1)`` (1 in the first hour)."""
        return now - self.first_hour[:, None] + 1


def hazard_classifier(seed: int) -> lgb.LGBMClassifier:
    """One variable's charting classifier: seeded, single-threaded, deterministic."""
    return lgb.LGBMClassifier(
        n_estimators=HAZARD_TREES, learning_rate=0.15, num_leaves=31, min_child_samples=20, subsample=0.8,
        subsample_freq=1, colsample_bytree=1.0, random_state=seed, deterministic=True, force_row_wise=True,
        n_jobs=1, verbose=-1,
    )


def style_tree(seed: int) -> DecisionTreeClassifier:
    """One variable's style tree: leaves of at least :data:`MIN_LEAF_STAYS` training stays, seeded."""
    return DecisionTreeClassifier(min_samples_leaf=MIN_LEAF_STAYS, random_state=seed)


def drawing_order(rate: np.ndarray) -> np.ndarray:
    """``(V,)`` variable indices in drawing order: those charted in at least :data:`VITALS_RATE` of
    hours most often charted first, then the others rarest first (module docstring)."""
    by_rate = np.argsort(-rate, kind="stable")
    frequent = by_rate[rate[by_rate] >= VITALS_RATE]
    return np.concatenate([frequent, by_rate[rate[by_rate] < VITALS_RATE][::-1]]).astype(np.int64)


@dataclass
class ObservationModel:
    """Per-variable charting classifiers learned from a cohort (module docstring).

    Attributes
    ----------
    variables
        The ``V`` variable codes, in the order of the arrays it masks.
    normal_low, normal_high
        ``(V,)`` catalog normal range of each variable.
    plausible_low, plausible_high
        ``(V,)`` catalog plausible range (a rounded value is kept inside it).
    order_
        ``(V,)`` variable indices in the order they are drawn within an hour (:func:`drawing_order`).
    position_
        ``(V,)`` each variable's place in :attr:`order_` (its classifier reads the variables before it).
    hazards_
        Per variable (in :attr:`variables` order) its fitted classifier, or a constant probability
        where the training hours all agree (0.0: never charted).
    rate_
        ``(V,)`` share of hours in which each variable is charted.
    resolution_
        ``(V,)`` recording resolution of each variable (0 = full precision).
    length_edges_
        ``(N_LENGTH_BANDS - 1,)`` stay hours cutting the training stays into length bands: a stay of
        ``h`` hours is in band ``(h > length_edges_).sum()``.
    style_trees_
        For the other stays, then the septic ones, per variable in :attr:`order_` order the
        :func:`style_tree` of its style given the stay's length band and the styles of the
        variables before it in :attr:`order_`, fitted on the training stays of that sepsis status
        (on all of them where the status has none; module docstring).
    septic_share_
        Share of septic training stays (the sepsis status of new stays drawn without one).
    charting_styles_
        ``(V, N_STYLES)`` bool: some training stay of that decile charted the variable. A style of
        only never-charting stays (97 % of PhysioNet stays never chart base excess: their tie of
        ranks is one decile) charts it with probability 0: the classifiers see almost none of its
        hours once a synthetic stay's other variables take values the training stays of that style
        never had, and there their trees charted base excess in 20 % of synthetic stays (real 2.5 %).
    """

    variables: tuple[str, ...]
    normal_low: np.ndarray
    normal_high: np.ndarray
    plausible_low: np.ndarray
    plausible_high: np.ndarray
    order_: np.ndarray | None = None
    position_: np.ndarray | None = None
    hazards_: list[lgb.LGBMClassifier | float] = field(default_factory=list)
    rate_: np.ndarray | None = None
    resolution_: np.ndarray | None = None
    length_edges_: np.ndarray | None = None
    style_trees_: list[DecisionTreeClassifier] = field(default_factory=list)
    septic_share_: float | None = None
    charting_styles_: np.ndarray | None = None

    @classmethod
    def for_catalog(cls, variables: tuple[str, ...], catalog: Catalog) -> ObservationModel:
        """An unfitted model over ``variables`` with the catalog's normal and plausible ranges."""
        normal = np.array([catalog.variable(v).normal for v in variables], dtype=np.float64).reshape(len(variables), 2)
        plausible = np.array([catalog.variable(v).plausible for v in variables], dtype=np.float64).reshape(len(variables), 2)
        return cls(variables=variables, normal_low=normal[:, 0], normal_high=normal[:, 1],
                   plausible_low=plausible[:, 0], plausible_high=plausible[:, 1])

    def _abnormal(self, last_value: np.ndarray) -> np.ndarray:
        """1.0 where the last value lies outside the normal range, 0.0 inside, NaN never charted."""
        outside = ((last_value < self.normal_low) | (last_value > self.normal_high)).astype(np.float32)
        return np.where(np.isnan(last_value), np.nan, outside).astype(np.float32)

    def _features(self, v: int, since: np.ndarray, charted_now: np.ndarray, stay_hours: np.ndarray,
                  abnormal: np.ndarray, style: np.ndarray, to_onset: np.ndarray) -> np.ndarray:
        """``(n, F)`` float32 features of variable ``v``'s classifier: hours since each variable's last
        charting ``(n, V)``, charted this hour for the variables drawn before ``v``, hours since the
        stay began ``(n,)``, ``v``'s last value abnormal, ``v``'s style read as its decile and the
        stay's length band, and the hours until sepsis onset ``(n,)`` (NaN: not septic)."""
        earlier = self.order_[: self.position_[v]]
        band, decile = np.divmod(style[:, v], N_STYLES)
        return np.column_stack([since, charted_now[:, earlier], stay_hours, abnormal[:, v], decile, band, to_onset]).astype(np.float32)

    def fit(self, cohort: Cohort, *, seed: int = 0) -> ObservationModel:
        """Fit every variable's classifier on every hour of ``cohort`` (pass the train split). Returns self."""
        hourly = cohort.hourly.sort("stay_id", "hour")
        if hourly.height == 0:
            raise ValueError("the observation model needs hourly rows to learn from; the cohort has none")
        hour = pl.col("hour").cast(pl.Float64)
        since, last = [], []
        for code in self.variables:
            charted_hour = pl.when(pl.col(code).is_not_null()).then(hour)
            since.append((hour - charted_hour.forward_fill().shift(1).over("stay_id")).alias(f"{code}__since"))
            last.append(pl.col(code).cast(pl.Float64).forward_fill().shift(1).over("stay_id").alias(f"{code}__last"))
        onsets = cohort.stays.select("stay_id", pl.col("sepsis_onset_hour").cast(pl.Float64).alias("__onset"))
        frame = hourly.join(onsets, on="stay_id", how="left", maintain_order="left").select(
            *[pl.col(c).is_not_null().alias(c) for c in self.variables], *since, *last,
            (hour - hour.min().over("stay_id") + 1).alias("__stay_hours"), (pl.col("__onset") - hour).alias("__to_onset"))
        charted = frame.select(self.variables).to_numpy().astype(bool)  # (R, V)
        hours_since = frame.select([f"{c}__since" for c in self.variables]).to_numpy().astype(np.float32)
        abnormal = self._abnormal(frame.select([f"{c}__last" for c in self.variables]).to_numpy().astype(np.float64))
        stay_hours = frame["__stay_hours"].to_numpy().astype(np.float32)
        to_onset = frame["__to_onset"].to_numpy().astype(np.float32)  # NaN: not septic
        self.rate_ = charted.mean(axis=0)
        self.resolution_ = np.array([recording_resolution(hourly[c].to_numpy()) for c in self.variables])
        self.order_ = drawing_order(self.rate_)
        self.position_ = np.argsort(self.order_)
        septic_stays = cohort.stays.filter(pl.col("sepsis").fill_null(False))["stay_id"].to_numpy()
        style = self._training_styles(hourly["stay_id"].to_numpy(), charted, septic_stays, seed=seed)
        self.hazards_ = []
        for v in range(len(self.variables)):
            target = charted[:, v]
            if target.min() == target.max():
                self.hazards_.append(float(target[0]))
                continue
            features = self._features(v, hours_since, charted, stay_hours, abnormal, style, to_onset)
            self.hazards_.append(hazard_classifier(seed + v).fit(features, target))
        return self

    def _training_styles(self, stay_ids: np.ndarray, charted: np.ndarray, septic_stays: np.ndarray, *, seed: int) -> np.ndarray:
        """``(R, V)`` style of each training row's stay (``band * N_STYLES + decile``, module docstring); sets the length bands,
        :attr:`charting_styles_`, :attr:`septic_share_` and fits :attr:`style_trees_`
        (``septic_stays``: the septic stays' ids)."""
        stays, row_stay = np.unique(stay_ids, return_inverse=True)
        hours = np.bincount(row_stay, minlength=len(stays)).astype(np.float64)
        shares = np.stack([np.bincount(row_stay, weights=charted[:, v], minlength=len(stays)) for v in range(charted.shape[1])],
                          axis=1) / hours[:, None]  # (stays, V)
        self.length_edges_ = np.quantile(hours, np.arange(1, N_LENGTH_BANDS) / N_LENGTH_BANDS)
        band = self.length_band(hours)
        ranks = np.zeros(shares.shape)  # (stays, V) in (0, 1)
        for b in np.unique(band):
            rows = band == b
            ranks[rows] = stats.rankdata(shares[rows], axis=0, method="average") / (rows.sum() + 1)
        levels = np.minimum((ranks * N_STYLES).astype(np.int64), N_STYLES - 1)  # (stays, V)
        self.charting_styles_ = np.zeros((shares.shape[1], N_STYLES), dtype=bool)
        for v in range(shares.shape[1]):
            self.charting_styles_[v, np.unique(levels[shares[:, v] > 0, v])] = True
        septic = np.isin(stays, septic_stays)
        self.septic_share_ = float(septic.mean())
        self.style_trees_ = []
        for status in (False, True):
            stratum = septic == status if (septic == status).any() else np.ones_like(septic)
            context = band[stratum, None].astype(np.float64)  # (stratum stays, 1 + variables drawn so far)
            trees = []
            for v in self.order_:
                trees.append(style_tree(seed + int(v)).fit(context, levels[stratum, v]))
                context = np.column_stack([context, levels[stratum, v]])
            self.style_trees_.append(trees)
        return (band[:, None] * N_STYLES + levels)[row_stay].astype(np.float32)

    def length_band(self, n_hours: np.ndarray) -> np.ndarray:
        """Length band (``0 .. N_LENGTH_BANDS - 1``) of stays of ``n_hours`` hours."""
        return (np.asarray(n_hours, dtype=np.float64)[..., None] > self.length_edges_).sum(axis=-1).astype(np.int64)

    def draw_styles(
        self, n: int, rng: np.random.Generator, septic: np.ndarray | None = None, *, n_hours: np.ndarray | None = None
    ) -> np.ndarray:
        """``(n, V)`` styles of new stays (``band * N_STYLES + decile``, as floats; module docstring).

        Each variable's style in :attr:`order_` order, drawn from the leaf of the
        :attr:`style_trees_` of the stay's sepsis status (``septic`` ``(n,)`` bool; None: drawn at
        the training share) that its length band (``n_hours`` ``(n,)``; None: a band drawn
        uniformly, the bands being quantiles) and styles drawn so far fall into.
        """
        if not self.style_trees_:
            raise RuntimeError("the observation model is not fitted; call fit(cohort) first")
        status = rng.random(n) < self.septic_share_ if septic is None else np.asarray(septic, dtype=bool)
        band = rng.integers(0, N_LENGTH_BANDS, n) if n_hours is None else self.length_band(n_hours)
        uniforms = rng.random((n, len(self.variables)))
        styles = np.empty((n, len(self.variables)))
        for trees, rows in ((self.style_trees_[0], ~status), (self.style_trees_[1], status)):
            if not rows.any():
                continue
            context = band[rows, None].astype(np.float64)  # (stays, 1 + variables drawn so far)
            for v, tree in zip(self.order_, trees, strict=True):
                cumulative = np.cumsum(tree.predict_proba(context), axis=1)  # (stays, styles seen in the tree)
                pick = np.minimum((uniforms[rows, v, None] > cumulative).sum(axis=1), len(tree.classes_) - 1)
                styles[rows, v] = tree.classes_[pick]
                context = np.column_stack([context, styles[rows, v]])
        return band[:, None] * N_STYLES + styles

    def record(self, values: np.ndarray) -> np.ndarray:
        """``values`` (``(..., V)``) rounded to each variable's recording resolution, kept in the plausible range."""
        step = np.where(self.resolution_ > 0, self.resolution_, 1.0)
        rounded = np.where(self.resolution_ > 0, np.rint(values / step) * step, values)
        return np.clip(rounded, self.plausible_low, self.plausible_high)

    def probability(self, v: int, since: np.ndarray, charted_now: np.ndarray, stay_hours: np.ndarray,
                    abnormal: np.ndarray, style: np.ndarray, to_onset: np.ndarray | None = None) -> np.ndarray:
        """``(n,)`` probability that variable ``v`` is charted, given the features of :meth:`_features`
        (``to_onset`` None: no stay is septic; 0 for a style of never-charting training stays,
        :attr:`charting_styles_`)."""
        hazard = self.hazards_[v]
        charts = self.charting_styles_[v, style[:, v].astype(np.int64) % N_STYLES]
        if to_onset is None:
            to_onset = np.full(len(style), np.nan, dtype=np.float32)
        if isinstance(hazard, float):
            return np.where(charts, hazard, 0.0)
        return np.where(charts, hazard.booster_.predict(self._features(v, since, charted_now, stay_hours, abnormal, style, to_onset)), 0.0)

    def mask(
        self, values: np.ndarray, hours: np.ndarray, state: ObservationState, rng: np.random.Generator
    ) -> np.ndarray:
        """Chart simulated hours: ``(n, L, V)`` values at their recording resolution, the uncharted ones NaN.

        Parameters
        ----------
        values
            ``(n, L, V)`` simulated values in raw units, in :attr:`variables` order (NaN: the
            simulator has no value; never charted).
        hours
            ``(n, L)`` ICU hour of each simulated hour.
        state
            Last charted hour and value per stay and variable before these hours; updated in place.
        rng
            Random generator (same state -> same mask).
        """
        if self.order_ is None:
            raise RuntimeError("the observation model is not fitted; call fit(cohort) first")
        n, length, n_vars = values.shape
        out = np.full(values.shape, np.nan, dtype=np.float32)
        for step in range(length):
            now = hours[:, step].astype(np.float64)[:, None]  # (n, 1)
            since = (now - state.last_hour).astype(np.float32)  # (n, V), NaN = never charted
            stay_hours = state.stay_hours(now)[:, 0].astype(np.float32)
            abnormal = self._abnormal(state.last_value)
            to_onset = state.hours_to_onset(now)
            uniforms = rng.random((n, n_vars))
            charted = np.zeros((n, n_vars), dtype=bool)
            for v in self.order_:
                p = self.probability(v, since, charted, stay_hours, abnormal, state.style, to_onset)
                charted[:, v] = (uniforms[:, v] < p) & np.isfinite(values[:, step, v])
            written = self.record(values[:, step])
            out[:, step] = np.where(charted, written, np.nan)
            state.last_hour = np.where(charted, now, state.last_hour)
            state.last_value = np.where(charted, written, state.last_value)
        return out
