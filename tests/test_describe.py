"""dataset describe: statistics computed with dask.array agree with numpy on the same data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from elmpipe.dataset import SimulationRecord, prepare_split, write_block
from elmpipe.dataset.schema import CALIBRATION_ATTR, REFERENCE_OUTPUT
from elmpipe.dataset.statistics import _output, describe, output_warnings, split_warnings
from pipelines.cli import cli
from tests.test_store import N_SEG, make_spec

T = 1200


def records(n: int) -> list[SimulationRecord]:
    out = []
    for k in range(n):
        rng = np.random.default_rng(k)
        times = np.sort(rng.uniform(1, T - 1, 3 * k))
        spikes = np.zeros(T, bool)
        spikes[(times - 0.5).astype(int)] = True
        out.append(
            SimulationRecord(
                inputs=rng.random((T, 2 * N_SEG)) < [0.012] * N_SEG + [0.009] * N_SEG,
                soma_v=rng.normal(-67, 5, T).astype(np.float32),
                nexus_v=rng.normal(-60, 5, T).astype(np.float32),
                spikes=spikes,
                spike_times=times,
                interval_ms=50,
                smoothing_ms=60,
                attempts=1,
            )
        )
    return out


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "d.zarr"
    spec = make_spec(simulation={"duration_ms": float(T), "record_dendrites": False})
    prepare_split(path, spec, "train", 11)
    recs = records(10)
    for k, rec in enumerate(recs):
        write_block(path, "train", k, [rec])
    return path, recs  # simulation 10 stays incomplete and must not count


def test_statistics_match_numpy(store):
    path, recs = store
    report = describe(str(path))["splits"]["train"]
    assert report["simulations"] == 11 and report["complete"] == 10
    inputs = np.stack([r.inputs for r in recs])
    exc = inputs[:, :, :N_SEG].mean() * 1000
    inh = inputs[:, :, N_SEG:].mean() * 1000
    assert report["input_rate_hz"]["excitatory"] == pytest.approx(exc)
    assert report["input_rate_hz"]["inhibitory"] == pytest.approx(inh)
    counts = np.array([r.spike_times.size for r in recs])  # 0, 3, …, 27
    assert report["output"]["rate_hz"] == pytest.approx(counts.sum() / (10 * 1.2))
    assert report["output"]["fraction_sims_0_to_24_spikes"] == pytest.approx(np.mean(counts <= 24))
    assert sum(report["output"]["spikes_per_sim_histogram"].values()) == 10
    assert report["output"]["spikes_per_sim_histogram"]["0"] == 1
    soma = np.stack([r.soma_v for r in recs])[:, 500:].astype(float)
    assert report["soma_v_mv"]["after_ms"] == 500
    assert report["soma_v_mv"]["mean"] == pytest.approx(soma.mean(), abs=1e-6)
    assert report["soma_v_mv"]["sd"] == pytest.approx(soma.std(), abs=1e-6)
    assert report["soma_v_mv"]["p50"] == pytest.approx(np.percentile(soma, 50), abs=0.02)
    assert report["soma_v_mv"]["p95"] == pytest.approx(np.percentile(soma, 95), abs=0.02)
    clipped = np.minimum(soma, -55)
    assert report["soma_v_mv"]["clipped_at_-55"]["mean"] == pytest.approx(clipped.mean(), abs=1e-6)


def test_cli_describe(store):
    path, _ = store
    runner = CliRunner()
    text = runner.invoke(cli, ["dataset", "describe", str(path)])
    assert text.exit_code == 0, text.output
    assert "10/11 complete" in text.output and "Hz excitatory" in text.output
    as_json = runner.invoke(cli, ["dataset", "describe", str(path), "--json", "--split", "train"])
    assert json.loads(as_json.output)["splits"]["train"]["complete"] == 10
    missing = runner.invoke(cli, ["dataset", "describe", str(path), "--split", "valid"])
    assert missing.exit_code == 2 and "no split 'valid'" in missing.output


def test_describe_says_how_the_simulations_were_integrated():
    from elmpipe.dataset.statistics import simulated_with
    from simulations.simulator import AdaptiveStep, SimulationSettings

    def said(**settings):
        return simulated_with(SimulationSettings(**settings).resolved().model_dump(mode="json"))

    assert said(dt_ms=0.025) == "coreneuron at 0.025 ms"
    assert said() == "coreneuron at 0.0125 ms"  # the engine's own default (replays)
    assert said(adaptive=AdaptiveStep()) == (
        "coreneuron at 0.0125 ms around spikes, 0.05 ms between (adaptive)"
    )
    assert said(engine="neuron-cvode") == "neuron-cvode (atol 0.001)"
    assert simulated_with({"duration_ms": 6000.0}) is None  # imported NeuronIO data
    assert simulated_with({"engine": "coreneuron", "dt_ms": "x"}) == (
        "coreneuron at 'x' ms (damaged)"  # a damaged store is described, not a traceback
    )


# -- warnings: output far from the target ------------------------------------------------------


def counted_store(path, counts, duration=T, calibration=None):
    """A train split whose simulations have the given numbers of output spikes."""
    import zarr

    spec = make_spec(simulation={"duration_ms": float(duration), "record_dendrites": False})
    prepare_split(path, spec, "train", len(counts))
    rng = np.random.default_rng(0)
    for k, n in enumerate(counts):
        times = np.sort(rng.uniform(1, duration - 1, n))
        spikes = np.zeros(duration, bool)
        spikes[(times - 0.5).astype(int)] = True
        write_block(
            path,
            "train",
            k,
            [
                SimulationRecord(
                    inputs=rng.random((duration, 2 * N_SEG)) < 0.01,
                    soma_v=rng.normal(-67, 5, duration).astype(np.float32),
                    nexus_v=rng.normal(-60, 5, duration).astype(np.float32),
                    spikes=spikes,
                    spike_times=times,
                    interval_ms=50,
                    smoothing_ms=60,
                    attempts=1,
                )
            ],
        )
    if calibration is not None:
        zarr.open_group(str(path), mode="r+").attrs[CALIBRATION_ATTR] = calibration
    return path


TARGET = {"rate_hz": 1.0, "share_in_kept_range": 0.9, "duration_ms": 1200, "source": "t"}


def output_of(counts, duration_ms=1200):
    counts = np.asarray(counts)
    return {"intact": counts.size, "duration_ms": duration_ms, "output": _output(counts, 1.2)}


def test_no_warning_near_the_target():
    assert output_warnings(output_of([1, 2, 0, 1, 2, 1, 1, 0, 2, 2]), TARGET) == []


def test_a_silent_split_is_one_warning_with_its_consequence():
    (line,) = output_warnings(output_of([0] * 6), TARGET)
    assert line.startswith("no output spike in any of the 6 simulations")
    assert "under-drive" in line and "AUC is undefined" in line


def test_a_few_simulations_are_not_compared_with_the_target():
    """Three 6 s runs of a calibrated cell often hold one strong draw or none: their rate says
    nothing about the calibration (the demo's validation split)."""
    assert output_warnings(output_of([0, 0, 9]), TARGET) == []
    assert output_warnings(output_of([9] * 7), TARGET) == []
    assert output_warnings(output_of([9] * 8), TARGET) != []


@pytest.mark.parametrize(
    ("counts", "words"),
    [
        ([3, 3, 2, 3, 3, 3, 3, 2], "2.3x above the target 1.00 Hz (t): the inputs over-drive"),
        ([1, 0, 0, 0, 0, 0, 0, 0, 0, 1], "6.0x below the target 1.00 Hz (t): the inputs under"),
    ],
)
def test_a_rate_off_by_more_than_twice_is_named(counts, words):
    assert any(words in line for line in output_warnings(output_of(counts), TARGET))


def test_silent_simulations_are_counted():
    lines = output_warnings(output_of([0, 0, 0, 0, 3, 3, 0, 1]), TARGET)
    assert any(line.startswith("5 of 8 simulations (62%) have no output spike") for line in lines)
    # a target that records its silent share at the same duration lowers the bar (twice it)
    target = {**TARGET, "silent_share": 0.1}
    lines = output_warnings(output_of([0, 0, 0, 1, 1, 1, 2, 2, 1, 2]), target)
    assert any(line.startswith("3 of 10 simulations (30%) have no output") for line in lines)
    assert not any(
        "no output" in line
        for line in output_warnings(output_of([0, 0, 0, 1, 1, 1, 2, 2, 1, 2]), TARGET)
    )


def test_simulations_outside_the_kept_range_are_counted():
    counts = [30, 40, 1, 1, 1, 1, 1, 1, 1, 1]  # 20 % outside, twice the target's 10 %: fine
    assert not any("outside" in line for line in output_warnings(output_of(counts), TARGET))
    counts = [30, 40, 50, 1, 1, 1, 1, 1, 1, 1]
    lines = output_warnings(output_of(counts), {**TARGET, "rate_hz": 10.0})
    assert lines == [
        "3 of 10 simulations (30%) have more than 24 output spikes, outside the kept 0–24 "
        "(target: 10% outside, t): the NeuronIO evaluation drops them"
    ]


def test_describe_compares_with_the_calibration_target_or_the_reference(tmp_path):
    counts = [1, 2, 1, 2, 1, 2, 1, 2]  # 1.25 Hz over 1.2 s
    plain = describe(str(counted_store(tmp_path / "a.zarr", counts)))
    assert plain["target_output"]["rate_hz"] == REFERENCE_OUTPUT["rate_hz"]
    assert plain["target_output"]["source"].startswith("reference")
    assert plain["warnings"] == [] and plain["splits"]["train"]["warnings"] == []
    calibrated = describe(
        str(
            counted_store(
                tmp_path / "b.zarr", counts, calibration={"input_scale": 2, "target": TARGET_5}
            )
        )
    )
    assert calibrated["target_output"] == {**TARGET_5, "source": "calibration"}
    assert calibrated["warnings"] == [
        "[train] output rate 1.25 Hz is 4.0x below the target 5.00 Hz (calibration): the inputs "
        "under-drive the cell, so a surrogate learns a quieter regime than intended "
        "(`elmpipe cell calibrate`)"
    ]


TARGET_5 = {"rate_hz": 5.0, "spikes_per_simulation": 30, "share_in_kept_range": 0.5}


def test_cli_describe_warns_on_stderr_and_in_json(tmp_path):
    path = counted_store(tmp_path / "d.zarr", [0, 0, 0, 0, 0, 0])
    runner = CliRunner()
    text = runner.invoke(cli, ["dataset", "describe", str(path)])
    assert text.exit_code == 0, text.output
    assert "warning" not in text.stdout
    assert text.stderr.startswith("warning: [train] no output spike in any of the 6 simulations")
    as_json = runner.invoke(cli, ["dataset", "describe", str(path), "--json"])
    report = json.loads(as_json.stdout)
    assert as_json.stderr == "" and len(report["warnings"]) == 1
    assert report["splits"]["train"]["output"]["silent_simulations"] == 6


def test_simulate_warns_about_the_split_it_filled(tmp_path, monkeypatch):
    """The command's last word: the cheap check of the split (spike counts only)."""
    from pipelines import simulation_stage

    path = counted_store(tmp_path / "s.zarr", [40, 50, 60, 30] * 2)

    def fake_simulate(config, out, split, n_sims, **kwargs):
        return simulation_stage.SimulateSummary(path, split, 8, 0, 8, 0, 0.0)

    monkeypatch.setattr(simulation_stage, "simulate", fake_simulate)
    result = CliRunner().invoke(cli, ["simulate", "-o", str(path), "-n", "8"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    ratio = 37.5 / REFERENCE_OUTPUT["rate_hz"]  # no calibration target in this store
    assert warnings[0].startswith(f"warning: [train] output rate 37.50 Hz is {ratio:.1f}x above")
    assert "(reference: the Hay cell under the protocol)" in warnings[0]
    assert "8 of 8 simulations (100%) have more than 24 output spikes" in warnings[1]
    assert split_warnings(path, "train") == [w.removeprefix("warning: [train] ") for w in warnings]
