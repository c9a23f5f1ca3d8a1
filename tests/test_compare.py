"""dataset compare: spikes matched within a tolerance, soma RMSE raw and clipped, a summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from elmpipe.dataset import SimulationRecord, prepare_split, spike_labels, write_block
from elmpipe.dataset.compare import compare, match_spikes
from pipelines.cli import cli
from tests.test_store import N_SEG, make_spec

T = 200


def simulation(spike_times: list[float], soma: np.ndarray, seed: int = 0) -> SimulationRecord:
    rng = np.random.default_rng(seed)
    times = np.array(spike_times, dtype=float)
    return SimulationRecord(
        inputs=rng.random((T, 2 * N_SEG)) < 0.05,
        soma_v=soma.astype(np.float32),
        nexus_v=soma.astype(np.float32),
        spikes=spike_labels(times, T),
        spike_times=times,
        interval_ms=-1,
        smoothing_ms=-1,
        attempts=1,
    )


def store(path, records: list[SimulationRecord], protocol: dict | None = None):
    spec = make_spec(simulation={"duration_ms": float(T), "record_dendrites": False})
    if protocol is not None:
        spec = make_spec(
            simulation={"duration_ms": float(T), "record_dendrites": False}, protocol=protocol
        )
    prepare_split(path, spec, "test", len(records))
    for k, record in enumerate(records):
        write_block(path, "test", k, [record])
    return path


def test_spikes_are_matched_in_time_order_within_the_tolerance():
    matched, missing, extra = match_spikes([10.0, 50.0, 90.0], [10.125, 50.5, 120.0], 0.25)
    assert matched == [(10.0, 10.125)]
    assert missing == [50.0, 90.0] and extra == [50.5, 120.0]
    matched, missing, extra = match_spikes([10.0, 10.5], [10.25], 0.25)
    assert matched == [(10.0, 10.25)] and missing == [10.5] and extra == []
    assert match_spikes([], [], 0.25) == ([], [], [])


@pytest.fixture
def pair(tmp_path):
    base = np.full(T, -70.0)
    spiky = base.copy()
    spiky[100] = 20.0  # spike peaks of different heights: the raw RMSE sees them, not the clipped
    other = base + 0.1
    other[100] = 10.0
    reference = store(
        tmp_path / "a.zarr",
        [simulation([20.0, 100.0, 150.0], spiky), simulation([], base, 1)],
    )
    candidate = store(
        tmp_path / "b.zarr",
        [simulation([20.125, 100.0, 150.5, 180.0], other), simulation([], base, 1)],
    )
    return reference, candidate


def test_compare_reports_every_simulation_and_a_summary(pair):
    report = compare(*pair)
    test = report["splits"]["test"]
    first, second = test["simulations"]
    assert (first["matched"], first["missing"], first["extra"]) == (2, [150.0], [150.5, 180.0])
    assert first["largest_shift_ms"] == pytest.approx(0.125)
    assert first["soma_rmse_clipped_mv"] == pytest.approx(np.sqrt((T - 1) * 0.1**2 / T), rel=1e-4)
    expected_raw = np.sqrt(((T - 1) * 0.1**2 + 10.0**2) / T)
    assert first["soma_rmse_mv"] == pytest.approx(expected_raw, rel=1e-5)
    assert second["matched"] == 0 and second["soma_rmse_mv"] == 0.0
    summary = test["summary"]
    assert summary["simulations"] == 2 and summary["reference_spikes"] == 3
    assert (summary["matched"], summary["missing"], summary["extra"]) == (2, 1, 2)
    # a looser tolerance matches the 0.5 ms shift too
    loose = compare(*pair, tolerance_ms=0.5)["splits"]["test"]["summary"]
    assert (loose["matched"], loose["missing"], loose["extra"]) == (3, 0, 1)


def test_compare_command_prints_a_summary_line_and_json(pair):
    text = CliRunner().invoke(cli, ["dataset", "compare", *map(str, pair), "--split", "test"])
    assert text.exit_code == 0, text.output
    assert "2 of 3 reference spikes matched within 0.25 ms" in text.output
    assert "1 missing, 2 extra" in text.output
    as_json = CliRunner().invoke(cli, ["dataset", "compare", *map(str, pair), "--json"])
    assert json.loads(as_json.output)["splits"]["test"]["summary"]["extra"] == 2


def test_imported_spike_times_are_flagged_as_float16(pair, tmp_path):
    reference, _ = pair
    imported = store(
        tmp_path / "imported.zarr",
        [simulation([20.0], np.full(T, -70.0)), simulation([], np.full(T, -70.0), 1)],
        protocol={"kind": "neuronio-import", "files": [["x.p", 2]]},
    )
    report = compare(imported, reference)
    assert any("float16" in note for note in report["notes"])
    described = CliRunner().invoke(cli, ["dataset", "describe", str(imported)])
    assert "float16" in described.output


def test_different_inputs_are_refused(pair, tmp_path):
    other = tmp_path / "other.zarr"
    spec = make_spec(
        channels={"segment": [0, 1, 0, 1], "kind": ["excitatory"] * 2 + ["inhibitory"] * 2}
    )
    prepare_split(other, spec, "test", 1)
    result = CliRunner().invoke(cli, ["dataset", "compare", str(pair[0]), str(other)])
    assert result.exit_code == 2 and "input channels" in result.output
