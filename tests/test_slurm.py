"""The HPC path on a real SLURM cluster: simulations and sweeps as worker jobs, and faults.

Needs a reachable SLURM (`.ci/slurm-up` starts a single-node one as root; `.ci/run` does so).
Skipped, with the reason, where there is none. Worker jobs are dask-jobqueue workers started by
`pipelines.cluster.executor` from the cluster section of configs/simulate-slurm.yaml, resized
for a 2-core node.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from elmpipe.dataset import Dataset
from elmpipe.dataset.schema import DATA_ARRAYS
from elmpipe.errors import EXIT_INTERRUPTED
from pipelines.cluster import ClusterConfig
from pipelines.config import SimulateConfig, load_config
from pipelines.simulation_stage import simulate

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slurm


def _slurm_missing() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return "no SLURM client commands (sbatch, scontrol); start one with .ci/slurm-up as root"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    if " is UP" not in ping.stdout:
        return f"SLURM controller not reachable: {(ping.stdout + ping.stderr).strip()[:200]}"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_available():
    if reason := _slurm_missing():
        pytest.skip(reason)


def partition() -> str:
    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True)
    names = out.stdout.split()
    default = [n for n in names if n.endswith("*")]
    return (default or names)[0].rstrip("*")


def our_jobs(name: str = "dask-worker") -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def slurm_config(tmp_path: Path, **cluster) -> SimulateConfig:
    """configs/simulate-slurm.yaml with a CI-sized cell, duration and cluster."""
    config = load_config(ROOT / "configs" / "simulate-slurm.yaml", SimulateConfig)
    sized = {
        "queue": partition(),
        "workers": 2,
        "cores_per_job": 1,
        "processes_per_job": 1,
        "memory_per_job": "2GiB",
        "walltime": "00:10:00",
        "log_directory": str(tmp_path / "logs"),
        "local_directory": str(tmp_path / "dask"),
        "job_script_prologue": (),
        **cluster,
    }
    return config.model_copy(
        update={
            "cell": config.cell.model_copy(update={"morphology": None}),  # the built-in cell
            "simulation": config.simulation.model_copy(update={"duration_ms": 400.0}),
            "seed": 7,
            "cluster": ClusterConfig.model_validate({**config.cluster.model_dump(), **sized}),
        }
    )


def local_copy(config: SimulateConfig, workers: int = 2) -> SimulateConfig:
    return config.model_copy(update={"cluster": ClusterConfig(kind="local", workers=workers)})


def assert_same_simulations(reference: Path, candidate: Path, n: int) -> None:
    """Every one of the n simulations complete, and byte-identical to the local reference."""
    left, right = Dataset(reference).split("train").group, Dataset(candidate).split("train").group
    assert right["complete"].shape == (n,) and right["complete"][:].all()
    for name in DATA_ARRAYS:
        if name in right:
            assert np.array_equal(left[name][:n], right[name][:], equal_nan=True), name


def local_reference(tmp_path: Path, config: SimulateConfig, n: int, workers: int = 2) -> Path:
    """The same simulations run by local worker processes."""
    out = tmp_path / "local.zarr"
    simulate(local_copy(config, workers), out, "train", n, progress=False)
    return out


def processes_of_job(job_id: str) -> list[int]:
    """PIDs whose environment says they belong to SLURM job ``job_id``."""
    marker = f"SLURM_JOB_ID={job_id}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def run_in_background(config: SimulateConfig, out: Path, n: int) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["summary"] = simulate(config, out, "train", n, progress=False)
        except BaseException as exc:  # reported by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def completed(out: Path) -> int:
    try:
        return int(zarr.open_group(str(out), mode="r")["train"]["complete"][:].sum())
    except Exception:
        return 0


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_simulate_on_slurm_equals_local_and_cancels_its_jobs(tmp_path):
    config = slurm_config(tmp_path)
    summary = simulate(config, tmp_path / "slurm.zarr", "train", 4, progress=False)
    assert summary.simulated == 4
    assert summary.slurm_jobs, "no task reported a SLURM job: the workers were not batch jobs"
    assert_same_simulations(local_reference(tmp_path, config, 4), tmp_path / "slurm.zarr", 4)
    assert list((tmp_path / "logs").glob("*.err")), "dask-jobqueue wrote no job logs"
    # the worker jobs are cancelled when the run ends
    wait_for(lambda: not set(summary.slurm_jobs) & set(our_jobs()), 30, "jobs to end")


def test_a_killed_worker_job_loses_nothing(tmp_path):
    """scancel plus kill -9 of one worker job's processes in the middle of a run."""
    config = slurm_config(tmp_path)
    n, out = 12, tmp_path / "slurm.zarr"
    thread, box = run_in_background(config, out, n)
    wait_for(lambda: completed(out) >= 2 and len(our_jobs()) == 2, 180, "two running jobs")
    victim = our_jobs()[0]
    for pid in processes_of_job(victim):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["scancel", victim], check=False)
    done_at_kill = completed(out)
    thread.join(timeout=300)
    assert "error" not in box, box.get("error")
    assert done_at_kill < n, "the run ended before the fault: make it longer"
    assert_same_simulations(local_reference(tmp_path, config, n), out, n)


