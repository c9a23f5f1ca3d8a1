"""The simulate stage end to end, in real processes: determinism, resume, killed workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from elmpipe.dataset import Dataset
from elmpipe.dataset.schema import DATA_ARRAYS
from simulations.mechanisms import mechanisms_sha256

ARGS = ["--split", "train", "--duration-ms", "200", "--seed", "11", "--quiet"]
N = 4
IN_PROCESS = ("--cluster", "in-process")


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def assert_same_simulations(a, b, split="train"):
    da, db = Dataset(a), Dataset(b)
    assert da.split(split).complete_mask.all() and db.split(split).complete_mask.all()
    for name in DATA_ARRAYS:
        x, y = da.split(split).group[name][:], db.split(split).group[name][:]
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


def completed(path) -> int:
    try:
        return int(Dataset(path).split("train").complete_mask.sum())
    except Exception:
        return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The simulations computed one after another in a single process."""
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    result = cli("simulate", "-o", str(path), "-n", str(N), *ARGS, "--cluster", "in-process")
    assert result.returncode == 0, result.stderr
    return path


def test_reference_is_plausible(reference):
    data = Dataset(reference)
    sim = data.split("train").simulation(0)
    assert sim["inputs"].shape == (200, 760)
    assert -80 < float(np.mean(sim["soma_v"][100:])) < -50
    assert data.attrs["seed"] == 11
    assert data.attrs["cell"]["segments"]["dendritic"] == 380
    assert data.attrs["protocol"]["kind"] == "neuronio"
    assert data.attrs["cell"]["mechanisms_sha256"] == mechanisms_sha256()  # what computed it


def test_new_data_take_the_cheap_step_and_a_store_keeps_its_own(reference, tmp_path):
    """New generated inputs run at 0.025 ms (surrogates train as well on them, for half the
    simulation); a store made at another step grows at that step when none is given."""
    assert Dataset(reference).attrs["simulation"]["dt_ms"] == 0.025
    exact = tmp_path / "exact.zarr"
    made = cli("simulate", "-o", str(exact), "-n", "1", *ARGS, "--dt-ms", "0.0125", *IN_PROCESS)
    assert made.returncode == 0, made.stderr
    grown = cli("simulate", "-o", str(exact), "-n", "2", *ARGS, *IN_PROCESS)
    assert grown.returncode == 0, grown.stderr
    assert "1 run now, 1 already done" in grown.stdout
    assert Dataset(exact).attrs["simulation"]["dt_ms"] == 0.0125
    described = cli("dataset", "describe", str(exact))
    assert "coreneuron at 0.0125 ms" in described.stdout, described.stdout
    fine, coarse = Dataset(exact).split("train"), Dataset(reference).split("train")
    for k in range(2):  # the same inputs, each run at its store's step
        assert np.array_equal(fine.simulation(k)["inputs"], coarse.simulation(k)["inputs"])
        assert not np.array_equal(fine.simulation(k)["soma_v"], coarse.simulation(k)["soma_v"])


def test_the_step_left_open_follows_the_inputs_origin(reference):
    """Replays of our data take the source's step (they reproduce it), the adaptive step's fine
    windows and other engines their own default; a step given is kept."""
    from pipelines.config import SimulateConfig
    from pipelines.simulation_stage import prepared
    from simulations.inputs import ReplayProtocol
    from simulations.simulator import AdaptiveStep, SimulationSettings

    def step(settings=None, protocol=None, store=None):
        config = SimulateConfig(simulation=settings or SimulationSettings())
        if protocol is not None:
            config = config.model_copy(update={"protocol": protocol})
        return prepared(config, store).simulation.dt_ms

    assert step() == 0.025
    assert step(SimulationSettings(adaptive=AdaptiveStep())) == 0.0125
    assert step(SimulationSettings(engine="neuron-fixed")) == 0.025
    assert step(SimulationSettings(dt_ms=0.0125)) == 0.0125
    assert step(protocol=ReplayProtocol(source=str(reference), split="train")) == 0.025
    assert step(SimulationSettings(adaptive=AdaptiveStep()), store=reference) == 0.025


def test_same_bytes_with_two_workers_in_another_order(reference, tmp_path):
    path = tmp_path / "two.zarr"
    # first the last two simulations' worth of a bigger request, then the rest, on 2 workers
    first = cli("simulate", "-o", str(path), "-n", "1", *ARGS, "--workers", "2")
    assert first.returncode == 0, first.stderr
    second = cli("simulate", "-o", str(path), "-n", str(N), *ARGS, "--workers", "2")
    assert second.returncode == 0, second.stderr
    assert "3 run now, 1 already done" in second.stdout
    assert_same_simulations(reference, path)


