"""Input protocols: which input spike trains each simulation of a dataset receives.

``NeuronIOProtocol`` reproduces the input generator of the NeuronIO dataset (docs/dataset.md,
"Input protocol"): per simulation a rate-holding interval Δ and a smoothing width σ, piecewise
constant per-subtree spike counts per 100 ms, spread over segments by length + 10 µm with a
×U(0.5, 1.5) jitter, Gaussian smoothing with zero padding, and Bernoulli sampling per 1 ms bin.
The later "revision" generator's options (inserted regimes, synchronisation, inhibition removal,
spatial clustering, rejection on output spike count) are switches of the same config, all off by
default so that the defaults reproduce the repository variant.

Simulation k of a dataset is a pure function of (dataset seed, split, k): its generator is seeded
from those numbers alone, so results do not depend on workers or order.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from scipy.signal import fftconvolve

from elmpipe.settings import StrictModel

SUBTREES = ("basal", "apical")

REPOSITORY_INTERVALS_MS = (
    25,
    30,
    35,
    40,
    45,
    55,
    60,
    65,
    70,
    75,
    80,
    85,
    90,
    100,
    150,
    200,
    300,
    450,
)
REPOSITORY_SMOOTHING_MS = (25, 30, 35, 40, 50, 60, 80, 100, 150, 200, 300, 400, 500, 600)


class Range(StrictModel):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.high < self.low:
            raise ValueError(f"range high ({self.high}) is below low ({self.low})")
        return self


class SubtreeRanges(StrictModel):
    basal: Range
    apical: Range


class RegimeOptions(StrictModel):
    """Overwrite ``count`` stretches of the base rate field with independently drawn ones."""

    count: int = Field(0, ge=0, description="inserted regimes per simulation (revision: 5)")
    duration_ms: Range = Range(low=500, high=1500)
    start_margin_ms: float = Field(1510, ge=0, description="starts drawn in [0, T - margin)")
    edge_sigma_ms: float = Field(25, gt=0, description="smoothing across regime edges")
    edge_threshold: float = Field(0.2, gt=0, lt=1, description="unnormalised Gaussian level")


class SynchronizationOptions(StrictModel):
    """With ``probability``, all rates × (1 + depth·sin(2πt/P)), P an integer in [low, high)."""

    probability: float = Field(0.0, ge=0, le=1)
    depth: float = Field(0.6, ge=0, le=1)
    period_ms: Range = Range(low=30, high=200)


class InhibitionRemovalOptions(StrictModel):
    """With ``probability``, inhibition off and excitation × U(low, high)."""

    probability: float = Field(0.0, ge=0, le=1)
    excitation_scale: Range = Range(low=0.1, high=0.5)


class ClusteringOptions(StrictModel):
    """With ``probability``, only segments in a few spatial clusters receive input."""

    probability: float = Field(0.0, ge=0, le=1)
    levels: tuple[int, ...] = Field((2, 4, 8, 16, 32, 64), description="clusters per level")
    max_active_fraction: float = Field(0.4, gt=0, le=1)
    max_active: int = Field(5, ge=1)


class RejectionOptions(StrictModel):
    """Keep or regenerate a simulation by its output spike count (revision generator)."""

    keep_probability_zero_spikes: float = Field(1.0, ge=0, le=1)
    keep_probability_above: float = Field(1.0, ge=0, le=1)
    above_spikes: int = Field(24, ge=0)
    max_output_spikes: int | None = Field(None, ge=0, description="hard cap (None: no cap)")
    max_attempts: int = Field(7, ge=1, description="attempts before keeping the last one")

    @property
    def active(self) -> bool:
        return (
            self.keep_probability_zero_spikes < 1
            or self.keep_probability_above < 1
            or self.max_output_spikes is not None
        )


#: an input scale beyond this is no calibration but a different protocol (a cell needing it is
#: broken: calibration reports that instead)
MAX_INPUT_SCALE = 64.0


class NeuronIOProtocol(StrictModel):
    """The NeuronIO input protocol; defaults reproduce the repository generator."""

    kind: Literal["neuronio"] = "neuronio"
    interval_options_ms: tuple[int, ...] = REPOSITORY_INTERVALS_MS
    smoothing_options_ms: tuple[int, ...] = REPOSITORY_SMOOTHING_MS
    option_jitter_ms: int = Field(20, ge=0, description="int(U(-j, j)) added to Δ and σ")
    excitatory_per_100ms: SubtreeRanges = SubtreeRanges(
        basal=Range(low=0, high=800), apical=Range(low=0, high=800)
    )
    inhibitory_offset_per_100ms: SubtreeRanges = Field(
        SubtreeRanges(basal=Range(low=-600, high=200), apical=Range(low=-600, high=200)),
        description="N_I ~ U(max(0, N_E + low), N_E + high)",
    )
    input_scale: float | Literal["auto"] = Field(
        "auto",
        description="× every subtree's excitatory and inhibitory counts: the cell's input "
        "calibration. 1 is NeuronIO's definition (the Hay cell); 'auto': found for the cell by "
        "simulations.calibration before any simulation (docs/own-cell.md)",
    )
    length_offset_um: float = Field(10.0, ge=0, description="segment weight ∝ length + offset")
    spatial_jitter: Range = Range(low=0.5, high=1.5)
    smoothing_window_sigmas: float = Field(7.0, gt=0, description="window length 1 + this·σ")
    regimes: RegimeOptions = RegimeOptions()
    synchronization: SynchronizationOptions = SynchronizationOptions()
    inhibition_removal: InhibitionRemovalOptions = InhibitionRemovalOptions()
    clustering: ClusteringOptions = ClusteringOptions()
    rejection: RejectionOptions = RejectionOptions()

    @model_validator(mode="after")
    def _options(self) -> NeuronIOProtocol:
        scale = self.input_scale
        if scale != "auto" and not (math.isfinite(scale) and 0 < scale <= MAX_INPUT_SCALE):
            raise ValueError(
                f"input_scale must be 'auto' or a number in (0, {MAX_INPUT_SCALE:g}], got {scale}"
            )
        for name in ("interval_options_ms", "smoothing_options_ms"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must not be empty")
            if min(values) - self.option_jitter_ms < 1:
                raise ValueError(f"{name}: every option minus the jitter must stay ≥ 1 ms")
        return self


class ReplayProtocol(StrictModel):
    """Simulate exactly the inputs of an existing dataset (ours or imported NeuronIO files)."""

    kind: Literal["replay"] = "replay"
    source: str = Field(description="path of the dataset whose inputs are replayed")
    split: str = "test"


Protocol = NeuronIOProtocol | ReplayProtocol


# -- geometry the protocol needs ----------------------------------------------------------------


@dataclass(frozen=True)
class InputLayout:
    """What the generator needs to know about the cell (from its segment table)."""

    region: np.ndarray  # "basal" | "apical" per segment row
    length: np.ndarray  # µm
    xyz: np.ndarray  # (n, 3) µm, segment centres (for spatial clustering)
    clusters: dict[int, np.ndarray] = field(default_factory=dict)  # level → cluster id per row

    @property
    def n_segments(self) -> int:
        return len(self.length)

    @property
    def n_channels(self) -> int:
        return 2 * self.n_segments

    @classmethod
    def from_segment_table(cls, table, levels: tuple[int, ...] = ()) -> InputLayout:
        layout = cls(np.asarray(table.region), np.asarray(table.length), np.asarray(table.xyz))
        for k in levels:
            layout.clusters[k] = spatial_clusters(layout.xyz, k)
        return layout


def spatial_clusters(xyz: np.ndarray, k: int, iterations: int = 50) -> np.ndarray:
    """Deterministic k-means of segment centres (farthest-point start): cluster id per segment."""
    k = min(k, len(xyz))
    centres = [xyz[0]]
    for _ in range(1, k):
        dist = np.min([np.sum((xyz - c) ** 2, axis=1) for c in centres], axis=0)
        centres.append(xyz[int(np.argmax(dist))])
    centres_arr = np.array(centres)
    labels = np.zeros(len(xyz), dtype=np.int64)
    for _ in range(iterations):
        labels = np.argmin(((xyz[:, None, :] - centres_arr[None]) ** 2).sum(-1), axis=1)
        updated = np.array(
            [
                xyz[labels == j].mean(axis=0) if np.any(labels == j) else centres_arr[j]
                for j in range(k)
            ]
        )
        if np.allclose(updated, centres_arr):
            break
        centres_arr = updated
    return labels


# -- generation ---------------------------------------------------------------------------------


@dataclass
class InputDraw:
    """The inputs of one simulation plus the protocol choices made for it."""

    spikes: np.ndarray  # (time, channel) bool, 1 ms bins
    interval_ms: int
    smoothing_ms: int
    flags: dict[str, float] = field(default_factory=dict)


def simulation_rng(seed: int, split: str, index: int, attempt: int = 0) -> np.random.Generator:
    """The random stream of simulation ``index`` of ``split`` (a pure function of its arguments)."""
    words = [int(seed) & 0xFFFFFFFF, zlib.crc32(split.encode()), int(index), int(attempt)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


def _jittered_choice(rng: np.random.Generator, options: tuple[int, ...], jitter: int) -> int:
    value = int(rng.choice(np.asarray(options)))
    # int() truncates toward zero: -19…19, 0 twice as likely, as in the original generator
    return value + int(rng.uniform(-jitter, jitter))


def _gaussian_kernel(sigma: float, window_sigmas: float) -> np.ndarray:
    length = int(1 + window_sigmas * sigma)
    x = np.arange(length) - (length - 1) / 2.0
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _smooth(rates: np.ndarray, sigma: float, window_sigmas: float) -> np.ndarray:
    """Centred convolution along time with zero padding (rates fade at both ends)."""
    kernel = _gaussian_kernel(sigma, window_sigmas)
    smoothed = fftconvolve(rates, kernel[None, :], mode="same", axes=1)
    return np.maximum(smoothed, 0.0)


@dataclass
class _Field:
    excitatory: np.ndarray  # (segments, time) spikes/ms
    inhibitory: np.ndarray
    interval_ms: int
    smoothing_ms: int
    flags: dict[str, float]


def _rate_field(
    protocol: NeuronIOProtocol, layout: InputLayout, duration: int, rng: np.random.Generator
) -> _Field:
    """One full-length excitatory and inhibitory rate field (spikes/ms per segment)."""
    if protocol.input_scale == "auto":
        raise ValueError(
            "the protocol's input_scale is 'auto': calibrate it for the cell first "
            "(simulations.calibration) or give a number"
        )
    scale = float(protocol.input_scale)
    interval = _jittered_choice(rng, protocol.interval_options_ms, protocol.option_jitter_ms)
    sigma = _jittered_choice(rng, protocol.smoothing_options_ms, protocol.option_jitter_ms)
    n_intervals = math.ceil(duration / interval)
    counts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for subtree in SUBTREES:
        exc_range = getattr(protocol.excitatory_per_100ms, subtree)
        offset = getattr(protocol.inhibitory_offset_per_100ms, subtree)
        exc = rng.uniform(exc_range.low, exc_range.high, size=n_intervals)
        inh = rng.uniform(np.maximum(0.0, exc + offset.low), exc + offset.high)
        # drawn unscaled, then scaled: at scale 1 the inputs are NeuronIO's, bit for bit
        counts[subtree] = (exc * scale, inh * scale)
    n = layout.n_segments
    jitter = protocol.spatial_jitter
    spatial_exc = rng.uniform(jitter.low, jitter.high, size=(n, n_intervals))
    spatial_inh = rng.uniform(jitter.low, jitter.high, size=(n, n_intervals))
    coarse_exc = np.zeros((n, n_intervals))
    coarse_inh = np.zeros((n, n_intervals))
    for subtree in SUBTREES:
        rows = layout.region == subtree
        if not np.any(rows):
            continue
        weight = layout.length[rows] + protocol.length_offset_um
        weight = weight / weight.sum()
        exc, inh = counts[subtree]
        coarse_exc[rows] = (exc[None, :] / 100.0) * weight[:, None] * spatial_exc[rows]
        coarse_inh[rows] = (inh[None, :] / 100.0) * weight[:, None] * spatial_inh[rows]
    exc_rates = np.repeat(coarse_exc, interval, axis=1)[:, :duration]
    inh_rates = np.repeat(coarse_inh, interval, axis=1)[:, :duration]
    exc_rates = _smooth(exc_rates, sigma, protocol.smoothing_window_sigmas)
    inh_rates = _smooth(inh_rates, sigma, protocol.smoothing_window_sigmas)
    flags = _apply_options(protocol, layout, exc_rates, inh_rates, rng)
    return _Field(exc_rates, inh_rates, interval, sigma, flags)


def _apply_options(
    protocol: NeuronIOProtocol,
    layout: InputLayout,
    exc: np.ndarray,
    inh: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, float]:
    """The revision generator's per-field options, in place; returns what was chosen."""
    flags: dict[str, float] = {}
    sync = protocol.synchronization
    if sync.probability > 0 and rng.uniform() < sync.probability:
        period = int(rng.integers(int(sync.period_ms.low), int(sync.period_ms.high)))
        t = np.arange(exc.shape[1])
        modulation = 1.0 + sync.depth * np.sin(2 * np.pi * t / period)
        exc *= modulation
        inh *= modulation
        flags["synchronization_period_ms"] = period
    removal = protocol.inhibition_removal
    if removal.probability > 0 and rng.uniform() < removal.probability:
        scale = rng.uniform(removal.excitation_scale.low, removal.excitation_scale.high)
        inh[:] = 0.0
        exc *= scale
        flags["inhibition_removed_excitation_scale"] = float(scale)
    clustering = protocol.clustering
    if clustering.probability > 0 and rng.uniform() < clustering.probability:
        level = int(rng.choice(np.asarray(clustering.levels)))
        labels = layout.clusters.get(level)
        if labels is None:
            labels = spatial_clusters(layout.xyz, level)
        n_clusters = int(labels.max()) + 1
        most = max(1, min(int(clustering.max_active_fraction * n_clusters), clustering.max_active))
        n_active = int(rng.integers(1, most + 1))
        active = rng.choice(n_clusters, size=n_active, replace=False)
        outside = ~np.isin(labels, active)
        exc[outside] = 0.0
        inh[outside] = 0.0
        flags["clusters_active"] = n_active
        flags["cluster_level"] = level
    return flags


