"""`elmpipe cell check`'s verdicts: plausible ranges for an L5 pyramidal cell, and cells outside.

Implausible cells are the built-in morphology under edited copies of the hay-5b parameter set
(Ca channels removed, leak cut tenfold, apical Na twenty times denser); each must raise the flag
meant for it, and the reference cells none.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.commands.cell import _format_verdicts
from simulations.plausibility import RANGES, assess, judge, measurements_of

HAY_5B = Path(__file__).resolve().parents[1] / "simulations" / "parameters" / "hay-5b.yaml"

#: what `elmpipe cell check` measured on the four reference cells (docs/own-cell.md)
REFERENCE_CELLS = {
    "built-in": {
        "resting_potential_mv": -80.46,
        "input_resistance_mohm": 54.7,
        "rheobase_na": 0.338,
        "rate_at_1na_hz": 21.0,
        "bap_attenuation": 0.684,
        "ca_spike_ms": 20.4,
        "ca_spike_peak_mv": 22.7,
        "ca_blocked_ms": 0.7,
        "ca_blocked_peak_mv": -18.9,
        "nmda_supralinearity": 2.41,
    },
    "cell1": {
        "resting_potential_mv": -81.13,
        "input_resistance_mohm": 43.7,
        "rheobase_na": 0.45,
        "rate_at_1na_hz": 17.0,
        "bap_attenuation": 0.215,
        "ca_spike_ms": 25.2,
        "ca_spike_peak_mv": 23.7,
        "ca_blocked_ms": 0.7,
        "ca_blocked_peak_mv": -19.5,
        "nmda_supralinearity": 4.71,
    },
    "cell3": {
        "resting_potential_mv": -80.89,
        "input_resistance_mohm": 19.5,
        "rheobase_na": 1.64,
        "rate_at_1na_hz": 0.0,
        "bap_attenuation": 0.67,
        "ca_spike_ms": 18.5,
        "ca_spike_peak_mv": 6.8,
        "ca_blocked_ms": 0.5,
        "ca_blocked_peak_mv": -13.8,
        "nmda_supralinearity": 2.22,
    },
}


@pytest.mark.parametrize("name", sorted(REFERENCE_CELLS))
def test_reference_cells_measure_inside_every_range(name):
    verdicts = assess(REFERENCE_CELLS[name])
    assert [v.property for v in verdicts] == list(RANGES)
    assert [v for v in verdicts if not v.ok] == []


def test_the_issue_cell_is_flagged_for_each_implausible_property():
    """The numbers of issue 27: Rin 240 MΩ, 179 spikes/s at 1 nA, a 'Ca spike' at +116 mV that
    stays at +93 mV with Ca blocked."""
    flagged = {
        v.property: v.reason
        for v in assess(
            {
                "input_resistance_mohm": 240.0,
                "rate_at_1na_hz": 179.0,
                "ca_spike_peak_mv": 116.0,
                "ca_blocked_peak_mv": 93.0,
                "resting_potential_mv": -70.0,
            }
        )
        if not v.ok
    }
    assert set(flagged) == {
        "input_resistance_mohm",
        "rate_at_1na_hz",
        "ca_spike_peak_mv",
        "ca_blocked_peak_mv",
    }
    assert flagged["input_resistance_mohm"].startswith("above 100 MΩ: too little leak")
    assert "Na" in flagged["ca_blocked_peak_mv"]


def test_a_missing_measurement_is_a_flag_with_its_own_reason():
    verdict = judge("rheobase_na", None)
    assert verdict.verdict == "flag" and "up to 3 nA" in verdict.reason
    assert judge("rheobase_na", 0.01).reason.startswith("below 0.05 nA")
    assert judge("rheobase_na", 0.3).ok and judge("rheobase_na", 0.3).reason == (
        RANGES["rheobase_na"].basis
    )


def test_every_range_says_why_on_each_bounded_side():
    for key, bounds in RANGES.items():
        assert bounds.low is not None or bounds.high is not None, key
        assert bounds.basis, key
        if bounds.low is not None:
            assert bounds.below, key
        if bounds.high is not None:
            assert bounds.above, key


def test_verdict_block_ends_with_the_count_outside():
    verdicts = assess({**REFERENCE_CELLS["built-in"], "input_resistance_mohm": 240.0})
    text = _format_verdicts(verdicts)
    lines = text.splitlines()
    assert lines[-1].startswith("1 of 10 properties outside the plausible range")
    flagged = [line for line in lines if line.strip().startswith("flag")]
    assert len(flagged) == 1 and "input resistance" in flagged[0] and "240" in flagged[0]
    assert _format_verdicts(assess(REFERENCE_CELLS["cell1"])).endswith(
        "0 of 10 properties outside the plausible range"
    )


def test_measurements_come_from_the_check_report():
    report = {
        "resting_potential_mv": {"soma": -75.0, "nexus": -70.0},
        "input_resistance_mohm": 40.0,
        "step_spikes": {"0.2": 0, "1.0": 12},
        "rheobase_na": 0.5,
        "back_propagation": {"attenuation": 0.5},
        "calcium_spike": {
            "intact": {"plateau_ms": 20.0, "peak_after_mv": 10.0, "peak_mv": 40.0},
            "ca_blocked": {"plateau_ms": 0.5, "peak_mv": -20.0, "peak_after_mv": -45.0},
        },
        "nmda": {"events": {"1": {"nmda_per_event": 4.0}, "40": {"nmda_per_event": 10.0}}},
    }
    values = measurements_of(report)
    assert values["rate_at_1na_hz"] == 12.0 and values["nmda_supralinearity"] == 2.5
    assert values["ca_spike_peak_mv"] == 10.0 and values["ca_blocked_peak_mv"] == -20.0
    report["back_propagation"] = None
    assert judge("bap_attenuation", measurements_of(report)["bap_attenuation"]).verdict == "flag"


def _parameter_set(tmp_path: Path, name: str, edit) -> Path:
    params = copy.deepcopy(yaml.safe_load(HAY_5B.read_text()))
    params["name"] = name
    edit(params)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _without_calcium(params: dict) -> None:
    params["regions"]["apical"]["mechanisms"]["Ca_HVA"]["gbar"] = 0.0
    for rule in params["rules"]:
        if rule["mechanism"] == "Ca_LVAst":
            rule["scale"] = 0.0


def _little_leak(params: dict) -> None:
    for region in params["regions"].values():
        region["passive"]["g_pas"] *= 0.1


def _hot_dendrite(params: dict) -> None:
    params["regions"]["apical"]["mechanisms"]["NaTs2_t"]["gbar"] *= 20


def test_implausible_cells_raise_their_flags(tmp_path):
    """Three edited parameter sets on the built-in morphology, each measured where it fails."""
    from simulations import electrophysiology as ephys
    from simulations.cell import Cell

    no_calcium = Cell(None, _parameter_set(tmp_path, "no-calcium", _without_calcium))
    response = ephys.calcium_response(no_calcium)
    verdict = judge("ca_spike_ms", response.plateau_ms)
    assert verdict.verdict == "flag" and "no regenerative Ca spike" in verdict.reason

    leakless = Cell(None, _parameter_set(tmp_path, "little-leak", _little_leak))
    verdict = judge("input_resistance_mohm", ephys.input_resistance(leakless))
    assert verdict.verdict == "flag" and verdict.reason.startswith("above 100 MΩ")

    hot = Cell(None, _parameter_set(tmp_path, "hot-dendrite", _hot_dendrite))
    bap = ephys.back_propagation(hot)
    assert judge("bap_attenuation", bap.attenuation).verdict == "flag"
    blocked = ephys.calcium_response(hot, block_calcium=True)
    verdict = judge("ca_blocked_peak_mv", blocked.peak_mv)  # a Na spike passes for a Ca spike
    assert verdict.verdict == "flag" and "without Ca" in verdict.reason


def test_rheobase_brackets_and_bisects(default_cell):
    from simulations import electrophysiology as ephys

    known = {0.2: 0, 0.4: 7}
    found = ephys.rheobase(default_cell, known)
    assert 0.2 < found <= 0.4
    assert ephys.fires(default_cell, found) and not ephys.fires(default_cell, found - 0.02)


@pytest.mark.slow
def test_cell_check_judges_the_built_in_cell_plausible():
    result = CliRunner().invoke(cli, ["cell", "check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert [v["property"] for v in report["verdicts"]] == list(RANGES)
    assert [v for v in report["verdicts"] if v["verdict"] != "ok"] == []
    assert report["outside_plausible_range"] == 0
    assert 0.2 < report["rheobase_na"] < 0.4
    assert report["back_propagation"]["apical_distance_um"] == pytest.approx(400, abs=30)


@pytest.mark.slow
def test_cell_check_text_flags_a_hot_dendrite(tmp_path):
    parameters = _parameter_set(tmp_path, "hot-dendrite", _hot_dendrite)
    result = CliRunner().invoke(cli, ["cell", "check", "-p", str(parameters)])
    assert result.exit_code == 0, result.output  # a report, not a failure
    lines = result.output.splitlines()
    flagged = {line.split("  ")[2].strip() for line in lines if line.startswith("  flag")}
    assert {"back-propagation, apical/soma amplitude", "Ca channels blocked: nexus peak"} <= (
        flagged
    )
    assert lines[-1].startswith(f"{len(flagged)} of 10 properties outside the plausible range")
