"""One simulation: input spikes in, somatic and nexus traces and output spikes out.

Settings follow NeuronIO: 6 s, initialisation at -76 mV and celsius 6.3 °C — the NEURON default
the original data were generated at (the channel kinetics are fixed at 34 °C; only the Nernst
potential of calcium sees celsius). Three engines run the same cell (docs/simulation-engines.md):

- ``neuron-cvode``: NEURON's CVode with atol 1e-3, NeuronIO's own setting: the reference;
- ``neuron-fixed``: NEURON's fixed step (dt 0.025 ms, backward Euler unless ``second_order``);
- ``coreneuron``: the cell handed to CoreNEURON each run, mechanisms compiled with vectorised
  maths, fixed step 0.025 ms with second-order (Crank–Nicolson) integration: several times faster
  than the reference, with the same spikes (checked by tests against the reference).

Only what is needed is recorded: soma and nexus voltage at every integrator step (resampled to
8 kHz for spike detection and 1 kHz for storage) and, when asked, dendritic voltages at 1 kHz.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from elmpipe.dataset.schema import (
    DETECTION_PER_MS,
    SPIKE_THRESHOLD_MV,
    detect_spikes,
    spike_labels,
    upgrade_integrator,
)
from simulations._neuron import coreneuron, hoc
from simulations.cell import Cell
from simulations.mechanisms import MechanismBuildError, coreneuron_library
from simulations.synapses import Synapses, SynapseSettings, silenced_at_t0

Engine = Literal["neuron-cvode", "neuron-fixed", "coreneuron"]

#: CoreNEURON needs every network connection to have a delay above dt; input events are
#: therefore queued this much earlier and delivered by connections with this delay (2 steps)
CORENEURON_INPUT_DELAY_MS = 0.05

#: with dendrites recorded, CoreNEURON runs in pieces this long so per-step traces stay small
CORENEURON_BLOCK_MS = 500.0

#: each fixed-step engine's step when none is set (ms). CoreNEURON's (second order) is the
#: largest that reproduces the reference runs to the fidelity bar (docs/fidelity.md: at 0.025 ms
#: the Hay replays miss by 0.375 ms and 0.10 mV clipped RMSE; at 0.0125 ms, ≤ 0.125 ms and
#: ≤ 0.035 mV); neuron-fixed keeps NEURON's default.
DEFAULT_STEP_MS = {"coreneuron": 0.0125, "neuron-fixed": 0.025, "neuron-cvode": 0.025}


class SimulationSettings(BaseModel):
    """How each simulation runs. The defaults are NeuronIO's, except the engine: coreneuron,
    held to NeuronIO's CVode run by tests (``engine="neuron-cvode"`` is that run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration_ms: float = Field(
        6000.0, ge=1, description="simulated time per simulation: whole milliseconds"
    )
    engine: Engine = Field("coreneuron", description="what integrates the cell (module doc)")
    atol: float = Field(1e-3, gt=0, description="CVode absolute tolerance")
    dt_ms: float | None = Field(
        None, gt=0, description="step of the fixed-step engines (ms); None: the engine's default"
    )
    second_order: bool | None = Field(
        None,
        description="Crank-Nicolson (NEURON secondorder=2) for fixed-step engines; None: on for "
        "coreneuron, off (backward Euler) for neuron-fixed",
    )
    v_init_mv: float = -76.0
    celsius: float = Field(6.3, description="°C; NeuronIO ran at NEURON's default 6.3")
    spike_threshold_mv: float = Field(
        SPIKE_THRESHOLD_MV, description="output spike: local max above this"
    )
    record_dendrites: bool = Field(False, description="store every dendritic segment at 1 kHz")
    synapses: SynapseSettings = SynapseSettings()

    @model_validator(mode="before")
    @classmethod
    def _legacy_integrator(cls, data: Any) -> Any:
        """Stores and configs from before engines said ``integrator: cvode | fixed``."""
        return upgrade_integrator(data) if isinstance(data, dict) else data

    @field_validator("duration_ms")
    @classmethod
    def _whole_milliseconds(cls, value: float) -> float:
        if value != round(value):
            raise ValueError(
                f"must be a whole number of milliseconds (the dataset stores one sample per "
                f"ms), got {value:g}"
            )
        return value

    @model_validator(mode="after")
    def _check_steps(self) -> SimulationSettings:
        step = self.step_ms
        if self.engine != "neuron-cvode":
            steps = self.duration_ms / step
            if abs(steps - round(steps)) > 1e-6 or abs(1 / step - round(1 / step)) > 1e-9:
                raise ValueError(
                    f"dt_ms {step} must divide 1 ms and the duration evenly (e.g. 0.025)"
                )
        if self.engine == "coreneuron" and step >= CORENEURON_INPUT_DELAY_MS:
            raise ValueError(f"coreneuron needs dt_ms < {CORENEURON_INPUT_DELAY_MS}")
        return self

    @property
    def step_ms(self) -> float:
        """The fixed step this engine uses (its default unless ``dt_ms`` is set)."""
        return self.dt_ms if self.dt_ms is not None else DEFAULT_STEP_MS[self.engine]

    def resolved(self, *, t0_lockout: bool = False) -> SimulationSettings:
        """These settings with every default that depends on context made explicit, as a
        dataset records them: the engine's step, and the t = 0 lock-out (``t0_lockout`` is
        what the inputs' origin calls for when the setting is left to it)."""
        synapses = self.synapses
        if synapses.t0_lockout is None:
            synapses = synapses.model_copy(update={"t0_lockout": t0_lockout})
        return self.model_copy(update={"dt_ms": self.step_ms, "synapses": synapses})

    @property
    def n_time_bins(self) -> int:
        return round(self.duration_ms)

    @property
    def uses_second_order(self) -> bool:
        if self.engine == "neuron-cvode":
            return False
        return self.engine == "coreneuron" if self.second_order is None else self.second_order


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
        """1 ms spike labels (the dataset schema's rule)."""
        return spike_labels(self.spike_times, n_bins)


