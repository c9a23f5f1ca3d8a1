"""Experiment tracking: every fit (and sweep point) logged to TensorBoard and/or MLflow.

Why: ML users compare sweeps in the tracker they already use; metrics.jsonl and metrics.csv stay
the run folder's own record, and these are views of the same rows. Both are optional
(``pip install 'elmpipe[tracking]'``); asking for one that is not installed is an error before any
training, naming the install command.

What is logged, per run folder: the training config and the model's hyper-parameters (MLflow
params; TensorBoard text), every epoch's row of metrics.jsonl (scalars, step = epoch; epoch 0 is
a warm start's own validation), the finished run's summary (best and last epoch, parameters,
seconds), and — when `elmpipe run` or `elmpipe evaluate` evaluates the run — the evaluation's
metrics and the report's figures. A resumed run, or an evaluation after the fit, appends to the
same tracked run: ``tracking.json`` in the run folder remembers the MLflow run id; TensorBoard's
events live in ``<run folder>/tensorboard``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from elmpipe.errors import EnvironmentProblem
from elmpipe.outputs import write_json_atomic

Backend = Literal["tensorboard", "mlflow"]
BACKENDS: tuple[Backend, ...] = ("tensorboard", "mlflow")
RUN_IDS = "tracking.json"


class Tracker(Protocol):
    def epoch(self, row: dict[str, Any]) -> None: ...
    def finish(self, summary: dict[str, Any]) -> None: ...
    def evaluation(self, metrics: dict[str, Any], figures: Sequence[Path]) -> None: ...
    def close(self) -> None: ...


def scalars(row: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """The finite numbers of a (nested) metrics row, as name → value."""
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from scalars(value, f"{name}/")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int | float) and math.isfinite(value):
            yield name, float(value)


def _flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat_params(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if not isinstance(value, str) else value
    return flat


class TensorBoardTracker:
    """Scalars and figures in ``<run folder>/tensorboard`` (read by `tensorboard --logdir`)."""

    def __init__(self, run_dir: Path, params: dict[str, Any]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch's writer needs the tensorboard package
            raise missing("tensorboard") from exc
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if params:
            self.writer.add_text("config", f"```\n{json.dumps(params, indent=2)}\n```", 0)

    def epoch(self, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for name, value in scalars(row):
            if name != "epoch":
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def finish(self, summary: dict[str, Any]) -> None:
        step = int(summary.get("best", {}).get("epoch", 0))
        for name, value in scalars({"best": summary.get("best", {})}):
            self.writer.add_scalar(name, value, step)
        self.writer.add_scalar("parameters", float(summary.get("parameters", 0)), 0)
        self.writer.flush()

    def evaluation(self, metrics: dict[str, Any], figures: Sequence[Path]) -> None:
        import numpy as np
        from PIL import Image

        split = metrics.get("split", "test")
        for name, value in scalars(metrics):
            self.writer.add_scalar(f"{split}/{name}", value, 0)
        for path in figures:
            image = np.asarray(Image.open(path).convert("RGB"))
            self.writer.add_image(f"figures/{path.stem}", image, 0, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflowTracker:
    """One MLflow run per run folder, in the tracking store ``uri`` (when None, MLflow's
    default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working folder), experiment
    ``experiment``."""

    def __init__(
        self, run_dir: Path, params: dict[str, Any], uri: str | None, experiment: str | None
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise missing("mlflow") from exc
        self.client = MlflowClient(tracking_uri=uri)
        ids_file = run_dir / RUN_IDS
        ids = json.loads(ids_file.read_text()) if ids_file.exists() else {}
        run_id: str | None = ids.get("mlflow")
        if run_id is None:
            name = experiment or run_dir.parent.name or "elmpipe"
            found = self.client.get_experiment_by_name(name)
            experiment_id = (
                found.experiment_id
                if found
                else self.client.create_experiment(name, artifact_location=_artifacts(uri, name))
            )
            run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
            write_json_atomic(ids_file, {**ids, "mlflow": run_id})
            for key, value in _flat_params(params).items():
                self.client.log_param(run_id, key, value[:6000])
        self.run_id: str = run_id

    def epoch(self, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for name, value in scalars(row):
            if name != "epoch":
                self.client.log_metric(self.run_id, name, value, step=step)

    def finish(self, summary: dict[str, Any]) -> None:
        for name, value in scalars({"best": summary.get("best", {})}):
            self.client.log_metric(self.run_id, name, value)
        self.client.log_metric(self.run_id, "parameters", float(summary.get("parameters", 0)))

    def evaluation(self, metrics: dict[str, Any], figures: Sequence[Path]) -> None:
        split = metrics.get("split", "test")
        for name, value in scalars(metrics):
            self.client.log_metric(self.run_id, f"{split}/{name}", value)
        for path in figures:
            self.client.log_artifact(self.run_id, str(path), artifact_path="figures")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def _artifacts(uri: str | None, experiment: str) -> str | None:
    """Beside a local SQLite store, its figures: MLflow's own default is ./mlruns in whatever
    folder the command runs from."""
    if uri and uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / experiment).as_uri()
    return None


def missing(package: str) -> EnvironmentProblem:
    return EnvironmentProblem(
        f"--track {package} needs the {package} package: pip install 'elmpipe[tracking]' "
        f"(or pip install {'mlflow-skinny sqlalchemy alembic' if package == 'mlflow' else package})"
    )


class Trackers:
    """The trackers of one run folder, used as one (none: every call does nothing)."""

    def __init__(self, trackers: Sequence[Tracker] = ()) -> None:
        self.trackers = list(trackers)

    def epoch(self, row: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.epoch(row)

    def finish(self, summary: dict[str, Any]) -> None:
        for tracker in self.trackers:
            tracker.finish(summary)

    def evaluation(self, metrics: dict[str, Any], figures: Sequence[Path] = ()) -> None:
        for tracker in self.trackers:
            tracker.evaluation(metrics, [Path(f) for f in figures if Path(f).exists()])

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc: object) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_trackers(
    backends: Iterable[str],
    run_dir: str | Path,
    params: dict[str, Any] | None = None,
    *,
    uri: str | None = None,
    experiment: str | None = None,
) -> Trackers:
    run_dir = Path(run_dir)
    trackers: list[Tracker] = []
    for backend in dict.fromkeys(backends):  # each once, in the order given
        if backend == "tensorboard":
            trackers.append(TensorBoardTracker(run_dir, params or {}))
        elif backend == "mlflow":
            trackers.append(MLflowTracker(run_dir, params or {}, uri, experiment))
        else:
            raise ValueError(f"unknown tracker {backend!r} (known: {', '.join(BACKENDS)})")
    return Trackers(trackers)
