"""Training windows drawn from the Zarr dataset per the ELM NeuronIO recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from elmpipe.errors import DatasetError, InputError
from surrogate.data import WindowBatches, prefetch, soma_target


def test_windows_follow_the_recipe(toy_store):
    batches = WindowBatches(toy_store, "train", batch_size=8, window=500, min_start=500, seed=3)
    group = zarr.open_group(str(toy_store), mode="r")["train"]
    sign = group["channel_sign"][:]
    for i in range(5):
        rng = np.random.default_rng([3, i])
        sims = rng.choice(np.arange(24), size=8, replace=False)
        starts = rng.integers(500, 1200 - 500 + 1, 8)
        batch = batches[i]
        assert batch.inputs.shape == (8, 500, 100) and batch.inputs.dtype == torch.float32
        assert len(set(sims.tolist())) == 8  # distinct simulations
        assert np.all(starts >= 500)
        for b, (sim, start) in enumerate(zip(sims, starts, strict=True)):
            raw = group["inputs"][sim, start : start + 500]
            np.testing.assert_array_equal(batch.inputs[b].numpy(), raw * sign)  # signed ±1
            np.testing.assert_array_equal(
                batch.spikes[b].numpy(), group["spikes"][sim, start : start + 500]
            )
            v = group["soma_v"][sim, start : start + 500]
            expected = (np.minimum(v.astype(float), -55) + 67.7) / 10
            np.testing.assert_allclose(batch.soma[b].numpy(), expected, atol=1e-6)
    assert set(np.unique(batches[0].inputs.numpy())) <= {-1.0, 0.0, 1.0}
    assert (batches[0].inputs < 0).any()


def test_soma_target_formula():
    np.testing.assert_allclose(
        soma_target(np.array([-80.0, -67.7, -55.0, 20.0])), [-1.23, 0.0, 1.27, 1.27]
    )


def test_batch_i_is_the_same_whatever_the_loader(toy_store):
    batches = WindowBatches(toy_store, "train", seed=1)
    direct = [batches[i] for i in range(4, 10)]
    for workers in (0, 1, 3):
        loaded = list(prefetch(batches.__getitem__, range(4, 10), workers))
        assert len(loaded) == 6
        for a, b in zip(direct, loaded, strict=True):
            assert torch.equal(a.inputs, b.inputs) and torch.equal(a.soma, b.soma)


def test_event_batches_hold_the_same_inputs(toy_store):
    """The ELM's loader gives events (a sparse tensor); same values, same labels, same windows."""
    dense = WindowBatches(toy_store, "train", seed=5)[2]
    events = WindowBatches(toy_store, "train", seed=5, events=True)[2]
    assert events.inputs.is_sparse and not dense.inputs.is_sparse
    assert dense.inputs.count_nonzero() > 0
    assert torch.equal(events.inputs.to_dense(), dense.inputs)
    assert torch.equal(events.spikes, dense.spikes) and torch.equal(events.soma, dense.soma)


def test_prefetching_stops_cleanly_when_the_consumer_stops():
    made = []

    def make(i):
        made.append(i)
        return i

    stream = prefetch(make, range(1000), 2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # as an exception or Ctrl-C in the training loop would
    assert len(made) < 20  # only a few batches ahead were prepared, not the whole range


def test_only_complete_simulations_are_drawn(tmp_path):
    from tests.toy_dataset import make_toy_dataset

    path = make_toy_dataset(tmp_path / "t.zarr", {"train": 10})
    zarr.open_group(str(path), mode="r+")["train"]["complete"][3] = False
    batches = WindowBatches(path, "train", batch_size=9, seed=0)
    assert 3 not in batches.sims.tolist()
    with pytest.raises(DatasetError, match="9 complete simulations; a batch needs 10"):
        WindowBatches(path, "train", batch_size=10)


def test_clear_errors(tmp_path, toy_store):
    with pytest.raises(InputError, match="not found"):
        WindowBatches(tmp_path / "none.zarr", "train")
    with pytest.raises(DatasetError, match=r"no split 'test'.*train, valid"):
        WindowBatches(toy_store, "test")
    with pytest.raises(DatasetError, match="too short"):
        WindowBatches(toy_store, "train", window=800, min_start=500)
