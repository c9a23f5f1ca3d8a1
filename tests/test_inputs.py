"""The NeuronIO input protocol: documented statistics, determinism and the revision options."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from simulations.inputs import (
    REPOSITORY_INTERVALS_MS,
    ClusteringOptions,
    InhibitionRemovalOptions,
    InputLayout,
    NeuronIOProtocol,
    RegimeOptions,
    SynchronizationOptions,
    _jittered_choice,
    generate_inputs,
    simulation_rng,
    spatial_clusters,
)

T = 3000


@pytest.fixture(scope="module")
def layout():
    """A synthetic cell: 60 basal and 90 apical segments of varied length, spread in space."""
    rng = np.random.default_rng(0)
    region = np.array(["basal"] * 60 + ["apical"] * 90)
    length = rng.uniform(5, 40, size=150)
    xyz = np.column_stack([rng.normal(0, 100, 150), np.linspace(-200, 1000, 150), np.zeros(150)])
    return InputLayout(region, length, xyz)


def draw(layout, k, protocol=None, duration=T, seed=1):
    return generate_inputs(
        protocol or NeuronIOProtocol(input_scale=1.0),
        layout,
        duration,
        simulation_rng(seed, "train", k),
    )


def test_shape_and_dtype(layout):
    d = draw(layout, 0)
    assert d.spikes.shape == (T, 300)
    assert d.spikes.dtype == bool


def test_pure_function_of_seed_split_index(layout):
    a, b = draw(layout, 3), draw(layout, 3)
    assert np.array_equal(a.spikes, b.spikes)
    assert not np.array_equal(a.spikes, draw(layout, 4).spikes)
    assert not np.array_equal(a.spikes, draw(layout, 3, seed=2).spikes)
    other_split = generate_inputs(
        NeuronIOProtocol(input_scale=1.0), layout, T, simulation_rng(1, "test", 3)
    )
    assert not np.array_equal(a.spikes, other_split.spikes)


def test_jitter_truncates_toward_zero():
    rng = np.random.default_rng(5)
    offsets = np.array([_jittered_choice(rng, (100,), 20) - 100 for _ in range(40000)])
    assert offsets.min() == -19 and offsets.max() == 19
    counts = np.bincount(offsets + 19)
    assert counts[19] == pytest.approx(2 * np.mean(counts[[17, 18, 20, 21]]), rel=0.15)


def test_interval_and_smoothing_ranges(layout):
    draws = [draw(layout, k, duration=200) for k in range(200)]
    intervals = np.array([d.interval_ms for d in draws])
    sigmas = np.array([d.smoothing_ms for d in draws])
    assert intervals.min() >= 6 and intervals.max() <= 469
    assert sigmas.min() >= 6 and sigmas.max() <= 619
    assert len(set(intervals)) > 50


def test_mean_rates_match_the_documented_counts(layout):
    """E[N_E] = 400 and E[N_I] = 312.5 spikes per 100 ms per subtree (away from the edges)."""
    exc, inh = {"basal": [], "apical": []}, {"basal": [], "apical": []}
    n = 150
    for k in range(60):
        spikes = draw(layout, k).spikes[500:-500]
        for subtree in exc:
            rows = np.flatnonzero(layout.region == subtree)
            exc[subtree].append(spikes[:, rows].sum() / len(spikes) * 100)
            inh[subtree].append(spikes[:, n + rows].sum() / len(spikes) * 100)
    for subtree in exc:
        # Bernoulli thinning: P(spike) = r(1 - exp(-1/r)) ≈ r for small r
        assert np.mean(exc[subtree]) == pytest.approx(400, rel=0.08)
        assert np.mean(inh[subtree]) == pytest.approx(312.5, rel=0.08)


def test_spikes_follow_length_plus_10_weighting(layout):
    total = sum(draw(layout, k).spikes[:, :150].sum(axis=0) for k in range(40))
    basal = np.flatnonzero(layout.region == "basal")
    weight = layout.length[basal] + 10
    predicted = weight / weight.sum() * total[basal].sum()
    assert np.corrcoef(total[basal], predicted)[0, 1] > 0.9


def test_zero_padded_smoothing_attenuates_the_edges(layout):
    edge, middle = 0.0, 0.0
    for k in range(80):
        spikes = draw(layout, k).spikes
        edge += spikes[:20].mean()
        middle += spikes[1000:2000].mean()
    assert 0.4 < edge / middle < 0.75  # documented ≈ 57 %


def test_synchronization_modulates_rates(layout):
    protocol = NeuronIOProtocol(
        input_scale=1.0, synchronization=SynchronizationOptions(probability=1.0)
    )
    d = draw(layout, 0, protocol=protocol, duration=6000)
    period = d.flags["synchronization_period_ms"]
    assert 30 <= period < 200
    counts = d.spikes.sum(axis=1).astype(float)
    spectrum = np.abs(np.fft.rfft(counts - counts.mean()))
    freqs = np.fft.rfftfreq(len(counts), d=1.0)
    band = (freqs > 1 / 250) & (freqs < 1 / 20)
    assert abs(1 / freqs[band][np.argmax(spectrum[band])] - period) < 0.1 * period


def test_inhibition_removal(layout):
    protocol = NeuronIOProtocol(
        input_scale=1.0, inhibition_removal=InhibitionRemovalOptions(probability=1.0)
    )
    d = draw(layout, 0, protocol=protocol)
    assert d.spikes[:, 150:].sum() == 0
    assert 0.1 <= d.flags["inhibition_removed_excitation_scale"] <= 0.5
    assert d.spikes[:, :150].sum() > 0


def test_spatial_clustering_silences_other_segments(layout):
    protocol = NeuronIOProtocol(
        input_scale=1.0, clustering=ClusteringOptions(probability=1.0, levels=(8,))
    )
    d = draw(layout, 1, protocol=protocol)
    labels = spatial_clusters(layout.xyz, 8)
    active_segments = d.spikes[:, :150].any(axis=0) | d.spikes[:, 150:].any(axis=0)
    active_clusters = set(labels[active_segments])
    assert 1 <= len(active_clusters) <= d.flags["clusters_active"] <= 3  # ≤ 0.4 · 8
    assert not active_segments[~np.isin(labels, list(active_clusters))].any()


def test_clusters_are_deterministic_and_spatial(layout):
    a, b = spatial_clusters(layout.xyz, 6), spatial_clusters(layout.xyz, 6)
    assert np.array_equal(a, b)
    assert len(set(a)) == 6
    # clusters are compact: mean within-cluster spread well below the cell's spread
    spread = np.mean([layout.xyz[a == j].std(axis=0).sum() for j in range(6)])
    assert spread < 0.5 * layout.xyz.std(axis=0).sum()


def test_inserted_regimes(layout):
    protocol = NeuronIOProtocol(input_scale=1.0, regimes=RegimeOptions(count=5))
    d = draw(layout, 2, protocol=protocol, duration=6000)
    assert d.flags["regimes"] == 5
    plain = draw(layout, 2, duration=6000)
    assert not np.array_equal(d.spikes, plain.spikes)


def test_defaults_are_the_repository_variant():
    protocol = NeuronIOProtocol(input_scale=1.0)
    assert protocol.interval_options_ms == REPOSITORY_INTERVALS_MS
    assert protocol.excitatory_per_100ms.basal.high == 800
    assert protocol.inhibitory_offset_per_100ms.apical.low == -600
    assert protocol.regimes.count == 0
    assert protocol.synchronization.probability == 0
    assert not protocol.rejection.active


@pytest.mark.parametrize(
    "bad",
    [
        {"colour": 1},
        {"interval_options_ms": []},
        {"interval_options_ms": [10]},  # minus jitter < 1 ms
        {"synchronization": {"probability": 1.5}},
        {
            "excitatory_per_100ms": {
                "basal": {"low": 10, "high": 5},
                "apical": {"low": 0, "high": 1},
            }
        },
    ],
)
def test_invalid_protocols(bad):
    with pytest.raises(ValidationError):
        NeuronIOProtocol.model_validate(bad)
