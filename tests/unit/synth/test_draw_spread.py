"""The draw-spread fit of synthetic cohorts (organsim.synth.spread): the statistics it matches, its
Newton and Broyden steps, and the whole fit against pilots whose answer is known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from organsim.synth import SynthesisConfig
from organsim.synth.spread import (
    MAX_REVERSION,
    MAX_SERIAL_CHANGE,
    MAX_SPREAD_CHANGE,
    SERIAL_BOUNDS,
    SERIAL_STEP,
    SHIFT_BOUNDS,
    SHIFT_STAYS,
    SHIFT_STEP,
    SPREAD_BOUNDS,
    broyden_update,
    charted_steps,
    charted_variables,
    fit_draw_spread,
    log_ratios,
    misses,
    newton_step,
    reversion_kappa,
    reversion_slopes,
    serial_step,
    shift_step,
    spread_variables,
    stay_variability,
    volatility_correlation,
)


def test_stay_variability_is_the_median_over_stays_of_sd_and_mean_abs_change_of_consecutive_charted_hours() -> None:
    hourly = pl.DataFrame({
        "stay_id": [1, 1, 1, 1, 1, 2, 2, 2, 3],
        "hour": [0, 1, 2, 3, 4, 5, 6, 8, 0],
        "hr": [80.0, 82.0, None, 86.0, 90.0, 60.0, 66.0, 70.0, 100.0],
    })
    # stay 1: values 80, 82, 86, 90 -> SD 4.431; changes over consecutive charted hours |82-80|, |90-86| -> 3
    # stay 2: values 60, 66, 70 -> SD 5.033; hours 5-6 consecutive (6), 6-8 not -> 6; stay 3: one value, no SD
    found = stay_variability(hourly, ["hr"])["hr"]
    assert found["stays"] == 2
    assert found["sd"] == pytest.approx(np.median([np.std([80, 82, 86, 90], ddof=1), np.std([60, 66, 70], ddof=1)]))
    assert found["mean_abs_change"] == pytest.approx(4.5)
    assert found["drift"] == pytest.approx(np.median([84.5 - 80, np.mean([60, 66, 70]) - 60]))  # stay mean minus first value
    # the first 2 hours of each stay: stay 1 (80, 82) SD 1.414 change 2; stay 2 (60, 66) SD 4.243 change 6
    cut = stay_variability(hourly, ["hr"], first_hours=2)["hr"]
    assert cut["sd"] == pytest.approx((np.sqrt(2) + np.sqrt(18)) / 2) and cut["mean_abs_change"] == pytest.approx(4.0)
    assert stay_variability(hourly.with_columns(hr=pl.lit(None, dtype=pl.Float64)), ["hr"]) == {}


def test_charted_steps_compare_two_steps_with_one_over_the_charted_values_whatever_the_gaps() -> None:
    hourly = pl.DataFrame({"stay_id": [1, 1, 1, 1, 2, 2, 2, 3], "hour": [0, 7, 30, 40, 0, 12, 13, 0],
                           "potassium": [4.0, 4.4, 3.6, 4.0, 3.0, 5.0, 4.0, 4.1]})
    # one step: 0.4, 0.8, 0.4 (stay 1), 2.0, 1.0 (stay 2); two steps: 0.4, 0.4 (stay 1), 1.0 (stay 2)
    found = charted_steps(hourly, ["potassium"])["potassium"]
    assert found == {"step_ratio": pytest.approx((1.8 / 3) / (4.6 / 5)), "stays": 2}
    # the first 20 hours: stay 1 charted twice (one step 0.4), stay 2 three times
    assert charted_steps(hourly, ["potassium"], first_hours=20)["potassium"] == {"step_ratio": pytest.approx(1.0 / (3.4 / 3)), "stays": 1}
    assert charted_steps(hourly.filter(pl.col("hour") == 0), ["potassium"]) == {}


def test_charted_variables_are_the_labs_between_the_two_shares(catalog) -> None:
    enough = {"step_ratio": 1.2, "stays": 50}
    real = {v: enough for v in ("hr", "potassium", "glucose", "bilirubin_direct", "creatinine")}
    share = {"hr": 0.9, "potassium": 0.08, "glucose": 0.22, "bilirubin_direct": 0.003, "creatinine": 0.06}
    model = ("hr", "potassium", "glucose", "bilirubin_direct", "creatinine")
    fed_back = np.array([True, False, False, False, False])
    assert charted_variables(catalog, model, real, share, fed_back) == ("potassium", "creatinine")
    assert charted_variables(catalog, model, {**real, "creatinine": {"step_ratio": 1.2, "stays": 5}}, share, fed_back) == ("potassium",)


def test_a_serial_step_is_a_bounded_newton_step_on_the_sd_alone() -> None:
    assert serial_step(0.1, 0.5, 0.0) == pytest.approx(-0.2)
    assert serial_step(2.0, 0.5, 0.0) == pytest.approx(-MAX_SERIAL_CHANGE)
    assert serial_step(2.0, 0.5, SERIAL_BOUNDS[0] + 0.1) == pytest.approx(SERIAL_BOUNDS[0])
    assert serial_step(np.nan, 0.5, 0.3) == 0.3 and serial_step(0.1, 0.0, 0.3) == 0.3


def _ar_stays(phi: float, stays: int = 400, hours: int = 60, seed: int = 0) -> pl.DataFrame:
    """Stays whose glucose follows an AR(1) around the stay's own level (``phi`` 1: a random walk),
    charted every other hour."""
    rng = np.random.default_rng(seed)
    level = rng.normal(120, 30, stays)
    x = np.empty((stays, hours))
    x[:, 0] = level + rng.normal(0, 10, stays)
    for h in range(1, hours):
        x[:, h] = level + phi * (x[:, h - 1] - level) + rng.normal(0, 10, stays)
    x[:, 1::2] = np.nan
    return pl.DataFrame({"stay_id": np.repeat(np.arange(stays), hours), "hour": np.tile(np.arange(hours), stays),
                         "glucose": x.ravel()}, nan_to_null=True)


def test_reversion_slopes_read_how_fast_values_return_to_their_stay_s_level() -> None:
    reverting, walking = reversion_slopes(_ar_stays(0.7), ["glucose"]), reversion_slopes(_ar_stays(1.0), ["glucose"])
    # charted every other hour: two AR steps, 0.7^2 - 1 = -0.51, read against the stay's mean so far
    assert reverting["glucose"]["slope"] == pytest.approx(0.7**2 - 1, abs=0.08)
    assert walking["glucose"]["slope"] == pytest.approx(0.0, abs=0.05)  # a random walk does not return
    assert reverting["glucose"]["stays"] == 400
    # cut at 12 hours: values at hours 0, 2, .., 10, the sixth has five before it; at 10 hours none has
    assert reversion_slopes(_ar_stays(0.7), ["glucose"], first_hours=12)["glucose"]["stays"] == 400
    assert "glucose" not in reversion_slopes(_ar_stays(0.7), ["glucose"], first_hours=10)


def test_reversion_kappa_is_the_slope_gap_where_the_synthetic_stays_return_too_slowly() -> None:
    real = {"glucose": {"slope": -0.27, "stays": 500}, "spo2": {"slope": -0.6, "stays": 500}, "hr": {"slope": -0.3, "stays": 500},
            "etco2": {"slope": -0.5, "stays": 500}}
    synthetic = {"glucose": {"slope": -0.13, "stays": 200}, "spo2": {"slope": -0.7, "stays": 200}, "hr": {"slope": 0.9, "stays": 200},
                 "etco2": {"slope": 0.0, "stays": SHIFT_STAYS - 1}}
    kappa = reversion_kappa(synthetic, real, ["glucose", "spo2", "hr", "etco2", "temperature"])
    assert kappa == {"glucose": pytest.approx(0.14), "hr": MAX_REVERSION}  # SpO2 returns fast enough; EtCO2 in too few stays


def test_spread_variables_are_the_modelled_vitals_charted_in_enough_stays(catalog) -> None:
    enough = {"stays": 50, "sd": 5.0, "mean_abs_change": 3.0}
    real = {"hr": enough, "creatinine": enough, "spo2": {**enough, "stays": 3}, "map": {**enough, "sd": 0.0}, "temperature": enough}
    assert spread_variables(catalog, ("hr", "map", "spo2", "creatinine", "temperature"), real) == ("hr", "temperature")
    # a lab charted in a fifth of the training hours is fitted too, one charted less is not
    assert spread_variables(catalog, ("hr", "creatinine"), real, {"creatinine": 0.25}) == ("hr", "creatinine")
    assert spread_variables(catalog, ("hr", "creatinine"), real, {"creatinine": 0.1}) == ("hr",)


def test_log_ratios_leave_out_statistics_of_too_few_synthetic_stays() -> None:
    real = {"hr": {"sd": 8.0, "mean_abs_change": 4.0, "stays": 100}, "map": {"sd": 10.0, "mean_abs_change": 5.0, "stays": 100}}
    synthetic = {"hr": {"sd": 10.0, "mean_abs_change": 4.0, "stays": 100}, "map": {"sd": 9.0, "mean_abs_change": 4.0, "stays": 5}}
    np.testing.assert_allclose(log_ratios(synthetic, real, ["hr", "map"]), [[np.log(1.25), 0.0], [np.nan, np.nan]])


def test_misses_measure_the_drift_in_real_standard_deviations() -> None:
    real = {"hr": {"sd": 8.0, "mean_abs_change": 4.0, "drift": -1.0, "stays": 100}}
    synthetic = {"hr": {"sd": 10.0, "mean_abs_change": 4.0, "drift": -3.0, "stays": 100}}
    np.testing.assert_allclose(misses(synthetic, real, ["hr"]), [[np.log(1.25), 0.0, -0.25, np.nan]])  # no step ratio asked
    assert np.isnan(misses({"hr": {**synthetic["hr"], "stays": 5}}, real, ["hr"])).all()


def test_a_shift_step_is_a_chord_step_on_the_measured_slope_within_bounds() -> None:
    # drift misses (real SDs) at m = 0 and at the step: slope 2 per unit m for both variables
    at_zero, at_step = np.array([-0.3, 0.1]), np.array([-0.3, 0.1]) + 2 * SHIFT_STEP
    np.testing.assert_allclose(shift_step(at_zero, at_step, np.zeros(2), at_zero), [0.15, -0.05])
    np.testing.assert_allclose(shift_step(at_zero, at_step, np.array([0.1, 0.0]), np.array([-0.1, 0.1])), [0.15, -0.05])
    np.testing.assert_allclose(shift_step(at_zero, at_step, np.zeros(2), np.array([-5.0, 5.0])), SHIFT_BOUNDS[::-1])
    # no slope (the shift did not move the drift) or no measurement: unchanged
    np.testing.assert_allclose(shift_step(at_zero, at_zero, np.array([0.2, 0.0]), at_zero), [0.2, 0.0])
    np.testing.assert_allclose(shift_step(np.array([np.nan, 0.1]), at_step, np.zeros(2), at_zero), [0.0, -0.05])


def test_a_newton_step_solves_a_linear_response_within_its_step_limits_and_bounds() -> None:
    jacobian = np.array([[1.6, 0.6], [1.7, -0.2]])  # d(log ratio of SD, of change) / d(log s, rho)
    knobs = np.array([0.0, -0.1])
    ratios = np.array([0.18, 0.04])
    moved = newton_step(ratios, jacobian, knobs)
    np.testing.assert_allclose(ratios + jacobian @ (moved - knobs), 0.0, atol=1e-12)
    # a single knob (a variable that is not fed back): least squares over the two statistics
    alone = newton_step(ratios, jacobian[:, :1], knobs[:1])
    np.testing.assert_allclose(alone, -(jacobian[:, 0] @ ratios) / (jacobian[:, 0] @ jacobian[:, 0]))
    far = newton_step(np.array([5.0, -5.0]), jacobian, knobs)  # a long step, shortened in the same direction
    full = np.linalg.solve(jacobian, -np.array([5.0, -5.0]))
    assert max(abs(far[0] - knobs[0]) / MAX_SPREAD_CHANGE, abs(far[1] - knobs[1]) / MAX_SERIAL_CHANGE) == pytest.approx(1.0)
    np.testing.assert_allclose((far - knobs) / np.linalg.norm(far - knobs), full / np.linalg.norm(full))
    near_bound = newton_step(np.array([5.0, -5.0]), jacobian, np.array([np.log(SPREAD_BOUNDS[1]) - 0.01, SERIAL_BOUNDS[0] + 0.01]))
    assert np.log(SPREAD_BOUNDS[0]) <= near_bound[0] <= np.log(SPREAD_BOUNDS[1]) and SERIAL_BOUNDS[0] <= near_bound[1] <= SERIAL_BOUNDS[1]
    np.testing.assert_array_equal(newton_step(np.array([np.nan, 0.1]), jacobian, knobs), knobs)


def test_broyden_update_takes_the_secant_of_the_last_step() -> None:
    jacobian = np.zeros((2, 2, 2))
    updated = broyden_update(jacobian, np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 3.0], [1.0, 1.0]]))
    np.testing.assert_array_equal(updated[0], [[2.0, 0.0], [3.0, 0.0]])
    np.testing.assert_array_equal(updated[1], 0.0)  # did not move: kept


class LinearPilot:
    """Pilot cohorts whose log ratios respond linearly to (log s, rho) and whose drift misses (real SDs)
    respond linearly to the shift m: hr fed back (rho a knob), temperature not."""

    model_variables = ("hr", "temperature", "creatinine")
    jacobian = {"hr": np.array([[1.6, 0.6], [1.7, -0.2]]), "temperature": np.array([[1.5, 0.0], [1.9, 0.0]])}
    offset = {"hr": np.array([0.18, 0.04]), "temperature": np.array([0.15, 0.05])}
    drift_offset, drift_slope = {"hr": 0.3, "temperature": -0.2}, {"hr": 2.0, "temperature": 1.5}
    own_serial = np.array([-0.1, 1.0, 1.0], dtype=np.float32)
    real = {v: {"sd": 2.0, "mean_abs_change": 1.0, "drift": -0.5, "stays": 100} for v in ("hr", "temperature")}

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, spread: np.ndarray, serial: np.ndarray, shift: np.ndarray) -> dict[str, dict[str, float]]:
        self.calls.append((spread.copy(), serial.copy(), shift.copy()))
        assert spread[2] == 1 and serial[2] == 1 and shift[2] == 0  # an unfitted variable keeps the twin's own knobs
        assert serial[1] == 1  # temperature is not fed back: its rho is no knob
        result = {}
        for i, v in enumerate(("hr", "temperature")):
            knobs = np.array([np.log(spread[i]), serial[i] - self.own_serial[i]])
            log_ratio = self.offset[v] + self.jacobian[v] @ knobs
            drift = -0.5 + 2.0 * (self.drift_offset[v] + self.drift_slope[v] * shift[i])
            result[v] = {"sd": 2.0 * np.exp(log_ratio[0]), "mean_abs_change": np.exp(log_ratio[1]), "drift": drift, "stays": 100}
        return result


def test_the_fit_finds_the_knobs_of_a_linear_response_in_one_newton_step() -> None:
    pilot = LinearPilot()
    fitted = fit_draw_spread(pilot, pilot.real, ("hr", "temperature"), pilot.model_variables, np.array([True, False, False]),
                             pilot.own_serial, pilot_stays=64, pilot_hours=48)
    assert len(pilot.calls) == 5 and len(fitted.pilots) == 5 and fitted.chosen == {"hr": 4, "temperature": 4}
    np.testing.assert_allclose(pilot.calls[1][0][:2], 0.9)  # the Jacobian's pilots: s lowered, then rho, then the shift
    assert pilot.calls[2][1][0] == pytest.approx(-0.1 + SERIAL_STEP)
    np.testing.assert_allclose(pilot.calls[3][2][:2], SHIFT_STEP)
    assert fitted.shift == {"hr": pytest.approx(-0.15), "temperature": pytest.approx(0.2 / 1.5)}
    solution = np.linalg.solve(pilot.jacobian["hr"], -pilot.offset["hr"])
    assert np.log(fitted.spread["hr"]) == pytest.approx(solution[0], abs=1e-3)
    assert fitted.serial["hr"] == pytest.approx(-0.1 + solution[1], abs=1e-3)
    column = pilot.jacobian["temperature"][:, 0]
    assert np.log(fitted.spread["temperature"]) == pytest.approx(-(column @ pilot.offset["temperature"]) / (column @ column), abs=1e-3)
    assert set(fitted.serial) == {"hr"} and fitted.pilots[0]["ratios"]["hr"]["sd"] == pytest.approx(np.exp(0.18), abs=1e-4)
    np.testing.assert_allclose(fitted.spread_vector(pilot.model_variables), [fitted.spread["hr"], fitted.spread["temperature"], 1.0],
                               rtol=1e-6)
    np.testing.assert_allclose(fitted.serial_vector(pilot.model_variables, pilot.own_serial), [fitted.serial["hr"], 1.0, 1.0], rtol=1e-6)
    assert fitted.pilots[4]["ratios"]["hr"] == {"sd": pytest.approx(1.0), "mean_abs_change": pytest.approx(1.0)}
    assert fitted.pilots[4]["drift_miss"]["hr"] == pytest.approx(0.0, abs=1e-4)
    np.testing.assert_allclose(fitted.shift_vector(pilot.model_variables), [-0.15, 0.2 / 1.5, 0.0], rtol=1e-5)
    assert fitted.config_knobs() == {"draw_spread": fitted.spread, "draw_serial": fitted.serial, "draw_shift": fitted.shift,
                                     "draw_reversion": {}}
    # a second step costs one more pilot and, the response being linear, stays at the solution
    again = LinearPilot()
    twice = fit_draw_spread(again, again.real, ("hr", "temperature"), again.model_variables, np.array([True, False, False]),
                            again.own_serial, newton_steps=2)
    assert len(again.calls) == 6 and twice.spread["hr"] == pytest.approx(fitted.spread["hr"], abs=2e-4)
    assert twice.shift["hr"] == pytest.approx(-0.15)
    with pytest.raises(ValueError, match="newton_steps"):
        fit_draw_spread(again, again.real, ("hr",), again.model_variables, np.ones(3, dtype=bool), again.own_serial, newton_steps=0)


def test_without_a_shift_the_fit_runs_one_pilot_fewer_and_every_pilot_at_m_0() -> None:
    """``fit_shift=False`` (the generator's drift control steers the stays' course instead)."""
    pilot = LinearPilot()
    fitted = fit_draw_spread(pilot, pilot.real, ("hr", "temperature"), pilot.model_variables, np.array([True, False, False]),
                             pilot.own_serial, fit_shift=False)
    assert len(pilot.calls) == 4 and len(fitted.pilots) == 4 and fitted.shift == {}
    assert all(not shift.any() for _, _, shift in pilot.calls)
    solution = np.linalg.solve(pilot.jacobian["hr"], -pilot.offset["hr"])
    assert np.log(fitted.spread["hr"]) == pytest.approx(solution[0], abs=1e-3)


class FewStaysPilot(LinearPilot):
    """The linear response, with temperature charted in fewer pilot stays than a shift needs."""

    def __call__(self, spread: np.ndarray, serial: np.ndarray, shift: np.ndarray) -> dict[str, dict[str, float]]:
        result = super().__call__(spread, serial, shift)
        return {**result, "temperature": {**result["temperature"], "stays": SHIFT_STAYS - 1}}


def test_a_variable_charted_in_few_pilot_stays_gets_no_shift() -> None:
    pilot = FewStaysPilot()
    fitted = fit_draw_spread(pilot, pilot.real, ("hr", "temperature"), pilot.model_variables, np.array([True, False, False]),
                             pilot.own_serial)
    assert "temperature" not in fitted.shift and fitted.shift["hr"] == pytest.approx(-0.15)
    assert pilot.calls[3][2][1] == pilot.calls[-1][2][1] == 0.0 and "temperature" in fitted.spread  # its spread is still fitted


class MissingPilot(LinearPilot):
    """The linear response, except that heart rate's pilots far from the twin's own knobs come out twice too wide."""

    def __call__(self, spread: np.ndarray, serial: np.ndarray, shift: np.ndarray) -> dict[str, dict[str, float]]:
        result = super().__call__(spread, serial, shift)
        if spread[0] < 0.85:
            result["hr"] = {**result["hr"], "sd": 2 * result["hr"]["sd"]}
        return result


def test_each_variable_keeps_the_knobs_of_the_pilot_nearest_its_targets() -> None:
    pilot = MissingPilot()
    pilot.offset = {"hr": np.array([0.4, 0.3]), "temperature": pilot.offset["temperature"]}  # far off: a long step
    fitted = fit_draw_spread(pilot, pilot.real, ("hr", "temperature"), pilot.model_variables, np.array([True, False, False]),
                             pilot.own_serial)
    assert fitted.pilots[4]["ratios"]["hr"]["sd"] > 1.9  # the step's pilot missed ...
    assert fitted.chosen["hr"] == 1 and fitted.spread["hr"] == pytest.approx(0.9)  # ... so hr keeps the narrower pilot's knobs
    assert fitted.serial["hr"] == pytest.approx(-0.1, abs=1e-7) and "hr" not in fitted.shift and fitted.chosen["temperature"] == 4


def test_the_config_checks_its_draw_spread_settings() -> None:
    assert SynthesisConfig(patients=100, max_hours=10).pilot_stays == 0  # no fit by default: the twin's own draws
    assert SynthesisConfig(patients=100, max_hours=10, spread_pilot_stays=256).pilot_stays == 25  # a quarter of the cohort
    assert SynthesisConfig(patients=8, max_hours=10, spread_pilot_stays=256).pilot_stays == 20  # but enough for a median
    assert SynthesisConfig(patients=4000, max_hours=10, spread_pilot_stays=256).pilot_stays == 256
    with pytest.raises(ValueError, match="spread_pilot_stays"):
        SynthesisConfig(patients=10, max_hours=10, spread_pilot_stays=-1)
    with pytest.raises(ValueError, match="draw_spread"):
        SynthesisConfig(patients=10, max_hours=10, draw_spread={"hr": 0.0})
    with pytest.raises(ValueError, match="draw_serial"):
        SynthesisConfig(patients=10, max_hours=10, draw_serial={"hr": -1.5})
    with pytest.raises(ValueError, match="draw_shift"):
        SynthesisConfig(patients=10, max_hours=10, draw_shift={"hr": float("nan")})
    with pytest.raises(ValueError, match="draw_reversion"):
        SynthesisConfig(patients=10, max_hours=10, draw_reversion={"glucose": -0.1})
    assert SynthesisConfig(patients=10, max_hours=10, draw_shift={"hr": 0.1}).given_knobs
    assert SynthesisConfig(patients=10, max_hours=10, draw_reversion={"glucose": 0.1}).given_knobs
    assert not SynthesisConfig(patients=10, max_hours=10).given_knobs


class LabPilot(LinearPilot):
    """The linear response, and two labs continued between chartings: the log ratio of creatinine's
    step ratio is 0.45 + 1.5 rho, potassium's 0.15 + 0.5 rho (random walks with fresh draws); their
    mean, 0.3 + rho, is 0 at rho = -0.3."""

    model_variables = ("hr", "temperature", "creatinine", "potassium")
    own_serial = np.array([-0.1, 1.0, 1.0, 1.0], dtype=np.float32)

    def __call__(self, spread: np.ndarray, serial: np.ndarray, shift: np.ndarray) -> dict[str, dict[str, float]]:
        result = super().__call__(np.r_[spread[:2], 1.0], np.r_[serial[:2], 1.0], np.r_[shift[:2], 0.0])
        assert (spread[2:] == 1).all() and (shift[2:] == 0).all() and serial[2] == serial[3]  # one rho, the labs' only knob
        self.calls[-1] = (spread.copy(), serial.copy(), shift.copy())
        return {**result, "creatinine": {"step_ratio": 1.2 * np.exp(0.45 + 1.5 * serial[2]), "stays": 100},
                "potassium": {"step_ratio": 1.3 * np.exp(0.15 + 0.5 * serial[3]), "stays": 100}}


def test_the_labs_fit_one_serial_correlation_between_chartings_from_fresh_draws() -> None:
    pilot = LabPilot()
    real = {**pilot.real, "creatinine": {"step_ratio": 1.2, "stays": 100}, "potassium": {"step_ratio": 1.3, "stays": 100}}
    fitted = fit_draw_spread(pilot, real, ("hr", "temperature"), pilot.model_variables, np.array([True, False, False, False]),
                             pilot.own_serial, charted=("creatinine", "potassium"))
    assert len(pilot.calls) == 5 and (pilot.calls[0][1][2:] == 0.0).all()  # from fresh draws (rho 0), not the twin's own 1.0
    assert pilot.calls[2][1][2] == pytest.approx(SERIAL_STEP) and pilot.calls[1][1][2] == 0.0
    assert fitted.serial["creatinine"] == fitted.serial["potassium"] == pytest.approx(-0.3)
    assert fitted.chosen["creatinine"] == fitted.chosen["potassium"] == 4
    assert "creatinine" not in fitted.spread and "potassium" not in fitted.shift
    assert fitted.pilots[4]["ratios"]["creatinine"] == {"step_ratio": pytest.approx(1.0)}
    assert fitted.pilots[4]["ratios"]["potassium"] == {"step_ratio": pytest.approx(1.0)}
    solution = np.linalg.solve(pilot.jacobian["hr"], -pilot.offset["hr"])
    assert fitted.serial["hr"] == pytest.approx(-0.1 + solution[1], abs=1e-3)  # the vitals' fit as without the labs


def test_volatility_correlation_is_the_correlation_of_the_stays_log_mean_absolute_changes() -> None:
    """Three variables over 60 stays: ``b``'s hourly changes scale with ``a``'s, ``c``'s are drawn
    apart; a variable no stay charts twice in a row is uncorrelated with the others."""
    rng = np.random.default_rng(0)
    rows = []
    for stay in range(60):
        scale_a, scale_c = np.exp(rng.normal(0, 0.7)), np.exp(rng.normal(0, 0.7))
        for hour in range(12):
            rows.append({"stay_id": stay, "hour": hour, "a": scale_a * rng.normal(), "b": 2 * scale_a * rng.normal(),
                         "c": scale_c * rng.normal(), "d": float(hour) if hour == 0 else None})
    hourly = pl.DataFrame(rows)
    correlation = volatility_correlation(hourly, ["a", "b", "c", "d"])
    assert correlation.shape == (4, 4)
    np.testing.assert_allclose(np.diag(correlation), 1.0)
    assert correlation[0, 1] > 0.8 and abs(correlation[0, 2]) < 0.35
    np.testing.assert_allclose(correlation[3, :3], 0.0, atol=1e-9)
    assert np.linalg.eigvalsh(correlation).min() > -1e-9
