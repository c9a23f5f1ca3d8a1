"""The input scale as the data stage decides it: given, kept by a store, known in advance for the
built-in cell, upgraded for stores made before it existed — run as users run it (the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import zarr

from elmpipe.dataset import Dataset
from elmpipe.dataset.schema import CALIBRATION_ATTR

ARGS = ["--split", "train", "--duration-ms", "200", "--cluster", "in-process", "--quiet"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_given_scale_is_recorded_and_a_store_never_grows_with_another(tmp_path):
    store = tmp_path / "data.zarr"
    made = cli("simulate", "-o", str(store), "-n", "1", "--input-scale", "1.3", *ARGS)
    assert made.returncode == 0, made.stderr
    dataset = Dataset(store)
    assert dataset.protocol["input_scale"] == 1.3
    assert dataset.calibration["method"] == "given"

    other = cli("simulate", "-o", str(store), "-n", "2", "--input-scale", "1.0", *ARGS)
    assert other.returncode == 2
    assert "input_scale" in other.stderr and "1.3" in other.stderr
    assert Dataset(store).split("train").complete_mask.sum() == 1  # nothing written

    # auto (the default) continues the store with its own scale, without calibrating
    grown = cli("simulate", "-o", str(store), "-n", "2", *ARGS)
    assert grown.returncode == 0, grown.stderr
    assert "calibrating" not in grown.stdout + grown.stderr
    assert Dataset(store).split("train").complete_mask.sum() == 2
    assert Dataset(store).protocol["input_scale"] == 1.3


def test_the_built_in_cell_needs_no_calibration_run(tmp_path):
    """Its calibration ships with elmpipe: the default command simulates at once, and the
    store records the known scale and where it came from."""
    from simulations.calibration import KNOWN_CALIBRATIONS

    store = tmp_path / "data.zarr"
    made = cli("simulate", "-o", str(store), "-n", "1", *ARGS)
    assert made.returncode == 0, made.stderr
    assert "probe" not in made.stdout + made.stderr
    record = Dataset(store).calibration
    assert record["method"] == "known"
    shipped = json.loads(KNOWN_CALIBRATIONS.read_text())
    assert record["input_scale"] in {entry["input_scale"] for entry in shipped.values()}
    assert Dataset(store).protocol["input_scale"] == record["input_scale"]


def test_a_store_from_before_the_calibration_grows_at_scale_1(tmp_path):
    store = tmp_path / "data.zarr"
    assert cli("simulate", "-o", str(store), "-n", "1", "--input-scale", "1", *ARGS).returncode == 0
    root = zarr.open_group(str(store), mode="r+")
    protocol = dict(root.attrs["protocol"])
    del protocol["input_scale"]  # as elmpipe wrote it before
    root.attrs["protocol"] = protocol
    del root.attrs[CALIBRATION_ATTR]

    grown = cli("simulate", "-o", str(store), "-n", "2", *ARGS)
    assert grown.returncode == 0, grown.stderr
    assert Dataset(store).protocol["input_scale"] == 1.0
    assert Dataset(store).split("train").complete_mask.sum() == 2


@pytest.mark.parametrize("value", ["0", "-2", "abc", "inf"])
def test_an_impossible_scale_is_refused_before_any_work(tmp_path, value):
    result = cli(
        "simulate", "-o", str(tmp_path / "d.zarr"), "-n", "1", "--input-scale", value, *ARGS
    )
    assert result.returncode == 2
    assert "input" in result.stderr.lower() and "scale" in result.stderr.lower()
    assert not (tmp_path / "d.zarr").exists()


def test_replays_take_no_scale(tmp_path):
    result = cli(
        "simulate", "-o", str(tmp_path / "r.zarr"), "-n", "1", "--replay", str(tmp_path),
        "--input-scale", "2", *ARGS,
    )  # fmt: skip
    assert result.returncode == 2 and "--input-scale" in result.stderr


def small_cell(directory) -> str:
    """A small procedurally generated pyramidal cell (≈ 2.6 mm of dendrite, a fifth of the Hay
    cell's): at NeuronIO's counts its synapses get 5× the Hay cell's input."""
    from simulations.default_morphology import Design, generate_swc

    design = Design(
        seed=11,
        basal_trees=3,
        basal_lengths=(20.0, 40.0, 70.0),
        trunk_length=350.0,
        oblique_at=(40.0, 150.0, 260.0),
        oblique_lengths=(40.0, 70.0),
        tuft_lengths=(90.0, 70.0, 110.0),
    )
    path = directory / "small.swc"
    path.write_text(generate_swc(design))
    return str(path)


def test_a_small_synthetic_cell_calibrates_into_range(tmp_path):
    """The command a user types, on a cell far from the Hay cell's size: the chosen scale's probe
    fires within the tolerance of the Hay cell's count, and the cache makes `simulate` reuse it."""
    morphology = small_cell(tmp_path)
    done = cli("cell", "calibrate", "-m", morphology, "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["converged"]
    assert abs(result["rounds"][-1]["spikes"] - result["target_spikes"]) <= (
        0.1 * result["target_spikes"]
    )
    assert result["input_scale"] < 0.5  # far less than NeuronIO's counts
    store = tmp_path / "small.zarr"
    made = cli("simulate", "-o", str(store), "-m", morphology, "-n", "1", *ARGS)
    assert made.returncode == 0, made.stderr
    assert Dataset(store).calibration["method"] == "cached"
    assert Dataset(store).protocol["input_scale"] == result["input_scale"]


def test_cell_calibrate_prints_the_scale_the_tries_and_the_cell_against_the_target():
    """What `elmpipe cell calibrate` prints, from a calibration made on a synthetic cell."""
    from pipelines.commands.cell import _format_calibration
    from simulations import calibration as cal

    options = cal.CalibrationSettings()

    def probe(scale, enough):
        return {
            k: round(cal.REFERENCE_DRAW_SPIKES[k] * (scale / 2.0) ** 3) for k in options.draws()
        }

    result = cal.calibrate(probe, cal.REFERENCE_DENDRITE_LENGTH_UM)
    text = _format_calibration("my_cell.swc", result)
    assert f"input scale       {result.input_scale:g} (within the tolerance" in text
    assert "tried             1 → " in text
    assert f"(target {options.target_spikes():g} ± 10%)" in text
    assert "rate (Hz)" in text and "share in 0-24" in text
    assert "the Hay cell over all draws: 1.19 Hz" in text
    assert "warning" not in text
