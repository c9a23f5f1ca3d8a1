"""One simulation: input spikes in, somatic and nexus traces and output spikes out.

Settings follow NeuronIO: 6 s, CVode with atol 1e-3 (or a fixed step), initialisation at -76 mV,
and celsius 6.3 °C — the NEURON default the original data were generated at (the channel kinetics
are fixed at 34 °C; only the Nernst potential of calcium sees celsius).

Only what is needed is recorded: soma and nexus voltage at every integrator step (resampled to
8 kHz for spike detection and 1 kHz for storage) and, when asked, dendritic voltages sampled at
1 kHz directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulations._neuron import hoc
from simulations.cell import Cell
from simulations.synapses import Synapses, SynapseSettings

HIGH_RES_PER_MS = 8  # spike detection grid (8 kHz), as in NeuronIO


class SimulationSettings(BaseModel):
    """How each simulation runs. The defaults are NeuronIO's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_ms: float = Field(6000.0, gt=0, description="simulated time per simulation")
    integrator: Literal["cvode", "fixed"] = "cvode"
    atol: float = Field(1e-3, gt=0, description="CVode absolute tolerance")
    dt_ms: float = Field(0.025, gt=0, description="step of the fixed-step integrator")
    v_init_mv: float = -76.0
    celsius: float = Field(6.3, description="°C; NeuronIO ran at NEURON's default 6.3")
    spike_threshold_mv: float = Field(-25.0, description="output spike: local max above this")
    record_dendrites: bool = Field(False, description="store every dendritic segment at 1 kHz")
    synapses: SynapseSettings = SynapseSettings()

    @property
    def n_time_bins(self) -> int:
        return round(self.duration_ms)


@dataclass
class SimulationResult:
    soma_v: np.ndarray  # (time,) float32, mV, 1 kHz: t = 0, 1, …, T-1 ms
    nexus_v: np.ndarray  # (time,) float32
    spike_times: np.ndarray  # (n,) float64, ms, on the 8 kHz grid
    dend_v: np.ndarray | None = None  # (time, segment) float32

    @property
    def n_spikes(self) -> int:
        return len(self.spike_times)

    def spike_labels(self, n_bins: int) -> np.ndarray:
        """1 ms spike labels: bin int(t - 0.5) for a spike at t ms (NeuronIO's convention)."""
        labels = np.zeros(n_bins, dtype=bool)
        bins = (self.spike_times - 0.5).astype(np.int64)
        labels[bins[(bins >= 0) & (bins < n_bins)]] = True
        return labels


def detect_spikes(t_high: np.ndarray, v_high: np.ndarray, threshold: float) -> np.ndarray:
    """Times of local maxima above ``threshold`` on a regularly sampled trace."""
    v = v_high
    peak = (v[1:-1] > v[:-2]) & (v[1:-1] > v[2:]) & (v[1:-1] > threshold)
    return t_high[1:-1][peak]


class Simulator:
    """A cell, its synapses and its recorders, reused for every simulation a worker runs."""

    def __init__(self, cell: Cell, settings: SimulationSettings | None = None) -> None:
        self.cell = cell
        self.settings = settings or SimulationSettings()
        self.synapses = Synapses(cell, self.settings.synapses)
        h = hoc()
        self._t = h.Vector()
        self._soma = h.Vector()
        self._nexus = h.Vector()
        self._t.record(h._ref_t)
        self._soma.record(cell.soma[0](0.5)._ref_v)
        self._nexus.record(cell.location(cell.nexus)._ref_v)
        self._dend: list = []
        if self.settings.record_dendrites:
            for seg in cell.dendritic_segments():
                vec = h.Vector()
                vec.record(seg._ref_v, 1.0)
                self._dend.append(vec)

    @property
    def n_channels(self) -> int:
        return len(self.synapses)

    def run(self, times: np.ndarray, channels: np.ndarray) -> SimulationResult:
        """Simulate with input spikes at ``times`` (ms) on ``channels``."""
        h = hoc()
        s = self.settings
        self.synapses.set_inputs(times, channels)
        h.celsius = s.celsius
        if s.integrator == "cvode":
            h.cvode_active(1)
            h.CVode().atol(s.atol)
        else:
            h.cvode_active(0)
            h.dt = s.dt_ms
            h.steps_per_ms = 1.0 / s.dt_ms
        h.finitialize(s.v_init_mv)
        h.continuerun(s.duration_ms)
        t = np.array(self._t)
        n_low = s.n_time_bins
        n_high = round(s.duration_ms * HIGH_RES_PER_MS)
        t_high = np.arange(n_high) / HIGH_RES_PER_MS
        t_low = np.arange(n_low, dtype=float)
        soma = np.array(self._soma)
        spikes = detect_spikes(t_high, np.interp(t_high, t, soma), s.spike_threshold_mv)
        dend = None
        if self._dend:
            dend = np.stack([np.array(v)[:n_low] for v in self._dend], axis=1).astype(np.float32)
        return SimulationResult(
            soma_v=np.interp(t_low, t, soma).astype(np.float32),
            nexus_v=np.interp(t_low, t, np.array(self._nexus)).astype(np.float32),
            spike_times=spikes.astype(np.float64),
            dend_v=dend,
        )

    def run_binary(self, inputs: np.ndarray) -> SimulationResult:
        """Simulate a (time, channel) 0/1 input array (a spike in bin t fires at t ms)."""
        t, c = np.nonzero(inputs)
        return self.run(t.astype(float), c)
