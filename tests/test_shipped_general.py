"""The cell-general model that ships, and a released NeuronIO ELM, on real simulations of a cell:
what a lab types — `elmpipe evaluate -k general`, `elmpipe fit --init general`, `elmpipe fit
--init released.pt --init-cell cell1.asc` — on a small dataset made by `elmpipe simulate`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from surrogate.checkpoints import load_any, read_checkpoint
from surrogate.drive import input_rate_hz
from surrogate.models.general_elm import GeneralELM
from surrogate.warm_start import GENERAL, resolve_source
from tests.conftest import HAY_MORPHOLOGY, SHARED

RELEASED = SHARED / "data" / "released-elm" / "num_memory_20" / "neuronio_best_model_state.pt"
FAST = [
    "--epochs",
    "1",
    "--batches-per-epoch",
    "2",
    "--batch-size",
    "2",
    "--loader-workers",
    "0",
    "-q",
]


def elmpipe(*args: object) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipelines.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The built-in cell, 2 s simulations: train 2, valid 1, test 3 (its input scale is known:
    no calibration)."""
    path = tmp_path_factory.mktemp("shipped") / "cell.zarr"
    for split, n in (("test", 3), ("train", 2), ("valid", 1)):
        made = elmpipe("simulate", "-o", path, "--split", split, "-n", n, "--duration-ms", 2000,
                       "--seed", 11, "--workers", 2, "-q")  # fmt: skip
        assert made.returncode == 0, made.stdout + made.stderr
    return path


def test_the_general_model_ships_and_loads():
    assert resolve_source("general") == GENERAL and GENERAL.is_file()
    model = load_any(GENERAL)
    assert isinstance(model, GeneralELM)
    assert (model.config.num_memory, model.config.num_branch) == (20, 45)
    assert GENERAL.stat().st_size < 100_000  # small: it ships in the wheel


def test_zero_shot_a_cell_with_the_shipped_general_model(store, tmp_path):
    """`elmpipe evaluate -k general -d STORE`: the model's ELM of the store's cell, its weights
    scaled by the store's drive, explains most of the soma voltage with no fit at all (a model
    without its synapse weights, or with the wrong cell's routing, explains none of it)."""
    out = tmp_path / "zero-shot"
    scored = elmpipe("evaluate", "-k", "general", "-d", store, "--split", "test", "-o", out)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["soma_explained_variance_pct"] > 50, metrics
    assert metrics["output_spikes"] > 0 and metrics["spike_auc"] > 0.8, metrics


def test_fit_starts_from_the_shipped_general_model(store, tmp_path):
    out = tmp_path / "fit"
    fitted = elmpipe("fit", "-d", store, "-o", out, "--init", "general", *FAST)
    assert fitted.returncode == 0, fitted.stdout + fitted.stderr
    assert "the cell-general model's ELM of this cell, every weight" in fitted.stdout
    warm = json.loads((out / "result.json").read_text())["provenance"]["warm_start"]
    assert warm["source"] == str(GENERAL)
    assert warm["input_rate_hz"] == pytest.approx(input_rate_hz(store, "train"), rel=1e-12)
    # the fine-tuning recipe was the default; what was given stands
    settings = read_checkpoint(out / "last.pt")["train_config"]
    assert (settings["epochs"], settings["batches_per_epoch"]) == (1, 2)
    assert settings["select_best"] == "loss"


@pytest.mark.skipif(not RELEASED.is_file(), reason=f"no released ELM at {RELEASED}")
def test_fit_starts_from_a_released_neuronio_elm_mapped_by_geometry(store, tmp_path):
    """A released state dict of the Hay cell (1 278 inputs) onto the built-in cell (760): each
    synapse's weight from the released synapse at the same place in the Hay cell."""
    out = tmp_path / "released"
    fitted = elmpipe("fit", "-d", store, "-o", out, "--init", RELEASED, "--init-cell",
                     HAY_MORPHOLOGY, "--init-synapses", "by-geometry", *FAST)  # fmt: skip
    assert fitted.returncode == 0, fitted.stdout + fitted.stderr
    assert "1278 → 760 inputs" in fitted.stdout and "mapped by geometry" in fitted.stdout
    warm = read_checkpoint(out / "best.pt")["provenance"]["warm_start"]
    assert warm["synapses"] == "by-geometry" and warm["source"] == str(RELEASED)
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["epoch"] == 0 and start["valid_soma_rmse_mv"] < 1.5, start
