"""dataset describe: statistics computed with dask.array agree with numpy on the same data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from elmpipe.dataset import SimulationRecord, prepare_split, write_block
from elmpipe.dataset.statistics import describe
from pipelines.cli import cli
from tests.test_store import N_SEG, make_spec

T = 1200


def records(n: int) -> list[SimulationRecord]:
    out = []
    for k in range(n):
        rng = np.random.default_rng(k)
        times = np.sort(rng.uniform(1, T - 1, 3 * k))
        spikes = np.zeros(T, bool)
        spikes[(times - 0.5).astype(int)] = True
        out.append(
            SimulationRecord(
                inputs=rng.random((T, 2 * N_SEG)) < [0.012] * N_SEG + [0.009] * N_SEG,
                soma_v=rng.normal(-67, 5, T).astype(np.float32),
                nexus_v=rng.normal(-60, 5, T).astype(np.float32),
                spikes=spikes,
                spike_times=times,
                interval_ms=50,
                smoothing_ms=60,
                attempts=1,
            )
        )
    return out


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "d.zarr"
    spec = make_spec(simulation={"duration_ms": float(T), "record_dendrites": False})
    prepare_split(path, spec, "train", 11)
    recs = records(10)
    for k, rec in enumerate(recs):
        write_block(path, "train", k, [rec])
    return path, recs  # simulation 10 stays incomplete and must not count


def test_statistics_match_numpy(store):
    path, recs = store
    report = describe(str(path))["splits"]["train"]
    assert report["simulations"] == 11 and report["complete"] == 10
    inputs = np.stack([r.inputs for r in recs])
    exc = inputs[:, :, :N_SEG].mean() * 1000
    inh = inputs[:, :, N_SEG:].mean() * 1000
    assert report["input_rate_hz"]["excitatory"] == pytest.approx(exc)
    assert report["input_rate_hz"]["inhibitory"] == pytest.approx(inh)
    counts = np.array([r.spike_times.size for r in recs])  # 0, 3, …, 27
    assert report["output"]["rate_hz"] == pytest.approx(counts.sum() / (10 * 1.2))
    assert report["output"]["fraction_sims_0_to_24_spikes"] == pytest.approx(np.mean(counts <= 24))
    assert sum(report["output"]["spikes_per_sim_histogram"].values()) == 10
    assert report["output"]["spikes_per_sim_histogram"]["0"] == 1
    soma = np.stack([r.soma_v for r in recs])[:, 500:].astype(float)
    assert report["soma_v_mv"]["after_ms"] == 500
    assert report["soma_v_mv"]["mean"] == pytest.approx(soma.mean(), abs=1e-6)
    assert report["soma_v_mv"]["sd"] == pytest.approx(soma.std(), abs=1e-6)
    assert report["soma_v_mv"]["p50"] == pytest.approx(np.percentile(soma, 50), abs=0.02)
    assert report["soma_v_mv"]["p95"] == pytest.approx(np.percentile(soma, 95), abs=0.02)
    clipped = np.minimum(soma, -55)
    assert report["soma_v_mv"]["clipped_at_-55"]["mean"] == pytest.approx(clipped.mean(), abs=1e-6)


def test_cli_describe(store):
    path, _ = store
    runner = CliRunner()
    text = runner.invoke(cli, ["dataset", "describe", str(path)])
    assert text.exit_code == 0, text.output
    assert "10/11 complete" in text.output and "Hz excitatory" in text.output
    as_json = runner.invoke(cli, ["dataset", "describe", str(path), "--json", "--split", "train"])
    assert json.loads(as_json.output)["splits"]["train"]["complete"] == 10
    missing = runner.invoke(cli, ["dataset", "describe", str(path), "--split", "valid"])
    assert missing.exit_code == 2 and "no split 'valid'" in missing.output
