"""`elmpipe run` end to end on a miniature configuration, and a run interrupted in its fit stage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from pipelines.config import ConfigError, load_config
from pipelines.run import RunConfig, next_split_size
from surrogate.checkpoints import read_checkpoint
from surrogate.drive import input_rate_hz
from surrogate.warm_start import GENERAL
from tests.conftest import HAY_MORPHOLOGY, SHARED

MINI = {
    "name": "mini",
    "data": {
        "simulation": {"duration_ms": 1000},
        "seed": 5,
        "splits": {"train": 2, "valid": 1, "test": 1},
        "min_test_spikes": 4,  # as the demo: the test split grows (here to at most 3)
        "max_test_simulations": 3,
    },
    "fit": {
        "model": {"family": "elm", "num_memory": 4, "num_branch": 10},
        "train": {"batches_per_epoch": 25, "epochs": 3, "batch_size": 2},
    },
    "cluster": {"kind": "local", "workers": 2},
}


def run_cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
    )


def write_config(path, **changes):
    config = {**MINI, **changes}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    config = write_config(folder / "mini.yaml", out=str(folder / "run"))
    result = run_cli("run", str(config), "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "run", result.stdout


def test_every_stage_leaves_its_artifacts(finished_run):
    out, stdout = finished_run
    for stage in ("simulate", "describe", "fit", "evaluate", "report"):
        assert f"── {stage}" in stdout
    describe = json.loads((out / "describe.json").read_text())
    assert set(describe["splits"]) == {"train", "valid", "test"}
    run_dir = out / "fit" / "elm-m4-b10"
    assert (run_dir / "result.json").exists() and (run_dir / "best.pt").exists()
    metrics = json.loads((out / "eval" / "elm-m4-b10" / "metrics.json").read_text())
    assert metrics["split"] == "test" and "soma_rmse_mv" in metrics
    # the test split grew toward min_test_spikes, and the evaluation scored what it counted
    grown = metrics["simulations"]
    assert f"scored output spikes in {grown} simulations" in stdout
    assert grown == 3 or metrics["output_spikes"] >= 4
    assert grown == 1 or "growing it to" in stdout
    page = (out / "report" / "index.html").read_text()
    assert "elm-m4-b10" in page and "soma RMSE" in page and "data:image/png;base64," in page
    assert (out / "report" / "training.png").exists()


def test_a_second_run_skips_every_finished_stage(finished_run, tmp_path):
    out, _ = finished_run
    config = write_config(tmp_path / "mini.yaml", out=str(out))
    stamp = (out / "fit" / "elm-m4-b10" / "last.pt").stat().st_mtime_ns
    again = run_cli("run", str(config), "-q")
    assert again.returncode == 0, again.stderr
    assert "0 simulated now" in again.stdout and "finished earlier" in again.stdout
    assert "evaluated earlier" in again.stdout
    assert (out / "fit" / "elm-m4-b10" / "last.pt").stat().st_mtime_ns == stamp
    # other training settings: refused before simulating, the finished model kept as it is
    train = {**MINI["fit"]["train"], "learning_rate": 0.01}
    changed = write_config(tmp_path / "lr.yaml", out=str(out), fit={**MINI["fit"], "train": train})
    refused = run_cli("run", str(changed), "-q")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "elm-m4-b10" in refused.stderr and "learning_rate" in refused.stderr
    assert "── simulate" not in refused.stdout
    assert (out / "fit" / "elm-m4-b10" / "last.pt").stat().st_mtime_ns == stamp


def test_interrupted_fit_resumes_to_the_same_model(finished_run, tmp_path):
    out, _ = finished_run
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(out / "data.zarr", second / "data.zarr")  # same data, no new simulation
    config = write_config(tmp_path / "mini.yaml", out=str(second))
    run = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", str(config), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    last = second / "fit" / "elm-m4-b10" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not last.exists() and run.poll() is None:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # killed during the fit stage, after its first epoch
    run.wait()
    assert last.exists() and not (second / "fit" / "elm-m4-b10" / "result.json").exists()
    resumed = run_cli("run", str(config), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    a = read_checkpoint(out / "fit" / "elm-m4-b10" / "last.pt")["state_dict"]
    b = read_checkpoint(last)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (second / "report" / "index.html").exists()


def test_the_demo_fit_warm_starts_from_the_shipped_surrogate(finished_run, tmp_path):
    """configs/demo.yaml's fit section as shipped (init: builtin), on the mini run's data with
    fewer batches: a same-layout warm start, recorded in result.json and shown in the report."""
    from pathlib import Path

    demo = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs/demo.yaml").read_text())
    assert demo["fit"]["train"]["init"] == "builtin"
    fit_section = {**demo["fit"], "train": {**demo["fit"]["train"], "epochs": 1}}
    fit_section["train"].update(batches_per_epoch=5, batch_size=2)
    out, _ = finished_run
    shutil.copytree(out / "data.zarr", tmp_path / "run" / "data.zarr")
    config = write_config(tmp_path / "demo-fit.yaml", out=str(tmp_path / "run"), fit=fit_section)
    result = run_cli("run", str(config), "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    done = json.loads((tmp_path / "run" / "fit" / "elm-m20-b45" / "result.json").read_text())
    assert done["provenance"]["warm_start"]["layout"] == "same"
    assert "builtin-cell-elm-m20-b45.pt" in done["provenance"]["warm_start"]["source"]
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "warm start from" in page and "every weight" in page
    # the starting point was validated first, and the report says when it stayed the best
    log = (tmp_path / "run" / "fit" / "elm-m20-b45" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [0, 1]
    kept_start = done["best"]["epoch"] == 0
    assert ("the warm start itself (epoch 0)" in page) == kept_start


#: a fit of a few batches on the mini run's data
FAST = ["--epochs", "1", "--batches-per-epoch", "2", "--batch-size", "2", "--loader-workers", "0"]
FAST += ["-q"]
RELEASED = SHARED / "data" / "released-elm" / "num_memory_20" / "neuronio_best_model_state.pt"


def test_zero_shot_a_cell_with_the_shipped_general_model(finished_run, tmp_path):
    """`elmpipe evaluate -k general -d STORE`: the model's ELM of the store's cell, its weights
    scaled by the store's drive, explains most of the soma voltage with no fit at all (a model
    without its synapse weights, or with the wrong cell's routing, explains none of it)."""
    store = finished_run[0] / "data.zarr"
    out = tmp_path / "zero-shot"
    scored = run_cli("evaluate", "-k", "general", "-d", store, "--split", "test", "-o", out)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["soma_explained_variance_pct"] > 50, metrics
    # (the mini run's scored half-seconds may hold no output spike: docs/how-much-data.md
    # measures the zero-shot spike AUC on 32 × 6 s of cells the model never saw)
    assert metrics["output_spikes"] == 0 or metrics["spike_auc"] > 0.8, metrics


