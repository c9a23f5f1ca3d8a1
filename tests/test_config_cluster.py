"""Typed configs and cluster settings: validation errors, shipped configs, job scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cluster import ClusterConfig, jobqueue_cluster
from pipelines.config import ConfigError, SimulateConfig, load_config, with_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("simulate-*.yaml")), ids=lambda p: p.name)
def test_shipped_simulate_configs_are_valid(path):
    config = load_config(path, SimulateConfig)
    assert config.simulation.duration_ms == 6000


def test_unknown_key_and_wrong_type_name_key_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "seed: many\nprotocol:\n  kind: neuronio\n  regimes: {count: -1}\ncluster: {kind: cloud}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, SimulateConfig)
    text = str(info.value)
    assert f"{path}: seed" in text
    assert "protocol.neuronio.regimes.count" in text
    assert "cluster.kind" in text


def test_config_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml", SimulateConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, SimulateConfig)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy, SimulateConfig)


def test_overrides_are_validated():
    config = with_overrides(SimulateConfig(), {"simulation.duration_ms": 300, "seed": None})
    assert config.simulation.duration_ms == 300 and config.seed == 0
    with pytest.raises(ConfigError, match=r"command-line options: simulation\.duration_ms"):
        with_overrides(SimulateConfig(), {"simulation.duration_ms": -1})


def test_replay_protocol_in_config(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("protocol: {kind: replay, source: data.zarr, split: test}\n")
    assert load_config(path, SimulateConfig).protocol.kind == "replay"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"kind": "address"}, "needs an address"),
        ({"adaptive_minimum": 1}, "both"),
        ({"adaptive_minimum": 4, "adaptive_maximum": 2}, "exceeds"),
        ({"workers": 0}, "greater than or equal to 1"),
    ],
)
def test_cluster_validation(bad, message):
    with pytest.raises(ValueError, match=message):
        ClusterConfig(**bad)


def job_script(config: ClusterConfig) -> str:
    cluster = jobqueue_cluster(config)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def test_slurm_job_script_from_our_config():
    config = load_config(CONFIGS / "simulate-slurm.yaml", SimulateConfig).cluster
    script = job_script(config.model_copy(update={"account": "lab42"}))
    assert "#SBATCH -p compute" in script
    assert "#SBATCH -A lab42" in script
    assert "#SBATCH -t 04:00:00" in script
    assert "#SBATCH -n 1" in script and "--cpus-per-task=16" in script
    assert "source ~/elmpipe/.venv/bin/activate" in script
    assert "--nworkers 16" in script and "--nthreads 1" in script


def test_pbs_job_script():
    script = job_script(
        ClusterConfig(kind="pbs", queue="workq", walltime="02:00:00", cores_per_job=8)
    )
    assert "#PBS -q workq" in script
    assert "walltime=02:00:00" in script
    assert "ncpus=8" in script
