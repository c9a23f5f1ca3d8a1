"""Parameter sets as data: the bundled 5b set, rules relative to l_max, validation errors."""

from __future__ import annotations

import math

import pytest
import yaml

from simulations.biophysics import (
    PARAMETER_DIR,
    ExponentialRule,
    ParameterSetError,
    ZoneRule,
    load_parameter_set,
)


def test_bundled_5b_set():
    params = load_parameter_set("hay-5b")
    soma = params.regions["soma"].mechanisms
    assert soma["NaTs2_t"]["gbar"] == 0.998912
    assert soma["CaDynamics_E2"] == {"decay": 294.679571, "gamma": 0.000509}
    assert params.regions["axon"].mechanisms["NaTa_t"]["gbar"] == 3.89618
    assert set(params.regions["basal"].mechanisms) == {"Ih"}
    assert params.regions["basal"].passive.cm == 2.0
    assert "NaTa_t" not in params.regions["apical"].mechanisms
    assert params.reference_l_max == pytest.approx(1300.5, abs=0.05)
    assert params.distance.origin == "apical_root"
    assert params.distance.last_segment == "section_end"


def test_ih_rule_matches_documented_values():
    ih = next(r for r in load_parameter_set().rules if r.mechanism == "Ih")
    assert ih.at(0.0, 1300.5, 1300.5) == pytest.approx(1.2174e-4, rel=1e-3)
    assert ih.at(845.35, 1300.5, 1300.5) == pytest.approx(2.10e-3, rel=2e-3)
    assert ih.at(1200.0, 1300.5, 1300.5) == ih.at(845.35, 1300.5, 1300.5)  # plateau


def test_zone_rule_scales_with_the_cell():
    zone = next(r for r in load_parameter_set().rules if r.mechanism == "Ca_LVAst")
    inside, outside = 0.141954 * 1.6, 0.141954 * 1.6 * 0.01
    assert zone.at(700.0, 1300.5, 1300.5) == pytest.approx(inside)
    assert zone.at(685.0, 1300.5, 1300.5) == pytest.approx(outside)  # open interval
    assert zone.at(900.0, 1300.5, 1300.5) == pytest.approx(outside)
    # a cell half as long has its hot zone at half the distance
    assert zone.at(350.0, 650.25, 1300.5) == pytest.approx(inside)
    assert zone.at(700.0, 650.25, 1300.5) == pytest.approx(outside)


def test_rule_formulas():
    rule = ExponentialRule(
        kind="exponential", region="apical", mechanism="Ih", parameter="gbar", a=1, b=2, c=3, x0=0.1
    )
    assert rule.at(50.0, 100.0, 100.0) == pytest.approx(1 + 3 * math.exp(2 * (0.5 - 0.1)))
    with pytest.raises(ValueError, match="below its end"):
        ZoneRule(
            kind="zone", region="apical", mechanism="Ih", parameter="gbar", value=1, start=5, end=1
        )


def _write(tmp_path, data, name="set.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _bundled():
    return yaml.safe_load((PARAMETER_DIR / "hay-5b.yaml").read_text())


def test_custom_set_from_file(tmp_path, default_cell):
    from simulations.cell import Cell

    data = _bundled()
    data["name"] = "weak-soma-na"
    data["regions"]["soma"]["mechanisms"]["NaTs2_t"]["gbar"] = 0.5
    cell = Cell(default_cell.morphology_path, _write(tmp_path, data))
    assert cell.soma[0](0.5).NaTs2_t.gbar == 0.5
    assert cell.parameters.name == "weak-soma-na"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["regions"]["soma"]["passive"].update(cm=-1), "cm"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d["regions"].pop("axon"), "regions missing: axon"),
        (lambda d: d["rules"][0].update(kind="sigmoid"), "sigmoid"),
        (lambda d: d["rules"][1].update(region="basal"), "not inserted"),
        (lambda d: d["regions"]["soma"]["passive"].update(Ra="high"), "Ra"),
    ],
)
def test_invalid_sets_name_the_problem(tmp_path, edit, message):
    data = _bundled()
    edit(data)
    path = _write(tmp_path, data)
    with pytest.raises(ParameterSetError, match=message) as info:
        load_parameter_set(path)
    assert str(path) in str(info.value)


def test_missing_and_unknown_sets(tmp_path):
    with pytest.raises(ParameterSetError, match="not found"):
        load_parameter_set(tmp_path / "missing.yaml")
    with pytest.raises(ParameterSetError, match=r"unknown parameter set 'hay-3'.*hay-5b"):
        load_parameter_set("hay-3")
    broken = tmp_path / "broken.yaml"
    broken.write_text("regions: [unclosed\n")
    with pytest.raises(ParameterSetError, match="not valid YAML"):
        load_parameter_set(broken)


def test_unknown_mechanism_is_reported(tmp_path, default_cell):
    from simulations.cell import Cell

    data = _bundled()
    data["regions"]["soma"]["mechanisms"]["Kdr_fancy"] = {"gbar": 1.0}
    with pytest.raises(ParameterSetError, match="Kdr_fancy"):
        Cell(default_cell.morphology_path, _write(tmp_path, data))


def test_unknown_mechanism_parameter_is_reported(tmp_path, default_cell):
    from simulations.cell import Cell

    data = _bundled()
    data["regions"]["axon"]["mechanisms"]["NaTa_t"]["gmax"] = 1.0
    with pytest.raises(ParameterSetError, match="NaTa_t has no parameter gmax"):
        Cell(default_cell.morphology_path, _write(tmp_path, data))