def test_fit_starts_from_the_shipped_general_model(finished_run, tmp_path):
    store = finished_run[0] / "data.zarr"
    out = tmp_path / "fit"
    fitted = run_cli("fit", "-d", store, "-o", out, "--init", "general", *FAST)
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
def test_fit_starts_from_a_released_neuronio_elm_mapped_by_geometry(finished_run, tmp_path):
    """A released state dict of the Hay cell (1 278 inputs) onto the built-in cell (760): each
    synapse's weight from the released synapse at the same place in the Hay cell."""
    store = finished_run[0] / "data.zarr"
    out = tmp_path / "released"
    fitted = run_cli("fit", "-d", store, "-o", out, "--init", RELEASED, "--init-cell",
                     HAY_MORPHOLOGY, "--init-synapses", "by-geometry", *FAST)  # fmt: skip
    assert fitted.returncode == 0, fitted.stdout + fitted.stderr
    assert "1278 → 760 inputs" in fitted.stdout and "mapped by geometry" in fitted.stdout
    warm = read_checkpoint(out / "best.pt")["provenance"]["warm_start"]
    assert warm["synapses"] == "by-geometry" and warm["source"] == str(RELEASED)
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["epoch"] == 0 and start["valid_soma_rmse_mv"] < 1.5, start


RELEASED_BEST = RELEASED.parents[1] / "best_elm_neuron" / "neuronio_best_model_state.pt"


@pytest.mark.skipif(not RELEASED_BEST.is_file(), reason=f"no released ELM at {RELEASED_BEST}")
def test_a_warm_start_given_no_model_options_fine_tunes_the_model_it_names(finished_run, tmp_path):
    """`--init` of the released best ELM (d_m 100, SiLU) alone: the fit takes its architecture
    (the default d_m 20 ReLU could not take its weights); a model option given is kept, and a
    start that cannot take it is refused naming the difference."""
    store = finished_run[0] / "data.zarr"
    out = tmp_path / "best"
    fitted = run_cli("fit", "-d", store, "-o", out, "--init", RELEASED_BEST, "--init-cell",
                     HAY_MORPHOLOGY, "--init-synapses", "by-geometry", *FAST)  # fmt: skip
    assert fitted.returncode == 0, fitted.stdout + fitted.stderr
    model = read_checkpoint(out / "best.pt")["model"]
    assert (model["num_memory"], model["activation"], model["mlp_hidden"]) == (100, "silu", 200)
    assert (model["num_input"], model["num_branch"]) == (760, 45)
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["epoch"] == 0 and start["valid_soma_rmse_mv"] < 1.5, start
    refused = run_cli("fit", "-d", store, "-o", tmp_path / "d20", "--init", RELEASED_BEST,
                      "--init-cell", HAY_MORPHOLOGY, "--num-memory", "20", *FAST)  # fmt: skip
    assert refused.returncode != 0 and "num_memory 100 vs 20" in refused.stderr, refused.stderr


