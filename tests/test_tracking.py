"""Experiment tracking: a fit with --track, read back by TensorBoard's and MLflow's own readers."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from elmpipe.errors import EnvironmentProblem
from surrogate.tracking import open_trackers
from tests.test_bad_inputs import FAST_FIT, invoke
from tests.toy_dataset import make_toy_dataset


@pytest.fixture(scope="module")
def tracked_fit(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracked")
    store = make_toy_dataset(root / "toy.zarr", {"train": 8, "valid": 3})
    out = root / "study" / "elm"
    uri = f"sqlite:///{root / 'mlflow.db'}"  # MLflow's default kind of store, in a test folder
    args = ["fit", "-d", store, "-o", out, "--track", "tensorboard", "--track", "mlflow"]
    result = invoke(*args, "--tracking-uri", uri, *FAST_FIT)
    assert result.exit_code == 0, result.output
    return out, uri, store, args


def history(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_holds_every_epoch_of_metrics_jsonl(tracked_fit):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, *_ = tracked_fit
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    rows = history(out)
    for key in ("train_loss", "valid_soma_rmse_mv", "valid_spike_auc"):
        logged = {e.step: e.value for e in events.Scalars(key)}
        expected = {r["epoch"]: r[key] for r in rows if key in r}
        assert logged.keys() == expected.keys()
        np.testing.assert_allclose(list(logged.values()), list(expected.values()), rtol=1e-6)
    assert "config/text_summary" in events.Tags()["tensors"]  # the training config, as text


def test_mlflow_holds_params_epochs_and_result_and_a_resume_appends(tracked_fit):
    from mlflow.tracking import MlflowClient

    out, uri, _, args = tracked_fit
    client = MlflowClient(tracking_uri=uri)
    run_id = json.loads((out / "tracking.json").read_text())["mlflow"]
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "study"  # the parent folder
    assert run.info.run_name == "elm"
    assert run.data.params["learning_rate"] == "0.0005"
    assert json.loads(run.data.params["model.num_memory"]) == 2
    losses = client.get_metric_history(run_id, "train_loss")
    assert [m.value for m in sorted(losses, key=lambda m: m.step)] == pytest.approx(
        [r["train_loss"] for r in history(out) if "train_loss" in r], rel=1e-6
    )
    assert "best/valid_soma_rmse_mv" in run.data.metrics and run.data.metrics["parameters"] > 0
    # run again with --resume: the same MLflow run, and no epoch logged twice
    resumed = invoke(*args, "--tracking-uri", uri, *FAST_FIT, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "tracking.json").read_text())["mlflow"] == run_id
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train_loss"))
    assert steps == [r["epoch"] for r in history(out) if "train_loss" in r]


def test_an_evaluation_and_figures_are_added_to_the_fit_s_runs(tracked_fit, tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, uri, *_ = tracked_fit
    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [0, 1])
    png = tmp_path / "roc.png"
    figure.savefig(png)
    metrics = {"split": "test", "spike_auc": 0.987, "spike_auc_ci95": [0.98, 0.99]}
    with open_trackers(["tensorboard", "mlflow"], out, uri=uri) as tracked:
        tracked.evaluation(metrics, [png])
    client = MlflowClient(tracking_uri=uri)
    run_id = json.loads((out / "tracking.json").read_text())["mlflow"]
    assert client.get_run(run_id).data.metrics["test/spike_auc"] == pytest.approx(0.987)
    assert [a.path for a in client.list_artifacts(run_id, "figures")] == ["figures/roc.png"]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert "test/spike_auc" in events.Tags()["scalars"]
    assert "figures/roc" in events.Tags()["images"]


def test_a_tracker_that_is_not_installed_is_named_with_its_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(EnvironmentProblem, match=r"pip install 'elmpipe\[tracking\]'"):
        open_trackers(["mlflow"], tmp_path)