def test_ctrl_c_on_a_slurm_run_exits_130_and_cancels_its_jobs(tmp_path):
    """Ctrl-C in `elmpipe simulate` on SLURM: the interrupted run's exit status, no job left behind.

    Importing dask-jobqueue installs a SIGINT handler that calls sys.exit(): unguarded, Ctrl-C ended
    a batch run with exit status 0, as if it had finished.
    """
    config = slurm_config(tmp_path, workers=1)
    config = config.model_copy(
        update={"simulation": config.simulation.model_copy(update={"duration_ms": 2000.0})}
    )
    path, out = tmp_path / "simulate.yaml", tmp_path / "slurm.zarr"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    before = set(our_jobs())
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "simulate",
            "-c",
            str(path),
            "-o",
            str(out),
            "-n",
            "12",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal, even when the tests run in a script's background (SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(lambda: completed(out) >= 1 or process.poll() is not None, 240, "a simulation")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    assert "Traceback" not in stderr and "Interrupted" in stderr, stderr[-3000:]
    assert completed(out) < 12, "the run ended before the interruption: make it longer"
    wait_for(lambda: not set(our_jobs()) - before, 60, "the run's jobs to be cancelled")


def test_walltime_expiry_is_survived_and_adaptive_mode_replaces_the_job(tmp_path):
    """A one-minute walltime ends the only worker job mid-run; adapt() submits a new one.

    The first job starts its worker 40 s late, so that its walltime (one minute, SLURM's
    shortest, enforced up to half a minute late) falls mid-run however fast the machine: on a fast
    one the 16 simulations otherwise finished inside it. Replacement jobs start at once.
    """
    first_job = tmp_path / "first-job-started"
    late_start = f"[ -e {first_job} ] || {{ touch {first_job}; sleep 40; }}"
    config = slurm_config(
        tmp_path,
        walltime="00:01:00",
        workers=None,
        adaptive_minimum=1,
        adaptive_maximum=1,
        job_script_prologue=(late_start,),
    )
    config = config.model_copy(
        update={"simulation": config.simulation.model_copy(update={"duration_ms": 2000.0})}
    )
    n, out = 16, tmp_path / "slurm.zarr"
    thread, box = run_in_background(config, out, n)
    # the one worker job uses one core: compute the local reference on the other meanwhile —
    # once the SLURM run's driver has built its cell and made the store (NEURON is not
    # thread-safe: two threads must not build cells at once)
    wait_for(lambda: (out / "train" / "complete").exists() or "error" in box, 120, "the store")
    reference = local_reference(tmp_path, config, n, workers=1)
    thread.join(timeout=480)
    assert not thread.is_alive(), "the run did not finish"
    assert "error" not in box, box.get("error")
    summary = box["summary"]
    assert len(summary.slurm_jobs) >= 2, f"no replacement job ran tasks: {summary.slurm_jobs}"
    first = summary.slurm_jobs[0]
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob(f"*{first}*"))
    assert "TIME LIMIT" in log, f"job {first} was not ended by its walltime:\n{log[-2000:]}"
    assert_same_simulations(reference, out, n)


def test_sweep_points_train_in_slurm_jobs(tmp_path, toy_store):
    from pipelines.sweep import SweepConfig, run_sweep

    cluster = slurm_config(tmp_path).cluster
    sweep = SweepConfig(
        models=("elm", "lstm"),
        num_memory=(2, 4),
        num_branch=(10,),
        lstm_hidden=(6,),
        train={"epochs": 1, "batches_per_epoch": 4},  # default loaders, as users run it
    )
    table = run_sweep(sweep, toy_store, tmp_path / "sweep", cluster, progress=False)
    assert [row["name"] for row in table] == ["elm-m2-b10", "elm-m4-b10", "lstm-h6"]
    assert all(row["slurm_job_id"] for row in table), table
    assert (tmp_path / "sweep" / "results.csv").exists()
    # a second run finds every point done and submits no training
    again = run_sweep(sweep, toy_store, tmp_path / "sweep", cluster, progress=False)
    assert [row["parameters"] for row in again] == [row["parameters"] for row in table]
