"""A damaged store, as ../shared/tools/mutate-store.py damages one: refused by name, or repaired.

The cases are the store rows of ../shared/docs/bad-input-cases.md. Two kinds:

- **Repairable** — bytes changed inside a chunk, a torn or missing chunk file, a folder where a
  chunk belongs, values that disagree with each other under valid checksums (an edited
  ``n_spikes``, NaN or inf in a voltage): every reader names the simulation and refuses it, and
  running the command that made the store again recomputes exactly that simulation, after which
  the store holds what an undamaged one holds, bit for bit.
- **Refused** — edited metadata (an array's shape or dtype, the root attributes, a split's
  attributes or its unreadable or missing zarr.json): simulating again cannot repair it, so every
  command refuses with exit 2, naming what is wrong, and changes nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from elmpipe.dataset.schema import SIM_ARRAYS
from tests.conftest import SHARED
from tests.test_bad_inputs import FAST_FIT, invoke, refused, snapshot
from tests.toy_dataset import make_toy_dataset

MUTATE = SHARED / "tools" / "mutate-store.py"
#: the simulated store: what `elmpipe simulate` makes (short runs of the built-in cell, scale 1)
SIMULATE = ["--input-scale", "1", "--duration-ms", "400", "--cluster", "in-process", "-q"]
N_SIMS = 8


def mutate(store: Path, how: str) -> None:
    if not MUTATE.is_file():
        pytest.skip(f"{MUTATE} is absent (../shared is not beside the checkout)")
    done = subprocess.run([sys.executable, MUTATE, store, how], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


class Finished:
    """What a command run in its own process left: exit code and output (as CliRunner's)."""

    def __init__(self, done: subprocess.CompletedProcess) -> None:
        self.exit_code = done.returncode
        self.output = done.stdout + done.stderr
        assert "Traceback" not in self.output, self.output


def elmpipe(*args) -> Finished:
    """A command in a fresh process, as a user runs it: a simulation must be alone in its process
    (NEURON holds one model per process, and the test process holds other cells)."""
    command = [sys.executable, "-m", "pipelines.cli", *map(str, args)]
    return Finished(subprocess.run(command, capture_output=True, text=True, timeout=600))


def simulate(store: Path, split: str) -> Finished:
    return elmpipe("simulate", "-o", store, "--split", split, "-n", N_SIMS, *SIMULATE)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("simulated") / "data.zarr"
    for split in ("train", "test"):
        made = simulate(store, split)
        assert made.exit_code == 0, made.output
    return store


@pytest.fixture(scope="module")
def toy_checkpoint(toy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fit")
    result = invoke(
        "fit", "-d", toy, "-o", out, "--train-split", "train", "--valid-split", "test", *FAST_FIT
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out / "best.pt"


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy_dataset(
        tmp_path_factory.mktemp("toy") / "toy.zarr", {"train": N_SIMS, "test": N_SIMS}
    )


def same_data(store: Path, clean: Path, split: str) -> None:
    for name in (n for n in SIM_ARRAYS if (clean / split / n).is_dir()):
        a = zarr.open_array(str(store / split / name), mode="r")[:]
        b = zarr.open_array(str(clean / split / name), mode="r")[:]
        np.testing.assert_array_equal(a, b, err_msg=name)


#: mutation → the simulation it damages in the test split, and what the readers say
REPAIRABLE = {
    "flip_soma_data": (5, "soma_v cannot be read"),
    "flip_soma_index": (6, "soma_v"),
    "flip_spike_times": (1, "spike_times cannot be read"),
    "flip_n_spikes": (3, "n_spikes cannot be read"),
    "flip_complete": (2, "completion mark cannot be read"),
    "flip_spikes": (3, "spikes"),  # in the data or, in short runs, the shard index
    "trunc_shard": (3, "truncated"),
    "del_inputs_chunk": (3, "missing"),
    "nspikes_99": (3, "n_spikes is 99"),
    "nspikes_neg": (3, "n_spikes is -5"),
    "nspikes_zero": (3, "n_spikes is 0"),
    "soma_nan": (3, "soma_v holds values that are not finite"),
    "soma_inf": (3, "soma_v holds values that are not finite"),
    "chunk_is_dir": (3, "soma_v"),
}


#: one of each kind of damage runs by default (a changed chunk, a folder in place of a chunk,
#: an unreadable mark, values that disagree); the others under -m slow
DEFAULT_REPAIRS = ("flip_soma_data", "chunk_is_dir", "flip_complete", "nspikes_99")
#: mutations that edit the test split past 400 ms or need output spikes: on the toy store instead
TOY_ONLY = ("nspikes_zero", "soma_nan", "soma_inf")


@pytest.mark.parametrize(
    "how",
    [
        how if how in DEFAULT_REPAIRS else pytest.param(how, marks=pytest.mark.slow)
        for how in sorted(REPAIRABLE)
        if how not in TOY_ONLY
    ],
)
def test_damage_is_named_and_repaired_by_simulating_again(simulated, tmp_path, how):
    sim, says = REPAIRABLE[how]
    store = tmp_path / "data.zarr"
    shutil.copytree(simulated, store)
    mutate(store, how)
    described = invoke("dataset", "describe", store, "--split", "test", "--json")
    assert described.exit_code == 0, described.output
    damaged = json.loads(described.output)["splits"]["test"]["damaged"]
    assert list(damaged) == [str(sim)] and says in damaged[str(sim)], damaged
    repaired = simulate(store, "test")
    assert repaired.exit_code == 0, repaired.output
    assert "1 found damaged and redone" in repaired.output, repaired.output
    same_data(store, simulated, "test")
    again = invoke("dataset", "describe", store, "--split", "test", "--json")
    assert json.loads(again.output)["splits"]["test"]["damaged"] == {}


@pytest.mark.parametrize(
    "how", ["nspikes_99", "nspikes_neg", "nspikes_zero", "soma_nan", "soma_inf", "flip_complete"]
)
def test_readers_refuse_damaged_data_naming_the_simulation(toy, toy_checkpoint, tmp_path, how):
    """The rows where an evaluation silently dropped a simulation (n_spikes 99 or −5), gave NaN
    metrics with exit 0 (soma NaN), or every command tracebacked (a flipped completion mark)."""
    sim = REPAIRABLE[how][0]
    store = tmp_path / "toy.zarr"
    shutil.copytree(toy, store)
    mutate(store, how)
    before = snapshot(store)
    out = tmp_path / "ev"
    refused(
        "evaluate", "-k", toy_checkpoint, "-d", store, "--split", "test", "-o", out,
        "--device", "cpu", says=f"simulation {sim}",
    )  # fmt: skip
    assert not (out / "metrics.json").exists()
    refused(
        "fit", "-d", store, "-o", tmp_path / "fit", "--train-split", "test",
        "--valid-split", "train", *FAST_FIT, says=f"simulation {sim}",
    )  # fmt: skip
    assert snapshot(store) == before


#: mutation → what every command's message names
REFUSED = {
    "shape_meta": "soma_v has 1000 along time",
    "dtype_meta": "soma_v is float64",
    "huge_shape": "soma_v has 1000000000000 along sim",
    "channel_sign_meta_shape": "inputs has 10 channels",
    "no_simulation_attr": "'simulation' is missing",
    "no_cell_attr": "'cell' is missing",
    "no_channels_attr": "'channels' is missing",
    "seed_str": "'seed' is 'zz'",
    "split_json_garbage": "cannot be read",
    "del_split_zarrjson": "has lost its metadata",
}


@pytest.mark.parametrize("how", sorted(REFUSED))
def test_edited_metadata_is_refused_by_every_command_and_nothing_changes(toy, tmp_path, how):
    store = tmp_path / "toy.zarr"
    shutil.copytree(toy, store)
    mutate(store, how)
    before = snapshot(store)
    says = REFUSED[how]
    refused("dataset", "describe", store, says=says)
    refused(
        "fit", "-d", store, "-o", tmp_path / "fit", "--train-split", "train",
        "--valid-split", "test", *FAST_FIT, says=says,
    )  # fmt: skip
    refused(
        "dataset", "export-neuronio", store, "--split", "test", "-o", tmp_path / "exp",
        "--cluster", "in-process", "-q", says=says,
    )  # fmt: skip
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("dtype_meta", "soma_v is float64"),
        ("spc_str", "sims_per_chunk is 'x'"),
        ("dt_str", "dt_ms: store has 'x'"),  # the store's step is read to grow it: named
    ],
)
def test_simulating_into_a_store_with_edited_metadata_is_refused(simulated, tmp_path, how, says):
    store = tmp_path / "data.zarr"
    shutil.copytree(simulated, store)
    mutate(store, how)
    before = snapshot(store)
    result = simulate(store, "test")
    assert result.exit_code == 2 and says in result.output, result.output
    assert snapshot(store) == before
