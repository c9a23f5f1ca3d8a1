"""Adding a model family or a metric touches nothing but the new family's module (and its
registration) or the metric's table row: every command then offers it.

The toy family here is a package of its own, written by the test into a folder on PYTHONPATH
and registered through the ``elmpipe.model_families`` entry point, exactly as a lab's plugin
would be; elmpipe is not edited. The toy metric is one :func:`surrogate.metric_table.register`
call.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from surrogate import metric_table

FAST = ["--epochs", "1", "--batches-per-epoch", "4", "-q"]

TOY_FAMILY = '''
"""A toy surrogate family: a leaky trace of a learned input projection, read out per step."""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from elmpipe.settings import StrictModel
from surrogate.models.registry import FamilyOption, ModelFamily


class LeakyConfig(StrictModel):
    family: Literal["leaky"] = "leaky"
    num_input: int = Field(gt=0)
    num_output: int = 2
    width: int = Field(8, ge=1, le=256, description="leaky traces")


class Leaky(nn.Module):
    def __init__(self, config: LeakyConfig) -> None:
        super().__init__()
        self.config = config
        self.project = nn.Linear(config.num_input, config.width)
        self.readout = nn.Linear(config.width, config.num_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drive, trace, out = self.project(x), torch.zeros_like(x[:, 0, :1]), []
        for t in range(x.shape[1]):
            trace = 0.9 * trace + drive[:, t]
            out.append(self.readout(torch.tanh(trace)))
        return torch.stack(out, dim=1)


FAMILY = ModelFamily(
    name="leaky",
    config=LeakyConfig,
    module=Leaky,
    run_name=lambda config: f"leaky-w{config.width}",
    options=(FamilyOption("width", sweep_key="leaky_width", sweep_values=(4, 8)),),
)
'''

ENTRY_POINTS = """[elmpipe.model_families]
leaky = leaky_family:FAMILY
"""

#: run in a fresh interpreter, so that surrogate.models finds the plugin when it is imported
COMMANDS = """
import json, sys
from click.testing import CliRunner
from pipelines.cli import cli

store, out = sys.argv[1], sys.argv[2]
fast = ["--epochs", "1", "--batches-per-epoch", "4", "-q"]
runs = {
    "help": ["fit", "--help"],
    "sweep_help": ["sweep", "--help"],
    "fit": ["fit", "-d", store, "-o", out + "/fit", "--model", "leaky", "--width", "6", *fast],
    "wrong_flag": ["fit", "-d", store, "-o", out + "/x", "--model", "leaky", "--num-memory", "3"],
    "evaluate": ["evaluate", "-k", out + "/fit/best.pt", "-d", store, "--split", "valid"],
    "sweep": [
        "sweep", "-d", store, "-o", out + "/sweep", "--models", "leaky,elm", "--leaky-width",
        "3,5", "--num-memory", "2", "--num-branch", "10", "--cluster", "in-process",
        "--evaluate-split", "valid", *fast,
    ],
}
results = {}
for name, args in runs.items():
    result = CliRunner().invoke(cli, args)
    results[name] = {"code": result.exit_code, "output": result.output}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def plugin_runs(toy_store, tmp_path_factory):
    """The toy family installed as a plugin (a module and its entry point, nothing else), and
    what the commands did with it."""
    site = tmp_path_factory.mktemp("site")
    (site / "leaky_family.py").write_text(TOY_FAMILY)
    info = site / "leaky_family-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leaky-family\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    out = tmp_path_factory.mktemp("plugin-runs")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", COMMANDS, str(toy_store), str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), out


def test_a_plugin_family_is_offered_by_fit_and_sweep(plugin_runs):
    results, _ = plugin_runs
    assert "leaky" in results["help"]["output"] and "--width" in results["help"]["output"]
    assert "LEAKY: leaky traces (default 8)" in " ".join(results["help"]["output"].split())
    assert "--leaky-width" in results["sweep_help"]["output"]


def test_a_plugin_family_trains_evaluates_and_sweeps(plugin_runs):
    results, out = plugin_runs
    assert results["fit"]["code"] == 0, results["fit"]["output"]
    model = json.loads((out / "fit" / "result.json").read_text())["model"]
    assert model == {"family": "leaky", "num_input": 100, "num_output": 2, "width": 6}
    assert results["evaluate"]["code"] == 0, results["evaluate"]["output"]
    assert "spike_auc" in results["evaluate"]["output"]
    assert results["sweep"]["code"] == 0, results["sweep"]["output"]
    with open(out / "sweep" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == ["leaky-w3", "leaky-w5", "elm-m2-b10"]
    assert [row["leaky_width"] for row in rows] == ["3", "5", ""]  # its axis is a column
    assert all(float(row["valid_spike_auc"]) > 0 for row in rows)


def test_a_plugin_family_refuses_another_familys_options(plugin_runs):
    results, _ = plugin_runs
    assert results["wrong_flag"]["code"] == 2
    assert "--num-memory is an option of elm, not of leaky" in results["wrong_flag"]["output"]


@pytest.fixture
def max_error_metric():
    """A new metric: one row in the table (removed again after the test)."""
    row = metric_table.register(
        metric_table.Metric(
            "soma_max_error_mv",
            "largest soma error (mV)",
            "{:.2f}",
            lambda pooled: float(np.max(np.abs(pooled.truth - pooled.prediction))),
            better="lower",
            in_sweep=True,
        )
    )
    yield row
    metric_table.METRICS.remove(row)


def test_a_new_metric_reaches_evaluate_the_report_and_the_sweep(
    max_error_metric, toy_store, tmp_path
):
    from pipelines.report import _models_table

    sweep = CliRunner().invoke(
        cli,
        [
            "sweep", "-d", str(toy_store), "-o", str(tmp_path / "sweep"), "--num-memory", "2",
            "--num-branch", "10", "--cluster", "in-process", "--evaluate-split", "valid", *FAST,
        ],
    )  # fmt: skip
    assert sweep.exit_code == 0, sweep.output
    row = json.loads((tmp_path / "sweep" / "results.json").read_text())["results"][0]
    metrics = json.loads(
        (tmp_path / "sweep" / "elm-m2-b10" / "eval-valid" / "metrics.json").read_text()
    )
    assert metrics["soma_max_error_mv"] > metrics["soma_rmse_mv"] > 0  # the max is above the mean
    assert row["valid_soma_max_error_mv"] == metrics["soma_max_error_mv"]
    shown = CliRunner().invoke(
        cli,
        ["evaluate", "-k", str(tmp_path / "sweep" / "elm-m2-b10" / "best.pt"), "-d",
         str(toy_store), "--split", "valid", "-o", str(tmp_path / "again")],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert f"soma_max_error_mv {metrics['soma_max_error_mv']:.4f}" in " ".join(shown.output.split())
    table = _models_table([{"name": "m", "parameters": 10, **metrics}], None)
    assert "largest soma error (mV)" in table and f"{metrics['soma_max_error_mv']:.2f}" in table


def test_the_metric_table_and_the_registry_refuse_a_key_twice():
    with pytest.raises(ValueError, match="already in the table"):
        metric_table.register(metric_table.find("spike_auc"))
    from surrogate.models import FAMILIES, register

    with pytest.raises(ValueError, match="already registered"):
        register(
            type(FAMILIES["elm"])(
                name="elm", config=FAMILIES["lstm"].config, module=FAMILIES["lstm"].module,
                run_name=str,
            )
        )  # fmt: skip
