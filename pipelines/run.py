"""`elmpipe run CONFIG.yaml`: simulate → describe → fit (or sweep) → evaluate → report.

Every stage writes into the run folder and is skipped when its output is complete, resumed when
it was interrupted:

    OUT/data.zarr            simulate: splits, complete simulations are never redone
    OUT/describe.json        describe: dataset statistics
    OUT/fit/<model>/         fit: run folders (done.json when finished; last.pt to resume)
    OUT/eval/<model>/        evaluate: metrics.json, roc.png, traces.png
    OUT/report/index.html    report: one self-contained page, PNGs alongside
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.cluster import ClusterConfig
from pipelines.config import SimulateConfig
from simulations.cell import CellSpec
from simulations.inputs import NeuronIOProtocol
from simulations.simulate import SimulationSettings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataStage(_Strict):
    protocol: NeuronIOProtocol = NeuronIOProtocol()
    simulation: SimulationSettings = SimulationSettings()
    seed: int = Field(0, ge=0)
    sims_per_chunk: int = Field(1, ge=1)
    splits: dict[str, int] = Field(
        default_factory=lambda: {"train": 64, "valid": 8, "test": 16},
        description="simulations per split; needs train, valid and test",
    )

    @model_validator(mode="after")
    def _splits(self) -> DataStage:
        missing = {"train", "valid", "test"} - set(self.splits)
        if missing:
            raise ValueError(f"splits needs {', '.join(sorted(missing))}")
        if any(n <= 0 for n in self.splits.values()):
            raise ValueError("every split needs at least one simulation")
        return self


class FitStage(_Strict):
    """One model (``model``) or a grid (``sweep``); ``train`` holds the training settings."""

    model: dict[str, Any] | None = Field(
        default_factory=lambda: {"family": "elm"},
        description="family and hyper-parameters; num_input comes from the data",
    )
    sweep: dict[str, Any] | None = Field(None, description="SweepConfig fields (models, …)")
    train: dict[str, Any] = Field(default_factory=dict)
    torch_threads: int | None = Field(None, ge=1, description="default: all cores")

    @model_validator(mode="after")
    def _one_of(self) -> FitStage:
        if (self.model is None) == (self.sweep is None):
            raise ValueError("give exactly one of fit.model and fit.sweep")
        return self


class EvaluateStage(_Strict):
    split: str = "test"
    sims_per_file: int = Field(128, ge=1)
    device: str = "auto"


class ReportStage(_Strict):
    examples: int = Field(3, ge=1, description="test simulations shown as traces")


class RunConfig(_Strict):
    name: str = "run"
    out: str = Field("runs/run", description="run folder (relative paths: from where you run)")
    cell: CellSpec = CellSpec()
    data: DataStage = DataStage()
    fit: FitStage = FitStage()
    evaluate: EvaluateStage = EvaluateStage()
    report: ReportStage = ReportStage()
    cluster: ClusterConfig = ClusterConfig()


Log = Callable[[str], None]


def _stage(log: Log, name: str) -> float:
    log(f"── {name}")
    return time.perf_counter()


def run_pipeline(config: RunConfig, *, progress: bool = True, log: Log = print) -> dict[str, Any]:
    """Run (or complete) every stage; returns a summary with the report's path."""
    from pipelines.fit import SweepConfig, dataset_inputs, model_from_options, run_sweep
    from pipelines.report import build_report
    from pipelines.simulate import simulate
    from simulations.describe import describe
    from surrogate.train import load_train_config

    out = Path(config.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "run-config.json").write_text(config.model_dump_json(indent=2))
    store = out / "data.zarr"
    timings: dict[str, float] = {}

    started = _stage(log, "simulate")
    simulate_config = SimulateConfig(
        cell=config.cell,
        protocol=config.data.protocol,
        simulation=config.data.simulation,
        seed=config.data.seed,
        sims_per_chunk=config.data.sims_per_chunk,
        cluster=config.cluster,
    )
    for split, n_sims in config.data.splits.items():
        summary = simulate(simulate_config, store, split, n_sims, progress=progress)
        log(f"   {split}: {summary.simulated} simulated now, {summary.already_done} already done")
    timings["simulate"] = time.perf_counter() - started

    started = _stage(log, "describe")
    description = describe(str(store))
    (out / "describe.json").write_text(json.dumps(description, indent=2))
    timings["describe"] = time.perf_counter() - started

    started = _stage(log, "fit")
    num_input = dataset_inputs(store)
    train_settings = dict(config.fit.train)
    if config.fit.torch_threads:
        import torch

        torch.set_num_threads(config.fit.torch_threads)
    runs: dict[str, Path] = {}
    if config.fit.sweep is not None:
        sweep = SweepConfig(**{**config.fit.sweep, "train": train_settings})
        table = run_sweep(sweep, store, out / "fit", config.cluster, progress=progress)
        runs = {row["name"]: out / "fit" / row["name"] for row in table}
    else:
        from surrogate.train import fit

        options = dict(config.fit.model or {})
        family = options.pop("family", "elm")
        model = model_from_options(family, num_input, options)
        name = _model_name(model)
        run_dir = out / "fit" / name
        runs[name] = run_dir
        if (run_dir / "done.json").exists():
            log(f"   {name}: finished earlier")
        else:
            resume = (run_dir / "last.pt").exists()
            log(f"   {name}: {'resuming' if resume else 'training'}")
            train = load_train_config({**train_settings, "model": model.model_dump()})
            fit(train, store, run_dir, resume=resume, progress=progress)
    timings["fit"] = time.perf_counter() - started

    started = _stage(log, "evaluate")
    evaluations = {}
    for name, run_dir in runs.items():
        evaluations[name] = _evaluate_run(config, store, run_dir, out / "eval" / name, log)
    timings["evaluate"] = time.perf_counter() - started

    started = _stage(log, "report")
    report = build_report(out, config, description, runs, evaluations, timings)
    timings["report"] = time.perf_counter() - started
    log(f"   {report}")
    return {"out": out, "report": report, "evaluations": evaluations, "timings": timings}


def _model_name(model: Any) -> str:
    if model.family == "elm":
        return f"elm-m{model.num_memory}-b{model.branches}"
    if model.family == "lstm":
        return f"lstm-h{model.hidden}"
    return f"tcn-{model.name}"


def _evaluate_run(config: RunConfig, store: Path, run_dir: Path, out: Path, log: Log) -> dict:
    from pipelines.evaluation import write_evaluation
    from surrogate.checkpoints import load_model
    from surrogate.evaluate import EvaluationConfig, evaluate
    from surrogate.train import pick_device

    checkpoint = run_dir / "best.pt"
    metrics_path = out / "metrics.json"
    if metrics_path.exists() and metrics_path.stat().st_mtime >= checkpoint.stat().st_mtime:
        log(f"   {run_dir.name}: evaluated earlier")
        return json.loads(metrics_path.read_text())
    result = evaluate(
        load_model(checkpoint),
        store,
        config.evaluate.split,
        EvaluationConfig(sims_per_file=config.evaluate.sims_per_file),
        pick_device(config.evaluate.device),
        examples=config.report.examples,
    )
    write_evaluation(result, out, checkpoint)
    auc = result.metrics.get("spike_auc")
    log(
        f"   {run_dir.name}: AUC {auc if auc is None else round(auc, 4)}, soma RMSE "
        f"{result.metrics.get('soma_rmse_mv', float('nan')):.3f} mV"
    )
    return json.loads(metrics_path.read_text())
