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
