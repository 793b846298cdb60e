"""Value tokenizers: round trips over grids of settings, cut-offs as edges, configs rebuilt exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from organsim.data.tokenizers import MISSING_ID, BinTokenizer, ChangeTokenizer, TextSerializer
from organsim.utils.errors import DataError


def _training_values(catalog, n: int, seed: int, missing: float) -> np.ndarray:
    """(n, V) skewed values inside each variable's plausible range, with a fraction missing."""
    rng = np.random.default_rng(seed)
    columns = []
    for variable in catalog.variables:
        lo, hi = variable.plausible
        n_lo, n_hi = variable.normal
        centre, spread = (n_lo + n_hi) / 2, max(n_hi - n_lo, (hi - lo) / 50)
        x = centre + spread * rng.standard_t(3, size=n)  # heavy tails, like lab values
        columns.append(np.clip(x, lo, hi))
    values = np.stack(columns, axis=1)
    values[rng.random(values.shape) < missing] = np.nan
    return values


@pytest.mark.parametrize("method", ["quantile", "range"])
@pytest.mark.parametrize("n_bins", [2, 16, 64])
@pytest.mark.parametrize("missing", [0.0, 0.7])
def test_bin_round_trip_over_settings(catalog, method, n_bins, missing):
    codes = catalog.variable_codes
    values = _training_values(catalog, 2000, seed=n_bins, missing=missing)
    tokenizer = BinTokenizer.fit(values, codes, catalog, n_bins=n_bins, method=method)

    ids, mask, state = tokenizer.encode(values)
    assert ids.shape == values.shape and ids.dtype == np.int64
    np.testing.assert_array_equal(mask, ~np.isnan(values))
    assert np.all(ids[~mask] == MISSING_ID) and np.all(ids[mask] >= 1)

    decoded = tokenizer.decode(ids, state)
    np.testing.assert_array_equal(np.isnan(decoded), np.isnan(values))  # NaN <-> missing, both ways
    # every decoded value lies in the bin of its value, so decoding and re-encoding gives the same ids
    np.testing.assert_array_equal(tokenizer.encode(decoded)[0], ids)
    for column, edges in enumerate(tokenizer.edges):
        observed = mask[:, column]
        bins = ids[observed, column] - 1
        width = edges[bins + 1] - edges[bins]
        assert np.all(np.abs(decoded[observed, column] - values[observed, column]) <= width + 1e-4)

    # every id decodes, and re-encodes to itself
    for column, vocab in enumerate(tokenizer.vocab_sizes):
        state_one = tokenizer.state_for([codes[column]])
        all_ids = np.arange(vocab)[:, None]
        back = tokenizer.encode(tokenizer.decode(all_ids, state_one), [codes[column]])[0]
        np.testing.assert_array_equal(back, all_ids)


@pytest.mark.parametrize("method", ["quantile", "range"])
def test_clinical_cutoffs_are_bin_edges(catalog, method):
    codes = catalog.variable_codes
    tokenizer = BinTokenizer.fit(_training_values(catalog, 500, seed=1, missing=0.2), codes, catalog, n_bins=8, method=method)
    for code, required in [("map", [65]), ("lactate", [2, 4]), ("spo2", [90, 94]), ("platelets", [50, 100]),
                           ("creatinine", [1.2, 2.0, 3.5]), ("bilirubin_total", [1.2, 2, 6]), ("gcs", [6, 10, 13])]:
        edges = tokenizer.edges[codes.index(code)]
        for cut in required:
            assert np.any(np.isclose(edges, cut, rtol=0, atol=1e-6)), (code, cut)
        # a value just below a cut-off and one at it land in different tokens
        ids, _, _ = tokenizer.encode(np.array([[required[0] - 1e-3, required[0]]]).T, [code])
        assert ids[0, 0] != ids[1, 0]
    for code, edges in zip(codes, tokenizer.edges, strict=True):
        lo, hi = catalog.variable(code).plausible
        assert edges[0] == np.float32(lo) and edges[-1] == np.float32(hi)  # edges are float32 numbers


