"""The elmpipe command line: output a user can read, JSON a script can parse, exit codes."""

from __future__ import annotations

import json
import typing

import click
import pytest
from click.testing import CliRunner

from pipelines.cli import COMMANDS, EXIT_BAD_INPUT, EXIT_ENVIRONMENT, cli
from tests.morphology_files import good_swc


@pytest.fixture
def runner():
    return CliRunner()


def test_help_teaches(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "elmpipe run configs/demo.yaml" in result.output
    assert "Exit codes" in result.output
    sub = runner.invoke(cli, ["cell", "info", "--help"])
    assert "--morphology" in sub.output and "input resistance" in sub.output


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()):
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_leaf_command_shows_examples_that_name_it():
    leaves = dict(_leaf_commands(cli))
    assert len(leaves) >= 18
    for path, command in leaves.items():
        text = command.help or ""
        assert "Examples:" in text, f"elmpipe {' '.join(path)} --help has no examples"
        example = text.split("Examples:")[1]
        assert f"elmpipe {' '.join(path)}" in example, path


def test_the_command_list_summarises_each_command_as_its_own_help_does():
    context = click.Context(cli)
    for name, (_, summary) in COMMANDS.items():
        assert cli.get_command(context, name).get_short_help_str(limit=300) == summary


def test_option_choices_and_defaults_come_from_the_config_models(runner):
    from pipelines.cluster import ClusterConfig
    from surrogate.models import surrogate_families
    from surrogate.neuronio_fit import TrainSettings

    def option(command: str, flag: str) -> click.Option:
        found = cli.get_command(click.Context(cli), command)
        return next(p for p in found.params if flag in getattr(p, "opts", ()))

    select = option("fit", "--select-best")
    assert tuple(select.type.choices) == typing.get_args(
        TrainSettings.model_fields["select_best"].annotation
    )
    cluster = option("sweep", "--cluster")
    assert tuple(cluster.type.choices) == typing.get_args(
        ClusterConfig.model_fields["kind"].annotation
    )
    assert tuple(option("fit", "--model").type.choices) == surrogate_families()
    assert "(default 0.0005)" in option("fit", "--lr").help  # TrainSettings' default, not a copy
    for command in ("simulate", "sweep"):
        assert option(command, "--cluster-config") is not None  # one cluster option set
    # a bound of the model is enforced on the command line too, naming the option
    result = runner.invoke(cli, ["fit", "-d", "x.zarr", "-o", "out", "--epochs", "0"])
    assert result.exit_code == EXIT_BAD_INPUT and "--epochs" in result.output


def test_cell_info_default(runner):
    result = runner.invoke(cli, ["cell", "info"])
    assert result.exit_code == 0, result.output
    assert "default_l5pc.swc" in result.output
    assert "input resistance" in result.output
    assert "longest apical" in result.output


def test_cell_info_json(runner, tmp_path):
    result = runner.invoke(cli, ["cell", "info", "--json", "-m", str(good_swc(tmp_path))])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["segments"]["dendritic"] == info["segments"]["basal"] + info["segments"]["apical"]
    assert -95 < info["resting_potential_mv"]["soma"] < -60
    assert info["input_resistance_mohm"] > 0


def test_cell_info_hay(runner, hay_path):
    result = runner.invoke(cli, ["cell", "info", "--json", "--no-sim", "-m", str(hay_path)])
    info = json.loads(result.output)
    assert info["segments"] == {"dendritic": 639, "basal": 262, "apical": 377, "total": 642}
    assert info["nexus"]["section"] == "apic[50]"
    assert "resting_potential_mv" not in info


def test_missing_morphology_exit_code(runner, tmp_path):
    result = runner.invoke(cli, ["cell", "info", "-m", str(tmp_path / "gone.asc")])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "not found" in result.output


def test_bad_parameter_set_exit_code(runner):
    result = runner.invoke(cli, ["cell", "info", "--no-sim", "-p", "no-such-set"])
    assert result.exit_code == EXIT_BAD_INPUT
    assert "unknown parameter set" in result.output


def test_bad_nexus_exit_code(runner):
    result = runner.invoke(cli, ["cell", "info", "--no-sim", "--nexus", "top"])
    assert result.exit_code == EXIT_BAD_INPUT


def test_cell_step_prints_spikes(runner):
    result = runner.invoke(cli, ["cell", "step", "--amplitude", "0.8", "--duration", "300"])
    assert result.exit_code == 0, result.output
    count = int(result.output.split(":")[1].split("spikes")[0])
    times = [float(t) for t in result.output.split("spike times (ms):")[1].split()]
    assert count == len(times) > 0
    assert all(500.0 <= t <= 805.0 for t in times)


def test_cell_step_rejects_nonsense(runner):
    result = runner.invoke(cli, ["cell", "step", "--duration", "-5"])
    assert result.exit_code == EXIT_BAD_INPUT


def test_mechanisms_info_and_build(runner):
    result = runner.invoke(cli, ["mechanisms", "build"])
    assert result.exit_code == 0, result.output
    assert "libnrnmech" in result.output
    assert "coreneuron mechanisms ready" in result.output
    info = runner.invoke(cli, ["mechanisms", "info"])
    assert "neuron-nrn" in info.output and "coreneuron-nrn" in info.output
    assert "libnrnmech" in info.output


def test_mechanism_build_failure_is_an_environment_problem(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("ELMPIPE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler-elmpipe")
    result = runner.invoke(cli, ["mechanisms", "build"])
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "compiler" in result.output


@pytest.mark.slow
def test_cell_check_runs_every_anchor(runner):
    result = runner.invoke(cli, ["cell", "check", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["step_spikes"]["0.2"] == 0 < report["step_spikes"]["1.0"]
    ca = report["calcium_spike"]
    assert ca["intact"]["plateau_ms"] > ca["ca_blocked"]["plateau_ms"]


def test_run_with_another_cell_gets_its_own_folder_and_title(runner, tmp_path, monkeypatch):
    """`elmpipe run configs/demo.yaml -m my_cell.swc` must not reuse the built-in cell's run
    folder (a dataset holds one cell), and its report must say which cell it is about."""
    from pathlib import Path

    import pipelines.run

    seen = {}

    def capture(config, **kwargs):
        seen["config"] = config
        return {"report": "none"}

    monkeypatch.setattr(pipelines.run, "run_pipeline", capture)
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    cell = good_swc(tmp_path)
    result = runner.invoke(cli, ["run", str(demo), "-m", str(cell)])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert config.out == "runs/demo-cell" and config.name == "demo — cell.swc"
    assert config.cell.morphology == str(cell)
    runner.invoke(cli, ["run", str(demo), "-m", str(cell), "-o", str(tmp_path / "mine")])
    assert seen["config"].out == str(tmp_path / "mine")