def test_shipped_study_configs_plan_against_their_cells():
    """The pretraining and demo configs pass the plan stage (cell built, sizes and init checked)."""
    from pathlib import Path

    from pipelines.run import plan_run

    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("demo.yaml", "pretrain-builtin.yaml", "pretrain-builtin-m100.yaml"):
        plan_run(load_config(configs / name, RunConfig))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fit": {"model": {"family": "elm"}, "sweep": {"models": ["elm"]}}}, "exactly one"),
        ({"data": {"splits": {"train": 2}}}, "splits needs test, valid"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"data": {"simulation": {"duration_ms": "long"}}}, "data.simulation.duration_ms"),
    ],
)
def test_invalid_run_configs_name_key_and_file(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**MINI, **change}))
    with pytest.raises(ConfigError) as info:
        load_config(path, RunConfig)
    assert message in str(info.value) and str(path) in str(info.value)


def test_shipped_run_configs_are_valid():
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in (
        "demo.yaml",
        "neuronio.yaml",
        "hpc-slurm.yaml",
        "pretrain-builtin.yaml",
        "hay-study.yaml",
    ):
        load_config(configs / name, RunConfig)


def test_command_line_overrides_keep_a_sweep_config_valid():
    """`elmpipe run CONFIG -o/-m` on every shipped config, sweeps included (a sweep's training
    settings are filled in from fit.train and must not be read back as fit.sweep.train)."""
    from pathlib import Path

    from pipelines.config import with_overrides

    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("demo.yaml", "neuronio.yaml", "hpc-slurm.yaml", "hay-study.yaml"):
        config = load_config(configs / name, RunConfig)
        moved = with_overrides(config, {"out": "elsewhere", "cell.morphology": "my_cell.swc"})
        assert moved.out == "elsewhere" and str(moved.cell.morphology) == "my_cell.swc"
        assert moved.model_copy(update={"out": config.out, "cell": config.cell}) == config
        assert with_overrides(config, {"out": None, "cell.morphology": None}) == config


def chromium() -> str | None:
    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


@pytest.mark.skipif(chromium() is None, reason="no headless Chromium on this machine")
def test_report_renders_in_a_headless_browser(finished_run, tmp_path):
    """Screenshot the report and check that its figures are really drawn, not broken images."""
    import numpy as np
    from matplotlib.image import imread

    out, _ = finished_run
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            "--window-size=1200,2600",
            f"--screenshot={shot}",
            (out / "report" / "index.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    pixels = imread(shot)[..., :3]
    blue = np.all(np.abs(pixels - np.array([31, 119, 180]) / 255) < 0.08, axis=-1)  # matplotlib C0
    orange = np.all(np.abs(pixels - np.array([255, 127, 14]) / 255) < 0.08, axis=-1)  # C1
    assert pixels.std() > 0.05  # not a blank page
    assert blue.sum() > 500 and orange.sum() > 500  # the ROC curve and the predicted traces


def test_the_test_split_grows_toward_its_spikes_at_most_doubling():
    assert next_split_size(spikes=35, n_sims=10, wanted=60, cap=40) == 18  # the rate so far says 18
    assert next_split_size(spikes=18, n_sims=10, wanted=60, cap=40) == 20  # not 34: at most twice
    assert next_split_size(spikes=0, n_sims=10, wanted=60, cap=40) == 20  # silent so far
    assert next_split_size(spikes=59, n_sims=10, wanted=60, cap=40) == 11  # one more at least
    assert next_split_size(spikes=1, n_sims=30, wanted=60, cap=40) == 40  # never past the cap


def test_the_demo_asks_its_validation_and_test_splits_for_spikes():
    """configs/demo.yaml: a spike per validation simulation on average (a silent validation
    split chose the kept epoch on Hay's cell3), 60 scored test spikes."""
    from pipelines.run import spike_goals

    demo = load_config("configs/demo.yaml", RunConfig)
    valid, test = spike_goals(demo)
    assert (valid.split, valid.wanted(3), valid.wanted(5), valid.cap) == ("valid", 3, 5, 12)
    assert (test.split, test.wanted(10), test.wanted(40), test.cap) == ("test", 60, 60, 40)
    assert spike_goals(load_config("configs/pretrain-builtin.yaml", RunConfig)) == []