def prepare_engine(settings: SimulationSettings) -> None:
    """Build what the engine needs once (per cache, not per simulation), before any run.

    Raises a :class:`MechanismBuildError` that says how to simulate without CoreNEURON.
    """
    if settings.engine == "coreneuron":
        _coreneuron_library()


def _coreneuron_library() -> Path:
    try:
        return coreneuron_library()
    except MechanismBuildError as exc:
        raise MechanismBuildError(
            f"{exc}\nThe CoreNEURON engine is not available here. Simulate without it with "
            "--engine neuron-fixed (or engine: neuron-fixed in the config; fixed step, no "
            "CoreNEURON) or --engine neuron-cvode (NeuronIO's reference run, slowest)."
        ) from exc


class Simulator:
    """A cell, its synapses and its recorders, reused for every simulation a worker runs."""

    def __init__(self, cell: Cell, settings: SimulationSettings | None = None) -> None:
        self.cell = cell
        self.settings = settings or SimulationSettings()
        core = self.settings.engine == "coreneuron"
        # built (once per cache) before anything else, so a failed build fails early and clearly
        self._core_library = _coreneuron_library() if core else None
        self._delay_ms = CORENEURON_INPUT_DELAY_MS if core else 0.0
        self.synapses = Synapses.attached(cell, self.settings.synapses, delay_ms=self._delay_ms)
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
                # CoreNEURON fills only every-step recordings (sampled to 1 kHz block by block)
                vec.record(seg._ref_v) if core else vec.record(seg._ref_v, 1.0)
                self._dend.append(vec)

    @property
    def n_channels(self) -> int:
        return len(self.synapses)

    def run(self, times: np.ndarray, channels: np.ndarray) -> SimulationResult:
        """Simulate with input spikes at ``times`` (ms) on ``channels``."""
        h = hoc()
        s = self.settings
        self.synapses.configure(s.synapses)  # another simulator may share this cell's synapses
        self.synapses.set_delay(self._delay_ms)
        times, channels = np.asarray(times, dtype=float), np.asarray(channels, dtype=np.int64)
        if s.synapses.t0_lockout:
            released = silenced_at_t0(times, channels)
            times, channels = times[released], channels[released]
        self.synapses.set_inputs(times, channels)
        h.celsius = s.celsius
        if s.engine == "neuron-cvode":
            h.cvode_active(1)
            h.CVode().atol(s.atol)
        else:
            h.cvode_active(0)
            h.dt = s.step_ms
            h.steps_per_ms = 1.0 / s.step_ms
        h.secondorder = 2 if s.uses_second_order else 0
        n_low = s.n_time_bins
        if s.engine == "coreneuron":
            dend = self._run_coreneuron()
        else:
            h.finitialize(s.v_init_mv)
            h.continuerun(s.duration_ms)
            dend = [np.array(v)[:n_low] for v in self._dend]
        t = np.array(self._t)
        n_high = round(s.duration_ms * DETECTION_PER_MS)
        t_high = np.arange(n_high) / DETECTION_PER_MS
        t_low = np.arange(n_low, dtype=float)
        soma = np.array(self._soma)
        spikes = detect_spikes(t_high, np.interp(t_high, t, soma), s.spike_threshold_mv)
        return SimulationResult(
            soma_v=np.interp(t_low, t, soma).astype(np.float32),
            nexus_v=np.interp(t_low, t, np.array(self._nexus)).astype(np.float32),
            spike_times=spikes.astype(np.float64),
            dend_v=np.stack(dend, axis=1).astype(np.float32) if dend else None,
        )

    def _run_coreneuron(self) -> list[np.ndarray]:
        """Hand the cell to CoreNEURON for this run; return the dendritic traces at 1 kHz."""
        h = hoc()
        switchboard = coreneuron()
        s = self.settings
        os.environ["CORENEURONLIB"] = str(self._core_library)
        pc = h.ParallelContext()
        switchboard.enable = True
        switchboard.verbose = 0
        try:
            pc.set_maxstep(10)
            h.finitialize(s.v_init_mv)
            if not self._dend:
                pc.psolve(s.duration_ms)
                return []
            # sample step k·steps_per_ms of each block, then empty the per-step recordings
            per_ms = round(1.0 / s.step_ms)
            samples: list[list[np.ndarray]] = [[] for _ in self._dend]
            first_step, t_stop = 0, 0.0
            while t_stop < s.duration_ms:
                t_stop = min(t_stop + CORENEURON_BLOCK_MS, s.duration_ms)
                pc.psolve(t_stop)
                n = len(self._dend[0])
                keep = (np.arange(first_step, first_step + n) % per_ms) == 0
                for store, vec in zip(samples, self._dend, strict=True):
                    store.append(np.array(vec)[keep])
                    vec.resize(0)
                first_step += n
            return [np.concatenate(parts)[: s.n_time_bins] for parts in samples]
        finally:
            switchboard.enable = False

    def run_binary(self, inputs: np.ndarray) -> SimulationResult:
        """Simulate a (time, channel) 0/1 input array (a spike in bin t fires at t ms)."""
        t, c = np.nonzero(inputs)
        return self.run(t.astype(float), c)
