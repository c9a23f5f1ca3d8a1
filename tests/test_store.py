"""The Zarr dataset schema: creation, validation, completion semantics, xarray round trip."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from elmpipe.dataset import (
    Dataset,
    DatasetError,
    DatasetSpec,
    SimulationRecord,
    open_root,
    prepare_split,
    write_block,
)
from elmpipe.dataset.schema import DATA_ARRAYS, time_chunk
from elmpipe.errors import InputError, OutputPathError
from simulations.inputs import NeuronIOProtocol

N_SEG, T = 5, 40
PROTOCOL = NeuronIOProtocol(input_scale=1.0).model_dump(mode="json")


def make_spec(**changes) -> DatasetSpec:
    fields = {
        "cell": {
            "fingerprint": "abc",
            "segment_table": {
                "x": [0.5] * N_SEG,
                "region": ["basal"] * 2 + ["apical"] * (N_SEG - 2),
                "length": [20.0] * N_SEG,
                "distance": [10.0 * (i + 1) for i in range(N_SEG)],
                "section_index": list(range(N_SEG)),
            },
        },
        "channels": {
            "segment": [*range(N_SEG), *range(N_SEG)],
            "kind": ["excitatory"] * N_SEG + ["inhibitory"] * N_SEG,
        },
        "protocol": PROTOCOL,
        "simulation": {"duration_ms": float(T), "record_dendrites": False},
        "seed": 1,
    }
    fields.update(changes)
    return DatasetSpec(**fields)


def record(k: int, n_spikes: int = 2) -> SimulationRecord:
    rng = np.random.default_rng(k)
    spikes = np.zeros(T, bool)
    times = np.sort(rng.uniform(1, T - 1, n_spikes))
    spikes[(times - 0.5).astype(int)] = True
    return SimulationRecord(
        inputs=rng.random((T, 2 * N_SEG)) < 0.1,
        soma_v=rng.normal(-70, 3, T).astype(np.float32),
        nexus_v=rng.normal(-65, 3, T).astype(np.float32),
        spikes=spikes,
        spike_times=times,
        interval_ms=50 + k,
        smoothing_ms=60 + k,
        attempts=1,
    )


def test_create_write_read(tmp_path):
    path = tmp_path / "d.zarr"
    plan = prepare_split(path, make_spec(), "train", 4)
    assert plan.todo.tolist() == [0, 1, 2, 3]
    assert plan.blocks() == [(0, 1), (1, 2), (2, 3), (3, 4)]
    write_block(path, "train", 1, [record(1)])
    data = Dataset(path)
    assert data.splits == ["train"]
    assert data.split("train").complete_mask.tolist() == [False, True, False, False]
    sim = data.split("train").simulation(1)
    expected = record(1)
    assert np.array_equal(sim["inputs"], expected.inputs)
    assert np.array_equal(sim["soma_v"], expected.soma_v)
    assert np.array_equal(sim["spike_times"], expected.spike_times)
    assert sim["n_spikes"] == 2 and sim["interval_ms"] == 51
    assert set(DATA_ARRAYS) <= set(sim)
    # reopening completes only what is missing
    assert prepare_split(path, make_spec(), "train", 4).todo.tolist() == [0, 2, 3]


def test_chunks_compression_and_dimensions(tmp_path):
    path = tmp_path / "d.zarr"
    prepare_split(path, make_spec(), "train", 6, sims_per_chunk=2)
    group = zarr.open_group(str(path), mode="r")["train"]
    assert group["inputs"].shards == (2, T, 2 * N_SEG)  # one file per 2 simulations
    assert group["inputs"].chunks == (1, T, 2 * N_SEG)
    assert group["inputs"].metadata.dimension_names == ("sim", "time", "channel")
    assert group["inputs"].dtype == np.bool_
    assert group["complete"].chunks == (1,)
    assert group["inputs"].compressors  # compressed
    plan = prepare_split(path, make_spec(), "train", 6, sims_per_chunk=2)
    assert plan.blocks() == [(0, 2), (2, 4), (4, 6)]


def test_time_chunk_divides_the_duration():
    assert time_chunk(6000) == 500
    assert time_chunk(2400) == 480
    assert time_chunk(40) == 40
    assert time_chunk(7001) == 7001  # prime: no divisor near 500, one chunk
    for n in (1000, 2999, 6000, 12345):
        assert n % time_chunk(n) == 0


def test_long_runs_are_sharded_into_inner_time_chunks(tmp_path):
    spec = make_spec(simulation={"duration_ms": 1200.0, "record_dendrites": False})
    path = tmp_path / "d.zarr"
    prepare_split(path, spec, "train", 2)
    group = zarr.open_group(str(path), mode="r")["train"]
    n_time = group["inputs"].shape[1]
    assert group["inputs"].shards == (1, n_time, 2 * N_SEG)
    assert group["inputs"].chunks == (1, time_chunk(n_time), 2 * N_SEG)


def test_partial_chunk_is_redone_whole(tmp_path):
    path = tmp_path / "d.zarr"
    prepare_split(path, make_spec(), "train", 4, sims_per_chunk=2)
    group = zarr.open_group(str(path), mode="r+")["train"]
    group["complete"][2] = True  # as if a task died between two completion flags
    plan = prepare_split(path, make_spec(), "train", 4, sims_per_chunk=2)
    assert plan.blocks() == [(0, 2), (2, 4)]
    write_block(path, "train", 2, [record(2), record(3)])
    assert Dataset(path).split("train").complete_mask.tolist() == [False, False, True, True]


def test_split_grows(tmp_path):
    path = tmp_path / "d.zarr"
    prepare_split(path, make_spec(), "train", 2)
    write_block(path, "train", 0, [record(0)])
    plan = prepare_split(path, make_spec(), "train", 5)
    assert plan.todo.tolist() == [1, 2, 3, 4]
    assert Dataset(path).split("train").n_sims == 5
    assert Dataset(path).split("train").complete_mask[0]


def test_xarray_round_trip(tmp_path):
    xr = pytest.importorskip("xarray")
    path = tmp_path / "d.zarr"
    prepare_split(path, make_spec(), "test", 2)
    write_block(path, "test", 0, [record(0)])
    write_block(path, "test", 1, [record(1)])
    ds = xr.open_zarr(path, group="test", consolidated=False)
    assert ds["inputs"].dims == ("sim", "time", "channel")
    assert ds["soma_v"].dims == ("sim", "time")
    assert "channel_sign" in ds["inputs"].coords
    assert ds["channel_sign"].values.tolist() == [1] * N_SEG + [-1] * N_SEG
    assert ds["time"].values[:3].tolist() == [0.0, 1.0, 2.0]
    np.testing.assert_array_equal(ds["soma_v"].values[1], record(1).soma_v)
    np.testing.assert_array_equal(ds["inputs"].values[0], record(0).inputs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 2}, "seed"),
        ({"cell": {"fingerprint": "other"}}, "cell"),
        ({"protocol": {**PROTOCOL, "option_jitter_ms": 10}}, "option_jitter_ms"),
        ({"simulation": {"duration_ms": 80.0, "record_dendrites": False}}, "duration_ms"),
    ],
)
def test_incompatible_store_is_refused_untouched(tmp_path, change, message):
    path = tmp_path / "d.zarr"
    prepare_split(path, make_spec(), "train", 2)
    write_block(path, "train", 0, [record(0)])
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    with pytest.raises(DatasetError, match=message):
        prepare_split(path, make_spec(**change), "train", 3)
    after = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    assert before == after


def with_mechanisms(sha256: str) -> DatasetSpec:
    return make_spec(cell={**make_spec().cell, "mechanisms_sha256": sha256})


def test_a_store_is_not_continued_by_changed_mechanisms(tmp_path):
    path = tmp_path / "d.zarr"
    prepare_split(path, with_mechanisms("old"), "train", 2)
    write_block(path, "train", 0, [record(0)])
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    with pytest.raises(DatasetError, match=r"mechanisms .* changed since the store was started"):
        prepare_split(path, with_mechanisms("new"), "train", 3)
    assert before == {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    prepare_split(path, with_mechanisms("old"), "train", 3)  # the same mechanisms go on


def test_stores_from_before_mechanisms_were_recorded_go_on(tmp_path):
    path = tmp_path / "d.zarr"
    prepare_split(path, make_spec(), "train", 2)  # no mechanisms hash recorded
    write_block(path, "train", 0, [record(0)])
    prepare_split(path, with_mechanisms("any"), "train", 3)
    assert Dataset(path).split("train").n_sims == 3


def test_stores_from_before_adaptive_steps_go_on_and_refuse_them(tmp_path):
    from simulations.simulator import AdaptiveStep, SimulationSettings

    path = tmp_path / "d.zarr"
    today = SimulationSettings(duration_ms=float(T)).model_dump(mode="json")
    before = {k: v for k, v in today.items() if k != "adaptive"}  # written before the setting
    prepare_split(path, make_spec(simulation=before), "train", 2)
    write_block(path, "train", 0, [record(0)])
    prepare_split(path, make_spec(simulation=today), "train", 3)  # the same runs: goes on
    adaptive = SimulationSettings(duration_ms=float(T), adaptive=AdaptiveStep())
    with pytest.raises(DatasetError, match="adaptive"):
        prepare_split(path, make_spec(simulation=adaptive.model_dump(mode="json")), "train", 4)
    assert Dataset(path).split("train").n_sims == 3


@pytest.mark.parametrize(
    ("split", "n", "message"),
    [("train/x", 2, "invalid split name"), ("", 2, "invalid split name"), ("train", 0, "positive")],
)
def test_bad_split_or_count(tmp_path, split, n, message):
    with pytest.raises(DatasetError, match=message):
        prepare_split(tmp_path / "d.zarr", make_spec(), split, n)
    assert not (tmp_path / "d.zarr").exists()


def test_refuses_foreign_folder_and_file(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("keep me")
    with pytest.raises(OutputPathError, match="not a Zarr dataset"):
        prepare_split(folder, make_spec(), "train", 1)
    assert (folder / "todo.txt").read_text() == "keep me"
    file = tmp_path / "file.zarr"
    file.write_text("x")
    with pytest.raises(OutputPathError, match="is a file"):
        prepare_split(file, make_spec(), "train", 1)


def test_missing_parents_are_made_and_a_full_disk_refused(tmp_path, monkeypatch):
    plan = prepare_split(tmp_path / "new" / "folder" / "d.zarr", make_spec(), "train", 1)
    assert plan.todo.tolist() == [0]

    class Usage:
        free = 10

    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(InputError, match="not enough space"):
        prepare_split(tmp_path / "d.zarr", make_spec(), "train", 100)
    assert not (tmp_path / "d.zarr").exists()


def test_read_only_target():
    target = "/proc/elmpipe-test.zarr"  # procfs refuses new files, even to root
    with pytest.raises(OutputPathError, match="cannot write"):
        prepare_split(target, make_spec(), "train", 1)


def test_corrupt_or_foreign_stores(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Dataset(tmp_path / "missing.zarr")
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w")
    with pytest.raises(DatasetError, match="not an elmpipe dataset"):
        Dataset(plain)
    path = tmp_path / "d.zarr"
    prepare_split(path, make_spec(), "train", 1)
    (path / "zarr.json").write_text("{ not json")
    with pytest.raises(DatasetError, match="not a readable Zarr"):
        open_root(path)


def test_unknown_split(tmp_path):
    path = tmp_path / "d.zarr"
    prepare_split(path, make_spec(), "train", 1)
    with pytest.raises(DatasetError, match=r"no split 'valid'.*train"):
        Dataset(path).split("valid")


def test_two_writers_creating_one_store_at_once_both_succeed(tmp_path):
    """Two `simulate` runs started together on a new store (a row of bad-input-cases.md: one
    died with `Directory not empty`, or removed the split the other was still creating)."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "d.zarr"
    with ThreadPoolExecutor(4) as pool:
        plans = list(pool.map(lambda _: prepare_split(path, make_spec(), "train", 3), range(4)))
    assert all(plan.todo.tolist() == [0, 1, 2] for plan in plans)
    assert Dataset(path).split("train").n_sims == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no copy left behind