def _insert_regimes(
    protocol: NeuronIOProtocol,
    layout: InputLayout,
    base: _Field,
    duration: int,
    rng: np.random.Generator,
) -> None:
    regimes = protocol.regimes
    edges: list[int] = []
    for _ in range(regimes.count):
        high = max(1, int(duration - regimes.start_margin_ms))
        start = int(rng.integers(0, high))
        length = int(rng.integers(int(regimes.duration_ms.low), int(regimes.duration_ms.high)))
        stop = min(duration, start + length)
        regime = _rate_field(protocol, layout, duration, rng)
        base.excitatory[:, start:stop] = regime.excitatory[:, start:stop]
        base.inhibitory[:, start:stop] = regime.inhibitory[:, start:stop]
        edges += [start, stop]
    if not edges:
        return
    # across each edge, replace rates by a smoothed version where an unnormalised Gaussian of
    # width edge_sigma centred on the edge exceeds edge_threshold (≈ ±45 ms for 25 ms, 0.2)
    sigma = regimes.edge_sigma_ms
    half = int(sigma * math.sqrt(2 * math.log(1 / regimes.edge_threshold)))
    smooth_exc = _smooth(base.excitatory, sigma, 7.0)
    smooth_inh = _smooth(base.inhibitory, sigma, 7.0)
    for edge in edges:
        lo, hi = max(0, edge - half), min(duration, edge + half + 1)
        base.excitatory[:, lo:hi] = smooth_exc[:, lo:hi]
        base.inhibitory[:, lo:hi] = smooth_inh[:, lo:hi]
    np.maximum(base.excitatory, 0.0, out=base.excitatory)
    np.maximum(base.inhibitory, 0.0, out=base.inhibitory)
    base.flags["regimes"] = regimes.count


def _sample(rates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One Bernoulli draw per 1 ms bin: spike if U < r·X with X ~ Exp(1)."""
    scaled = rates * rng.exponential(1.0, size=rates.shape)
    return rng.uniform(0.0, 1.0, size=rates.shape) < scaled


def generate_inputs(
    protocol: NeuronIOProtocol, layout: InputLayout, duration_ms: float, rng: np.random.Generator
) -> InputDraw:
    """Draw the input spike trains of one simulation ((time, channel) bool, 1 ms bins)."""
    duration = round(duration_ms)
    base = _rate_field(protocol, layout, duration, rng)
    _insert_regimes(protocol, layout, base, duration, rng)
    exc = _sample(base.excitatory, rng)
    inh = _sample(base.inhibitory, rng)
    spikes = np.concatenate([exc, inh], axis=0).T.copy()
    return InputDraw(spikes, base.interval_ms, base.smoothing_ms, base.flags)