def test_rerun_does_nothing_more(reference, tmp_path):
    path = tmp_path / "copy.zarr"
    import shutil

    shutil.copytree(reference, path)
    stamp = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    again = cli("simulate", "-o", str(path), "-n", str(N), *ARGS, "--cluster", "in-process")
    assert again.returncode == 0, again.stderr
    assert f"0 run now, {N} already done" in again.stdout
    assert stamp == {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_damaged_simulations_are_reported_and_recomputed(reference, tmp_path, how):
    """A missing or torn chunk file never passes as data: describe names the simulation, and
    the same simulate command recomputes it — byte-identical, the intact ones untouched."""
    import shutil

    path = tmp_path / "damaged.zarr"
    shutil.copytree(reference, path)
    shard = path / "train" / "soma_v" / "c" / "2" / "0"
    if how == "deleted":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:-10])
    described = cli("dataset", "describe", str(path))
    assert described.returncode == 0, described.stderr
    assert "DAMAGED simulation 2: soma_v" in described.stdout
    untouched = path / "train" / "soma_v" / "c" / "1" / "0"
    stamp = untouched.stat().st_mtime_ns
    again = cli("simulate", "-o", str(path), "-n", str(N), *ARGS, "--cluster", "in-process")
    assert again.returncode == 0, again.stderr
    assert "1 run now, 3 already done; 1 found damaged and redone" in again.stdout
    assert untouched.stat().st_mtime_ns == stamp
    assert_same_simulations(reference, path)


def worker_processes(pid: int) -> list[psutil.Process]:
    """The dask worker processes under ``pid``; a child that ends while it is looked at (its
    /proc entry gone between listing and reading) is no worker any more."""
    workers = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess, FileNotFoundError):
            continue
        if "spawn_main" in cmdline and "resource_tracker import" not in cmdline:
            workers.append(child)
    return workers


def test_killed_worker_loses_nothing(reference, tmp_path):
    path = tmp_path / "killed.zarr"
    run = start_cli("simulate", "-o", str(path), "-n", str(N), *ARGS, "--workers", "2")
    try:
        deadline = time.time() + 120
        while time.time() < deadline and completed(path) < 1:
            time.sleep(0.2)
        workers = worker_processes(run.pid)
        assert workers, "no worker processes found"
        workers[0].kill()  # SIGKILL a worker in the middle of the run
        _stdout, stderr = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, stderr
    assert_same_simulations(reference, path)


def test_killed_run_resumes(reference, tmp_path):
    path = tmp_path / "resumed.zarr"
    run = start_cli("simulate", "-o", str(path), "-n", str(N), *ARGS, "--cluster", "in-process")
    deadline = time.time() + 120
    while time.time() < deadline and completed(path) < 2:
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)  # the whole run, mid-simulation
    run.wait()
    done = completed(path)
    assert 2 <= done < N
    again = cli("simulate", "-o", str(path), "-n", str(N), *ARGS, "--cluster", "in-process")
    assert again.returncode == 0, again.stderr
    assert f"{N - done} run now, {done} already done" in again.stdout
    assert_same_simulations(reference, path)


def test_bad_input_fails_before_simulating(reference, tmp_path):
    other_seed = cli(
        "simulate",
        "-o",
        str(reference),
        "-n",
        str(N),
        "--split",
        "train",
        "--duration-ms",
        "200",
        "--seed",
        "12",
        "--cluster",
        "in-process",
    )
    assert other_seed.returncode == 2
    assert "seed" in other_seed.stderr
    # a store never grows at another step than its own; a step that does not divide 1 ms: named
    other_step = cli("simulate", "-o", str(reference), "-n", str(N), *ARGS, "--dt-ms", "0.0125")
    assert other_step.returncode == 2
    assert "dt_ms: store has 0.025, requested 0.0125" in other_step.stderr
    odd_step = cli("simulate", "-o", str(tmp_path / "x.zarr"), "-n", "1", "--dt-ms", "0.03")
    assert odd_step.returncode == 2 and "dt_ms 0.03 must divide 1 ms" in odd_step.stderr
    assert cli("simulate", "-o", str(tmp_path / "x.zarr"), "-n", "0").returncode == 2
    bad_split = cli("simulate", "-o", str(tmp_path / "x.zarr"), "-n", "1", "--split", "a/b")
    assert bad_split.returncode == 2 and "split" in bad_split.stderr
    missing = cli(
        "simulate", "-o", str(tmp_path / "x.zarr"), "-n", "1", "-m", str(tmp_path / "no.swc")
    )
    assert missing.returncode == 2 and "not found" in missing.stderr
    config = tmp_path / "bad.yaml"
    config.write_text("simulation:\n  duration_ms: -5\n  colour: red\n")
    bad_config = cli("simulate", "-o", str(tmp_path / "x.zarr"), "-n", "1", "--config", str(config))
    assert bad_config.returncode == 2
    assert (
        "simulation.duration_ms" in bad_config.stderr
        and "simulation.colour: unknown key" in bad_config.stderr
    )
    assert str(config) in bad_config.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_a_run_config_grows_its_store_with_the_runs_settings(tmp_path):
    """`elmpipe simulate -c run.yaml` takes the run's data stage, so `elmpipe run` continues."""
    config = tmp_path / "run.yaml"
    config.write_text(
        "name: grow\nout: unused\n"
        "data:\n  seed: 7\n  simulation: {duration_ms: 100}\n"
        "  splits: {train: 1, valid: 1, test: 1}\n"
        "fit: {model: {family: elm, num_memory: 2}}\n"
    )
    path = tmp_path / "grown.zarr"
    args = ["simulate", "-o", str(path), "-n", "1", "-c", str(config), "--cluster", "in-process"]
    result = cli(*args, "--quiet")
    assert result.returncode == 0, result.stderr
    stored = Dataset(path).attrs
    assert stored["seed"] == 7 and stored["simulation"]["duration_ms"] == 100
    config.write_text(config.read_text() + "evaluate: {splt: test}\n")
    bad = cli(*args)
    assert bad.returncode == 2 and "evaluate.splt: unknown key" in bad.stderr


