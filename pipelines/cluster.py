"""Where work runs: in this process, a local dask cluster, an existing scheduler, or SLURM/PBS.

Every kind is reached through one function, :func:`executor`, which yields an executor with one
method the stages use, :meth:`Executor.run`: submit a list of :class:`Task`, show progress as they
finish, cancel what is left if anything fails or the user interrupts, and return the results in
task order. The stages do not know which kind of executor they got (BluePyOpt's "map function"
idea). Batch systems go through dask-jobqueue: each job starts dask workers that connect back to
the scheduler in this process (docs/hpc.md).

Clusters started here do not expire silent workers (``distributed.scheduler.worker-ttl``): a
CoreNEURON run holds the GIL from start to end, so a worker sends no heartbeat while it simulates,
and dask's default (5 min) would restart every worker whose simulation runs longer than that,
mid-simulation, again and again (tests/test_cluster.py shows it). A worker that dies still closes
its connection and is noticed; a hung batch job ends at its walltime. Losing workers is
reported, not passed over in silence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from tqdm import tqdm

from elmpipe.errors import EnvironmentProblem, InputError
from elmpipe.settings import StrictModel

if TYPE_CHECKING:
    from dask_jobqueue.core import JobQueueCluster
    from distributed import SpecCluster

Kind = Literal["in-process", "local", "address", "slurm", "pbs"]


class ClusterConfig(StrictModel):
    """How to get workers. ``workers``: processes (local) or jobs (slurm/pbs)."""

    kind: Kind = "local"
    workers: int | None = Field(None, ge=1, description="default: one per core (local)")
    address: str | None = Field(None, description="scheduler address for kind 'address'")
    # batch systems (dask-jobqueue)
    queue: str | None = Field(None, description="SLURM partition / PBS queue")
    account: str | None = None
    walltime: str = "04:00:00"
    cores_per_job: int = Field(1, ge=1)
    processes_per_job: int | None = Field(None, ge=1, description="default: cores_per_job")
    memory_per_job: str = "4GiB"
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = Field((), description="shell lines run before workers")
    log_directory: str | None = None
    local_directory: str | None = None
    interface: str | None = Field(None, description="network interface workers listen on")
    adaptive_minimum: int | None = Field(None, ge=0, description="jobs; enables adaptive mode")
    adaptive_maximum: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        if self.kind == "address" and not self.address:
            raise ValueError("kind 'address' needs an address (e.g. tcp://10.0.0.5:8786)")
        if (self.adaptive_minimum is None) != (self.adaptive_maximum is None):
            raise ValueError("set both adaptive_minimum and adaptive_maximum, or neither")
        if (
            self.adaptive_minimum is not None
            and self.adaptive_maximum is not None
            and self.adaptive_minimum > self.adaptive_maximum
        ):
            raise ValueError("adaptive_minimum exceeds adaptive_maximum")
        return self


@dataclass(frozen=True)
class Task:
    """One call ``fn(*args)`` to run somewhere; ``size`` is its share of the progress bar."""

    fn: Callable[..., Any]
    args: tuple = ()
    key: str | None = None
    size: int = 1


class Executor:
    """Runs :class:`Task` lists; subclasses say how to submit, wait and cancel."""

    def submit(self, task: Task) -> Any:
        raise NotImplementedError

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        raise NotImplementedError

    def cancel(self, futures: list[Any]) -> None:
        raise NotImplementedError

    def release(self, future: Any) -> None:
        """Let the cluster forget a result that has been taken (nothing to do by default)."""

    def run(
        self,
        tasks: Sequence[Task],
        *,
        label: str,
        unit: str = "task",
        progress: bool = True,
        on_result: Callable[[Task, Any], None] | None = None,
    ) -> list[Any]:
        """Run every task; results in task order. ``on_result`` sees each one as it finishes.

        If a task fails or the user interrupts, the tasks not yet finished are cancelled and the
        error propagates; what finished tasks wrote stays written.
        """
        futures = [self.submit(task) for task in tasks]
        index = {id(future): i for i, future in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        total = sum(task.size for task in tasks)
        with tqdm(total=total, desc=label, unit=unit, disable=not progress) as bar:
            try:
                for future in self.as_completed(futures):
                    i = index[id(future)]
                    results[i] = future.result()
                    if on_result is not None:
                        on_result(tasks[i], results[i])
                    self.release(future)
                    bar.update(tasks[i].size)
            except BaseException:
                self.cancel(futures)
                raise
        return results


class _Deferred(Future):
    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task


class InProcess(Executor):
    """Runs tasks one after another in this process: for debugging and tiny runs."""

    def submit(self, task: Task) -> Future:
        return _Deferred(task)

    def as_completed(self, futures: list[Future]) -> Iterator[Future]:
        for future in futures:
            if isinstance(future, _Deferred) and not future.done():
                try:
                    future.set_result(future.task.fn(*future.task.args))
                except Exception as exc:
                    future.set_exception(exc)
            yield future

    def cancel(self, futures: list[Future]) -> None:
        for future in futures:
            future.cancel()


class DaskExecutor(Executor):
    """Tasks on the workers of a dask client (local cluster, scheduler address, SLURM/PBS)."""

    def __init__(self, client: Any, *, watch_workers: bool = True) -> None:
        self.client = client
        self.watch_workers = watch_workers
        self.most_workers = 0
        self.workers_now = 0

    def submit(self, task: Task) -> Any:
        return self.client.submit(task.fn, *task.args, key=task.key, pure=False)

    def as_completed(self, futures: list[Any]) -> Iterator[Any]:
        from distributed import as_completed

        self.check_workers()
        for future in as_completed(futures):
            self.check_workers()
            yield future

    def check_workers(self) -> None:
        """Say on stderr when the cluster has fewer workers than it had (and when they are back).

        Dask reschedules a lost worker's tasks on the others, so a run goes on without it, slower;
        without this line nothing would tell the user why. Off for adaptive clusters, which
        retire idle workers on purpose.
        """
        if not self.watch_workers:
            return
        count = len(self.client.nthreads())
        if count < self.workers_now:
            tqdm.write(
                f"warning: dask workers lost: {count} of {self.most_workers} left; the run goes "
                "on, slower (dask's log says why)",
                file=sys.stderr,
            )
        elif count > self.workers_now and self.workers_now < self.most_workers:
            tqdm.write(f"dask workers back: {count} of {self.most_workers}", file=sys.stderr)
        self.workers_now = count
        self.most_workers = max(self.most_workers, count)

    def cancel(self, futures: list[Any]) -> None:
        self.client.cancel(futures)

    def release(self, future: Any) -> None:
        """A finished task's result is taken (and written): the scheduler may forget it.

        Otherwise the worker holding it keeps it, and when that worker dies (a batch job's
        walltime) dask recomputes every task it ever finished, not only the one it was running;
        a job that dies again at the same point then fails that task for good (KilledWorker).
        """
        future.release()


def _import_dask_jobqueue() -> Any:
    """dask_jobqueue, imported without the SIGINT handler its import installs.

    Its ``runner`` module calls ``signal.signal(SIGINT, lambda *_: sys.exit())`` on import: Ctrl-C
    in an elmpipe run on SLURM/PBS then ended it with exit status 0 instead of the interrupted
    run's 130 and its resume hint, and the import failed outright outside the main thread (a
    library caller's thread). ``signal.signal`` is held still for the import only.
    """
    if "dask_jobqueue" in sys.modules:
        return sys.modules["dask_jobqueue"]
    install = signal.signal
    signal.signal = lambda signalnum, handler: signal.getsignal(signalnum)  # type: ignore[assignment]
    try:
        import dask_jobqueue
    finally:
        signal.signal = install
    return dask_jobqueue


def jobqueue_cluster(config: ClusterConfig) -> JobQueueCluster:
    """A dask-jobqueue cluster object (no jobs submitted until it is scaled)."""
    dask_jobqueue = _import_dask_jobqueue()
    cls = dask_jobqueue.SLURMCluster if config.kind == "slurm" else dask_jobqueue.PBSCluster
    options: dict[str, Any] = {
        "cores": config.cores_per_job,
        "processes": config.processes_per_job or config.cores_per_job,
        "memory": config.memory_per_job,
        "walltime": config.walltime,
        "job_extra_directives": list(config.job_extra_directives),
        "job_script_prologue": list(config.job_script_prologue),
        # one thread per worker process: NEURON simulates one cell per process
        "worker_extra_args": ["--nthreads", "1"],
    }
    for name in ("queue", "account", "log_directory", "local_directory", "interface"):
        if getattr(config, name) is not None:
            options[name] = getattr(config, name)
    return cls(**options)


#: the batch systems' submit command, and a query that fails when the system is unreachable
BATCH_COMMANDS = {"slurm": ("sbatch", ["squeue", "-h", "-o", "%i"]), "pbs": ("qsub", ["qstat"])}


def require_batch_system(kind: str) -> None:
    """A batch cluster needs its commands here and its controller reachable. Otherwise
    dask-jobqueue fails in a background thread, prints the error once per job and waits for
    workers forever."""
    submit, query = BATCH_COMMANDS[kind]
    for command in (submit, query[0]):
        if shutil.which(command) is None:
            raise EnvironmentProblem(
                f"--cluster {kind} needs `{command}`, which is not on this machine's PATH: run "
                "from the cluster's login node (or another node that can submit jobs), or "
                "choose --cluster local"
            )
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(
            f"--cluster {kind}: `{' '.join(query)}` did not answer within 60 s; is the batch "
            "system up?"
        ) from None
    if done.returncode != 0:
        raise EnvironmentProblem(
            f"--cluster {kind}: the batch system does not answer (`{' '.join(query)}`: "
            f"{(done.stderr or done.stdout).strip()[-300:]}); jobs could not be submitted"
        )


NO_WORKER_TTL = {"distributed.scheduler.worker-ttl": None}


@contextlib.contextmanager
def executor(config: ClusterConfig) -> Iterator[Executor]:
    """Start (or connect to) the configured workers; shut down what was started on exit."""
    if config.kind == "in-process":
        yield InProcess()
        return
    import dask
    from distributed import Client, LocalCluster

    if config.kind == "address":
        try:
            client = Client(config.address, timeout="20s")
        except OSError as exc:
            raise InputError(f"cannot reach the dask scheduler at {config.address}: {exc}") from exc
        with client:  # someone else's cluster: it may scale itself, so no warnings on shrinking
            yield DaskExecutor(client, watch_workers=False)
        return
    batch: JobQueueCluster | None = None  # the cluster, when it submits batch jobs
    with dask.config.set(NO_WORKER_TTL):  # read once, when the scheduler is made
        if config.kind == "local":
            workers = config.workers or os.cpu_count() or 1
            cluster: SpecCluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
        else:
            require_batch_system(config.kind)
            cluster = batch = jobqueue_cluster(config)
    if batch is not None:
        if config.adaptive_minimum is not None:
            assert config.adaptive_maximum is not None  # the config sets both or neither
            batch.adapt(minimum_jobs=config.adaptive_minimum, maximum_jobs=config.adaptive_maximum)
        else:
            batch.scale(jobs=config.workers or 1)
    with cluster, Client(cluster) as client:
        try:
            yield DaskExecutor(client, watch_workers=config.adaptive_minimum is None)
        except KeyboardInterrupt:
            if batch is None:
                _end_local_workers(cluster)
            raise


def _end_local_workers(cluster: SpecCluster) -> None:
    """End a local cluster's worker processes at once, on the user's interrupt.

    A worker in a simulation holds the GIL until it ends, so it cannot close when asked: dask
    waited 4 s, killed it anyway, and printed warnings and tracebacks after "Interrupted".
    Nothing is lost: a block is marked complete only after it is written, so one cut short is
    run again on resume (the same as a batch job's walltime). The scheduler then logs each broken
    connection (at INFO, with a traceback); dask's logs are silenced first, for good: the process is
    on its way out.
    """
    dask_log = logging.getLogger("distributed")
    for handler in dask_log.handlers:
        handler.setLevel(logging.CRITICAL + 1)
    dask_log.setLevel(logging.CRITICAL + 1)
    for nanny in cluster.workers.values():
        pid = getattr(nanny, "pid", None)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
