"""The executors the stages run on: a long GIL-holding task survives, lost workers are reported."""

from __future__ import annotations

import sys
import time

import dask
import distributed  # noqa: F401  (loads dask's distributed defaults before the test overrides one)

from pipelines.cluster import ClusterConfig, DaskExecutor, Task, executor


def hold_the_gil(seconds: float) -> str:
    """Busy Python with a huge switch interval: no other thread of the worker runs, like psolve."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    time.sleep(0.05)  # threads already waiting pick up the new interval
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    finally:
        sys.setswitchinterval(previous)
    return "done"


def test_a_task_that_holds_the_gil_outlives_the_worker_ttl():
    # A CoreNEURON run holds the GIL throughout, so its worker sends no heartbeat. With a 1 s TTL
    # in the user's dask config (dask stretches it to 10 heartbeats, 5 s for one worker) the
    # scheduler restarts the worker mid-task, again and again (measured: 5 restarts, 45 s for an
    # 8 s task); the clusters elmpipe starts must not expire silent workers.
    with dask.config.set({"distributed.scheduler.worker-ttl": "1s"}):
        with executor(ClusterConfig(kind="local", workers=1)) as pool:
            results = pool.run(
                [Task(hold_the_gil, (8.0,), key="hold-the-gil")], label="gil", progress=False
            )
            assert results == ["done"]
            actions = [event["action"] for _, event in pool.client.get_events("scheduler")]
            assert "worker-ttl-timed-out" not in actions


class CountingClient:
    def __init__(self, counts):
        self.counts = iter(counts)

    def nthreads(self):
        return {f"worker-{i}": 1 for i in range(next(self.counts))}


def test_losing_workers_is_reported_and_so_is_their_return(capsys):
    pool = DaskExecutor(CountingClient([2, 2, 1, 1, 2]))
    for _ in range(5):
        pool.check_workers()
    err = capsys.readouterr().err
    assert err.count("dask workers lost: 1 of 2 left") == 1
    assert err.count("dask workers back: 2 of 2") == 1


def test_adaptive_clusters_shrink_without_warnings(capsys):
    pool = DaskExecutor(CountingClient([3, 1, 0]), watch_workers=False)
    for _ in range(3):
        pool.check_workers()
    assert capsys.readouterr().err == ""


def run_once_and_log(log_dir, index: int, die_at: int) -> int:
    """Log each run of this task; the task ``die_at`` kills its worker the first time it runs."""
    import os

    runs = log_dir / f"task-{index}"
    runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
    if index == die_at and runs.read_text() == "x":
        time.sleep(2.0)  # the client takes the results already finished meanwhile
        os._exit(1)  # like a batch job's walltime: the worker process is gone
    return index


def test_a_lost_worker_reruns_only_the_tasks_not_yet_taken(tmp_path):
    # On SLURM a job's walltime ends its worker mid-run. Dask recomputes whatever the dead
    # worker held: if it still held every result it had finished, a replacement job redoes
    # them all and dies again at the same point, until dask gives the task up (KilledWorker).
    tasks = [Task(run_once_and_log, (tmp_path, i, 3), key=f"task-{i}") for i in range(6)]
    with executor(ClusterConfig(kind="local", workers=1)) as pool:
        results = pool.run(tasks, label="tasks", progress=False)
    assert results == list(range(6))
    runs = {i: (tmp_path / f"task-{i}").read_text() for i in range(6)}
    assert runs == {0: "x", 1: "x", 2: "x", 3: "xx", 4: "x", 5: "x"}, runs