def test_replay_reproduces_the_source(reference, tmp_path):
    path = tmp_path / "replay.zarr"
    result = cli(
        "simulate",
        "-o",
        str(path),
        "-n",
        "2",
        "--split",
        "train",
        "--duration-ms",
        "200",
        "--replay",
        str(reference),
        "--replay-split",
        "train",
        "--cluster",
        "in-process",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    source, replay = Dataset(reference), Dataset(path)
    for k in range(2):
        a, b = source.split("train").simulation(k), replay.split("train").simulation(k)
        assert np.array_equal(a["inputs"], b["inputs"])
        assert np.array_equal(a["soma_v"], b["soma_v"])
        assert np.array_equal(a["spike_times"], b["spike_times"])
    assert replay.attrs["protocol"]["kind"] == "replay"


def test_rejection_on_output_spikes_regenerates_deterministically(tmp_path):
    """Keep no silent simulation: 100 ms without output spikes are redrawn up to max_attempts."""
    config = tmp_path / "reject.yaml"
    config.write_text(
        "protocol:\n  kind: neuronio\n  rejection:\n"
        "    keep_probability_zero_spikes: 0.0\n    max_attempts: 3\n"
    )
    runs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.zarr"
        result = cli(
            "simulate",
            "-o",
            str(path),
            "-n",
            "2",
            "--split",
            "train",
            "--duration-ms",
            "100",
            "-c",
            str(config),
            "--cluster",
            "in-process",
            "--quiet",
        )
        assert result.returncode == 0, result.stderr
        runs.append(Dataset(path))
    for k in range(2):
        sim = runs[0].split("train").simulation(k)
        # a silent draw is rejected until the last attempt, which is kept whatever it is
        assert sim["attempts"] == 3 if sim["n_spikes"] == 0 else sim["attempts"] >= 1
        assert sim["attempts"] > 1 or sim["n_spikes"] > 0
        assert np.array_equal(sim["inputs"], runs[1].split("train").simulation(k)["inputs"])
    assert runs[0].attrs["protocol"]["rejection"]["keep_probability_zero_spikes"] == 0.0


def test_sigterm_shuts_local_workers_down(tmp_path):
    """`kill` of a run (as a batch system does) must not leave worker processes behind."""
    path = tmp_path / "term.zarr"
    run = start_cli("simulate", "-o", str(path), "-n", "4", *ARGS, "--workers", "2")
    try:
        deadline = time.time() + 120
        workers: list[psutil.Process] = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = worker_processes(run.pid)
        assert workers, "no worker processes started"
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        _gone, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"worker processes left running: {[p.pid for p in alive]}"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)


def test_ctrl_c_of_a_local_run_ends_at_once_quietly_and_resumes(tmp_path):
    """Ctrl-C in a terminal reaches elmpipe and its worker processes together. A worker inside a
    simulation cannot close when asked: dask waited 4 s, killed it, and printed its warnings,
    tracebacks and a leaked-semaphore notice after "Interrupted"."""
    path = tmp_path / "ctrl-c.zarr"
    args = ["simulate", "-o", str(path), "-n", "8", "--split", "train", "--duration-ms", "1000",
            "--seed", "5", "--input-scale", "0.7", "--workers", "2", "--quiet"]  # fmt: skip
    run = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # even if pytest's is off
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and completed(path) == 0 and run.poll() is None:
            time.sleep(0.1)
        workers = worker_processes(run.pid)
        assert run.poll() is None and workers, "the run ended before it could be interrupted"
        interrupted = time.time()
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        _, stderr = run.communicate(timeout=60)
        took = time.time() - interrupted
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130, stderr
    assert stderr.strip() == (
        "Interrupted: what finished is written; run the same command to resume."
    ), stderr
    assert took < 4, f"{took:.1f} s from Ctrl-C to exit: the workers were waited for"
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"worker processes left running: {[p.pid for p in alive]}"
    done = completed(path)
    assert 0 < done < 8
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert completed(path) == 8