def test_out_of_range_values_fall_in_the_end_bins(catalog):
    codes = catalog.variable_codes
    tokenizer = BinTokenizer.fit(_training_values(catalog, 300, seed=2, missing=0.0), codes, catalog, n_bins=8)
    ids, _, _ = tokenizer.encode(np.array([[-5.0], [1e6]]), ["hr"])
    assert ids[0, 0] == 1 and ids[1, 0] == tokenizer.vocab_sizes[codes.index("hr")] - 1


def test_subset_and_reordered_columns_decode_by_state(catalog):
    codes = catalog.variable_codes
    values = _training_values(catalog, 800, seed=3, missing=0.3)
    tokenizer = BinTokenizer.fit(values, codes, catalog, n_bins=16)
    picked = ["lactate", "hr", "map"]
    sub = values[:, [codes.index(c) for c in picked]]
    ids, _, state = tokenizer.encode(sub, picked)
    assert state.variables == tuple(picked)
    full_ids, _, full_state = tokenizer.encode(values)
    np.testing.assert_array_equal(tokenizer.decode(ids, state), tokenizer.decode(full_ids, full_state)[:, [codes.index(c) for c in picked]])
    with pytest.raises(KeyError, match="not known"):
        tokenizer.encode(sub, ["lactate", "hr", "nope"])
    with pytest.raises(ValueError, match="out of range"):
        tokenizer.decode(np.full((1, 3), 10_000), state)


def test_config_rebuilds_identical_tokenizer_through_json(catalog):
    codes = catalog.variable_codes
    values = _training_values(catalog, 700, seed=4, missing=0.5)
    tokenizer = BinTokenizer.fit(values, codes, catalog, n_bins=32, method="range")
    rebuilt = BinTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    assert rebuilt.variables == tokenizer.variables and rebuilt.method == "range" and rebuilt.n_bins == 32
    for a, b in zip(tokenizer.edges + tokenizer.centers, rebuilt.edges + rebuilt.centers, strict=True):
        np.testing.assert_array_equal(a, b)
    ids, _, state = tokenizer.encode(values)
    np.testing.assert_array_equal(rebuilt.encode(values)[0], ids)
    np.testing.assert_array_equal(rebuilt.decode(ids, state), tokenizer.decode(ids, state))
    with pytest.raises(ValueError, match="format"):
        BinTokenizer.from_dict({"format": "something else"})


def test_unmeasured_variable_gets_bins_over_its_normal_range(catalog):
    codes = catalog.variable_codes
    values = _training_values(catalog, 200, seed=5, missing=0.0)
    values[:, codes.index("crp")] = np.nan
    tokenizer = BinTokenizer.fit(values, codes, catalog, n_bins=10)
    edges = tokenizer.edges[codes.index("crp")]
    lo, hi = catalog.variable("crp").normal
    assert np.sum((edges > lo) & (edges < hi)) >= 8


def test_bad_fit_arguments(catalog):
    codes = catalog.variable_codes
    with pytest.raises(ValueError, match="method"):
        BinTokenizer.fit(np.zeros((3, len(codes))), codes, catalog, method="kmeans")
    with pytest.raises(ValueError, match="n_bins"):
        BinTokenizer.fit(np.zeros((3, len(codes))), codes, catalog, n_bins=1)
    with pytest.raises(ValueError, match=r"\(N, V="):
        BinTokenizer.fit(np.zeros((3, 2)), codes, catalog)


@pytest.mark.parametrize("missing_marker", ["NA", "?"])
@pytest.mark.parametrize("hours", [1, 5])
def test_text_round_trip_over_settings(catalog, missing_marker, hours):
    serializer = TextSerializer.from_catalog(catalog, missing=missing_marker)
    values = _training_values(catalog, hours, seed=hours, missing=0.4).astype(np.float32)
    text = serializer.serialize(values)
    assert len(text.splitlines()) == hours
    parsed = serializer.parse(text)
    np.testing.assert_array_equal(np.isnan(parsed), np.isnan(values))
    rounded = np.array([[round(float(v), d) for v, d in zip(row, serializer.decimals, strict=True)] for row in values], dtype=np.float32)
    np.testing.assert_allclose(parsed, rounded, rtol=1e-6, atol=0, equal_nan=True)
    assert serializer.serialize(parsed) == text  # a fixed point after one rounding
    assert TextSerializer.from_dict(json.loads(json.dumps(serializer.to_dict()))) == serializer


