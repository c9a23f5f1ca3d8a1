"""Rows of ../shared/docs/bad-input-cases.md (the hostile run; ids in the names), run as a user
would: each ends with exit 2 (bad input) or 3 (environment), a message naming the problem, no
traceback, and nothing already written changed. Damaged stores: tests/test_store_damage.py;
NeuronIO pickles: tests/test_neuronio.py; morphologies: tests/test_morphology_formats.py."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch

from elmpipe.errors import EXIT_ENVIRONMENT
from pipelines.cli import _disk_full
from tests.test_bad_inputs import FAST_FIT, FAST_TRAINING, invoke, refused, snapshot
from tests.toy_dataset import make_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "toy.zarr", {"train": 8, "valid": 3})


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    result = invoke("fit", "-d", toy, "-o", out, *FAST_FIT)
    assert result.exit_code == 0, result.output
    return out / "best.pt"


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--lr", "inf", "learning_rate"),  # f05
        ("--seed", "-5", "seed"),  # f25
        ("--num-memory", "1000000", "num_memory"),  # f23
        ("--burn-in", "1000000000", "burn_in_ms"),  # f13
    ],
)
def test_f_impossible_training_options_are_refused_before_training(
    toy, tmp_path, option, value, says
):
    out = tmp_path / "fit"
    refused("fit", "-d", toy, "-o", out, *FAST_TRAINING, option, value, says=says)
    assert not (out / "best.pt").exists()


def test_f24_an_export_to_a_device_is_refused_before_training(toy, tmp_path):
    out = tmp_path / "fit"
    refused("fit", "-d", toy, "-o", out, *FAST_FIT, "--export", "/dev/full", says="/dev/full")
    assert not (out / "best.pt").exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["cell", "step", "-a", "nan", "--duration", "10", "--delay", "1"],
            "'nan' is not a number",
        ),
        (["cell", "step", "-a", "0.5", "--duration", "10", "--celsius", "-300"], "--celsius"),
        (["simulate", "-o", "{tmp}/a.zarr", "-n", "1", "--duration-ms", "inf"], "duration_ms"),
    ],
)
def test_p09_p11_a09_non_numbers_and_impossible_physics_are_refused(tmp_path, args, says):
    refused(*[a.format(tmp=tmp_path) for a in args], says=says)
    assert not (tmp_path / "a.zarr").exists()


def test_cfg_an_empty_config_and_a_key_given_twice_are_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    refused("run", empty, says="is empty")
    twice = tmp_path / "twice.yaml"
    twice.write_text(f"name: a\nout: {tmp_path}/run\nname: b\n")
    refused("run", twice, says="key 'name' is given twice (lines 1 and 3)")
    hot = tmp_path / "hot.yaml"
    hot.write_text(f"out: {tmp_path}/run\ndata:\n  simulation:\n    celsius: -300\n")
    refused("run", hot, says="celsius")
    assert not (tmp_path / "run").exists()


def test_d02_d03_compare_refuses_a_nan_tolerance_and_unrelated_stores(toy, tmp_path):
    refused("dataset", "compare", toy, toy, "--tolerance-ms", "nan", says="not a number")
    other = make_toy_dataset(tmp_path / "other.zarr", {"train": 8, "valid": 3}, seed=9)
    refused("dataset", "compare", toy, other, says="not replays of each other")


def crafted_checkpoint(trained, tmp_path, how: str):
    payload = torch.load(trained, weights_only=True)
    state = OrderedDict(payload["state_dict"])
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    if how == "nan":
        state[name] = state[name].clone().fill_(float("nan"))
    else:  # finite, but far beyond float32's range once multiplied
        state = OrderedDict((k, v * 1e30 if v.is_floating_point() else v) for k, v in state.items())
    payload["state_dict"] = state
    path = tmp_path / f"{how}.pt"
    torch.save(payload, path)
    return path, name


def test_k08_k19_checkpoints_with_unusable_weights_are_refused(toy, trained, tmp_path):
    nan, name = crafted_checkpoint(trained, tmp_path, "nan")
    ev = tmp_path / "ev"
    refused("evaluate", "-k", nan, "-d", toy, "--split", "valid", "-o", ev, says=name)
    refused("fit", "-d", toy, "-o", tmp_path / "warm", "--init", nan, *FAST_FIT, says="not finite")
    huge, _ = crafted_checkpoint(trained, tmp_path, "huge")
    refused("evaluate", "-k", huge, "-d", toy, "--split", "valid", "-o", ev, says="not finite")
    assert not (ev / "metrics.json").exists()


def test_dsp_a_dataset_path_that_is_a_symlink_loop_is_named(tmp_path):
    loop = tmp_path / "loop.zarr"
    os.symlink(loop, loop)
    refused("simulate", "-o", loop, "-n", "1", "--duration-ms", "100", says="leads nowhere")


def test_mc_an_unusable_cache_folder_is_an_environment_error(tmp_path):
    blocker = tmp_path / "FILE"
    blocker.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "cell", "info", "--no-sim"],
        capture_output=True,
        text=True,
        env={**os.environ, "ELMPIPE_CACHE_DIR": str(blocker)},
    )
    assert done.returncode == EXIT_ENVIRONMENT, done.stderr
    assert "cache folder" in done.stderr and "it is a file" in done.stderr
    assert "Traceback" not in done.stderr


def test_a21_a_batch_cluster_that_cannot_submit_is_named_at_once(tmp_path):
    """Without SLURM's commands (or its controller) dask-jobqueue printed errors per job and
    waited for workers forever."""
    bare = tmp_path / "bin"
    bare.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "simulate", "-o", tmp_path / "a.zarr", "-n", "1",
         "--duration-ms", "100", "--input-scale", "1", "--cluster", "slurm", "-q"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PATH": f"{bare}:{os.path.dirname(sys.executable)}"},
    )  # fmt: skip
    assert done.returncode == EXIT_ENVIRONMENT, done.stderr
    assert "sbatch" in done.stderr and "Traceback" not in done.stderr


def test_tf_a_full_disk_is_named_wherever_the_writer_reports_it():
    """A full disk reaches the command line as OSError (zarr), RuntimeError (torch's writer) or
    HDF5's own error text; each is recognised, so the message says what happened."""
    assert _disk_full(OSError(errno.ENOSPC, "No space left on device", "/x/data.zarr"))
    wrapped = RuntimeError("writing failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded", "/x/last.pt")
    assert _disk_full(wrapped) == "/x/last.pt"
    assert _disk_full(OSError("errno = 28, error message = 'No space left on device'"))
    assert not _disk_full(OSError(errno.EACCES, "Permission denied", "/x"))


def test_describe_says_how_many_complete_simulations_are_damaged(toy, tmp_path):
    import shutil

    store = tmp_path / "toy.zarr"
    shutil.copytree(toy, store)
    (store / "valid" / "soma_v" / "c" / "1" / "0").unlink()
    before = snapshot(store)
    result = invoke("dataset", "describe", store, "--split", "valid")
    assert result.exit_code == 0, result.output
    assert "[valid] 3/3 complete (1 of them damaged, described without them)" in result.output
    assert (
        json.loads(invoke("dataset", "describe", store, "--json").output)["splits"]["valid"][
            "intact"
        ]
        == 2
    )
    assert snapshot(store) == before