def test_text_format_and_parse_errors(catalog):
    serializer = TextSerializer(variables=("hr", "map", "spo2"), decimals=(1, 1, 0))
    assert serializer.serialize(np.array([93.0, 65.54, np.nan])) == "hr=93.0 map=65.5 spo2=NA"
    parsed = serializer.parse("spo2=97 hr=80.5\n\nmap=NA")
    np.testing.assert_array_equal(parsed, np.array([[80.5, np.nan, 97], [np.nan, np.nan, np.nan]], dtype=np.float32))
    with pytest.raises(DataError, match=r"row 2.*column 'map'.*not a number"):
        serializer.parse("hr=1\nmap=abc", source="prompt.txt")
    with pytest.raises(DataError, match=r"unknown variable"):
        serializer.parse("lactate=2")
    with pytest.raises(DataError, match=r"given twice"):
        serializer.parse("hr=1 hr=2")
    with pytest.raises(DataError, match=r"expected code=value"):
        serializer.parse("hr 1")


@pytest.mark.parametrize("n_bins", [2, 8, 32])
@pytest.mark.parametrize("scale", [0.5, 20.0])
def test_change_round_trip_over_settings(n_bins, scale):
    rng = np.random.default_rng(n_bins)
    changes = [rng.standard_t(3, 500) * scale, np.round(rng.normal(0, 2, 300)), np.array([])]  # heavy, integer, none
    tokenizer = ChangeTokenizer.fit(changes, ["hr", "gcs", "crp"], np.array([scale, 1.0, 3.0]), n_bins=n_bins)
    assert all(2 <= n <= n_bins for n in tokenizer.bin_counts)
    previous = rng.normal(100, 30, (40, 3))
    values = previous + rng.standard_t(3, (40, 3)) * scale
    values[::7, 0] = np.nan
    previous[::5, 1] = np.nan
    ids, mask, state = tokenizer.encode(values, previous)
    np.testing.assert_array_equal(mask, ~np.isnan(values) & ~np.isnan(previous))
    assert np.all(ids[~mask] == 0) and np.all(ids[mask] >= 1)
    decoded = tokenizer.decode(ids, state)
    np.testing.assert_array_equal(np.isnan(decoded), ~mask)
    # a decoded value lies in the change bin of its value: re-encoding gives the same ids
    np.testing.assert_array_equal(tokenizer.encode(np.where(mask, decoded, np.nan), previous)[0], ids)
    # the state anchors decoding: a far-away previous value moves the forecast with it
    far = tokenizer.decode(ids, tokenizer.encode(values + 1e4, previous + 1e4)[2])
    np.testing.assert_allclose(far[mask], decoded[mask] + 1e4)
    rebuilt = ChangeTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict())))
    np.testing.assert_array_equal(rebuilt.encode(values, previous)[0], ids)
    np.testing.assert_array_equal(rebuilt.decode(ids, state), decoded)


def test_change_tokenizer_errors():
    tokenizer = ChangeTokenizer.fit([np.arange(10.0)], ["hr"], np.array([1.0]), n_bins=4)
    with pytest.raises(ValueError, match="same shape"):
        tokenizer.encode(np.zeros((2, 1)), np.zeros((3, 1)))
    with pytest.raises(KeyError, match="not known"):
        tokenizer.encode(np.zeros((2, 1)), np.zeros((2, 1)), ["map"])
    with pytest.raises(ValueError, match="> 0"):
        ChangeTokenizer.fit([np.arange(3.0)], ["hr"], np.array([0.0]))
    with pytest.raises(ValueError, match="format"):
        ChangeTokenizer.from_dict({"format": "x"})
