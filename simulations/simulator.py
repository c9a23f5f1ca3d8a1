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
from pydantic import Field, field_validator, model_validator

from elmpipe.dataset.schema import (
    DETECTION_PER_MS,
    SPIKE_THRESHOLD_MV,
    detect_spikes,
    spike_labels,
    upgrade_integrator,
)
from elmpipe.settings import StrictModel
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

#: the step of a new dataset's generated inputs when none is set (pipelines.simulation_stage):
#: a surrogate trained on coreneuron data at 0.025 ms scores as one trained at 0.0125 ms on the
#: same fine-step test data (docs/how-much-data.md, "The step of the training data"), for half
#: the simulation. Replays, and the fine windows of the adaptive step, keep DEFAULT_STEP_MS:
#: they are held to the reference runs.
NEW_DATA_STEP_MS = {"coreneuron": 0.025}


class AdaptiveStep(StrictModel):
    """Spike-adaptive stepping (coreneuron): ``coarse_dt_ms`` away from somatic spikes, the
    engine's fine step (``dt_ms``) around them.

    The fine step is set by the spikes: between them the cell's error at a coarse step is small
    (docs/simulation-engines.md). Where the fine windows go is learnt from a first pass of the
    whole run at a still coarser step (``scout_dt_ms``): every stretch where the soma is above
    ``above_mv``, from ``before_ms`` earlier to ``after_ms`` later. The run proper then switches
    step at the windows' edges (one hand-over to CoreNEURON each), and is redone with wider
    windows if it fires outside them. The threshold is set low (−65 mV) because dendritic
    activity while the soma is still well below spiking is what a coarse step gets wrong.

    ``max_fine_share`` bounds the cost on cells whose soma sits near the threshold under their
    drive (a large cell calibrated to fire as the Hay cell does was above −65 mV for half to
    three quarters of its runs, which then took twice as long): the threshold rises to the scout
    pass's (1 − share) quantile of somatic voltage where that is higher, so the fine step again
    covers the stretches nearest to firing. Off by default (the fidelity tables hold without
    it); the demo and the calibration probe set it.
    """

    coarse_dt_ms: float = Field(0.05, gt=0, description="step away from spikes (ms)")
    scout_dt_ms: float = Field(0.1, gt=0, description="step of the first pass (ms)")
    above_mv: float = Field(-65.0, description="soma above this: fine step")
    before_ms: float = Field(2.0, ge=0, description="fine step starts this long before")
    after_ms: float = Field(5.0, ge=0, description="fine step lasts this long after")
    max_fine_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="raise the threshold so the soma is above it at most this share of the run",
    )


class SimulationSettings(StrictModel):
    """How each simulation runs. The defaults are NeuronIO's, except the engine: coreneuron,
    held to NeuronIO's CVode run by tests (``engine="neuron-cvode"`` is that run)."""

    duration_ms: float = Field(
        6000.0, ge=1, le=3_600_000, description="simulated time per simulation: whole ms"
    )
    engine: Engine = Field("coreneuron", description="what integrates the cell (module doc)")
    atol: float = Field(1e-3, gt=0, description="CVode absolute tolerance")
    dt_ms: float | None = Field(
        None,
        gt=0,
        description="step of the fixed-step engines (ms); None: the engine's default "
        "(a new dataset's generated inputs: NEW_DATA_STEP_MS)",
    )
    second_order: bool | None = Field(
        None,
        description="Crank-Nicolson (NEURON secondorder=2) for fixed-step engines; None: on for "
        "coreneuron, off (backward Euler) for neuron-fixed",
    )
    v_init_mv: float = Field(-76.0, ge=-150, le=50, description="initial voltage (mV)")
    celsius: float = Field(6.3, ge=0, le=45, description="°C; NeuronIO ran at NEURON's default 6.3")
    spike_threshold_mv: float = Field(
        SPIKE_THRESHOLD_MV, description="output spike: local max above this"
    )
    record_dendrites: bool = Field(False, description="store every dendritic segment at 1 kHz")
    adaptive: AdaptiveStep | None = Field(
        None,
        description="coreneuron only: coarse step away from spikes (AdaptiveStep); None: "
        "the fine step throughout",
    )
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
        if self.adaptive is not None:
            if self.engine != "coreneuron":
                raise ValueError(f"adaptive steps need engine coreneuron, not {self.engine}")
            for name in ("coarse_dt_ms", "scout_dt_ms"):
                coarse = getattr(self.adaptive, name)
                ratio = coarse / step
                if (
                    coarse <= step
                    or abs(ratio - round(ratio)) > 1e-6
                    or abs(1 / coarse - round(1 / coarse)) > 1e-9
                ):
                    raise ValueError(
                        f"adaptive.{name} {coarse} must be a multiple of dt_ms {step} above "
                        "it that divides 1 ms (e.g. 0.05)"
                    )
        return self

    @property
    def input_delay_ms(self) -> float:
        """Connection delay of the inputs: CoreNEURON needs one of two steps or more, whatever
        the step it takes."""
        if self.engine != "coreneuron":
            return 0.0
        if self.adaptive is None:
            return CORENEURON_INPUT_DELAY_MS
        a = self.adaptive
        return max(CORENEURON_INPUT_DELAY_MS, 2 * a.coarse_dt_ms, 2 * a.scout_dt_ms)

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


#: an adaptive run is redone with wider fine windows at most this often (then kept as it is)
MAX_WINDOW_PASSES = 3


def outside(spans: list[tuple[float, float]], times: np.ndarray) -> np.ndarray:
    """The ``times`` in none of the (start, stop) ``spans``."""
    for lo, hi in spans:
        times = times[(times < lo) | (times > hi)]
    return times


def merge_spans(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, overlapping or touching spans joined."""
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + 1e-9:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def step_plan(
    windows: list[tuple[float, float]], duration_ms: float, fine_ms: float, coarse_ms: float
) -> list[tuple[float, float]]:
    """(stop ms, step ms) pieces: the fine step inside ``windows``, the coarse one outside."""
    plan: list[tuple[float, float]] = []
    t = 0.0
    for lo, hi in windows:
        if lo > t:
            plan.append((lo, coarse_ms))
        plan.append((hi, fine_ms))
        t = hi
    if t < duration_ms:
        plan.append((duration_ms, coarse_ms))
    return plan


def split_plan(plan: list[tuple[float, float]], block_ms: float) -> list[tuple[float, float]]:
    """The same pieces, none longer than ``block_ms``."""
    pieces: list[tuple[float, float]] = []
    start = 0.0
    for stop, step in plan:
        while stop - start > block_ms + 1e-9:
            start += block_ms
            pieces.append((start, step))
        pieces.append((stop, step))
        start = stop
    return pieces


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
        self._delay_ms = self.settings.input_delay_ms
        self.synapses = Synapses.attached(cell, self.settings.synapses, delay_ms=self._delay_ms)
        h = hoc()
        self._t = h.Vector()
        self._soma = h.Vector()
        self._nexus = h.Vector()
        self._t.record(h._ref_t)
        self._soma.record(cell.soma[0](0.5)._ref_v)
        self._nexus.record(cell.location(cell.nexus)._ref_v)
        self._dend: list = []
        self._window_threshold_mv = (  # the adaptive step's, set by each scout pass
            self.settings.adaptive.above_mv if self.settings.adaptive else 0.0
        )
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
            if s.adaptive is None:
                return self._solve([(s.duration_ms, s.step_ms)])
            windows = self._fine_windows(*self._scout_pass(), [])
            for _ in range(MAX_WINDOW_PASSES):
                dend = self._solve(
                    step_plan(windows, s.duration_ms, s.step_ms, s.adaptive.coarse_dt_ms)
                )
                t, soma = np.array(self._t), np.array(self._soma)
                if not len(outside(windows, t[soma > s.spike_threshold_mv])):
                    break
                # a spike at the coarse step: this run's excursions get fine windows too
                windows = self._fine_windows(t, self._excursion(), windows)
            return dend
        finally:
            switchboard.enable = False

    def _scout_pass(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole run at the scout step: where the soma goes above threshold (ms, mV)."""
        a = self.settings.adaptive
        assert a is not None  # only adaptive runs scout
        h = hoc()
        h.dt = a.scout_dt_ms
        h.finitialize(self.settings.v_init_mv)
        hoc().ParallelContext().psolve(self.settings.duration_ms + h.dt / 2)  # see _solve
        for vec in self._dend:
            vec.resize(0)
        self._window_threshold_mv = a.above_mv
        if a.max_fine_share is not None:
            soma = np.array(self._soma)
            self._window_threshold_mv = max(
                a.above_mv, float(np.quantile(soma, 1.0 - a.max_fine_share))
            )
        return np.array(self._t), self._excursion()

    def _excursion(self) -> np.ndarray:
        """How far above the threshold the soma is at each recorded step (> 0: fine step)."""
        return np.array(self._soma) - self._window_threshold_mv

    def _fine_windows(
        self, t: np.ndarray, excursion: np.ndarray, windows: list[tuple[float, float]]
    ) -> list[tuple[float, float]]:
        """``windows`` and one around every time outside them that the cell is above threshold
        (``excursion`` > 0), from ``before_ms`` earlier to ``after_ms`` later, on the coarse
        step's grid."""
        a = self.settings.adaptive
        assert a is not None  # only adaptive runs have fine windows
        grid = a.coarse_dt_ms
        spans = list(windows)
        for time in outside(windows, t[excursion > 0]):
            if spans and spans[-1][0] <= time <= spans[-1][1]:
                continue  # times come in order: only the span added last can hold this one
            lo = max(0.0, np.floor((time - a.before_ms) / grid) * grid)
            hi = min(self.settings.duration_ms, np.ceil((time + a.after_ms) / grid) * grid)
            spans.append((float(lo), float(hi)))
        return merge_spans(spans)

    def _solve(self, plan: list[tuple[float, float]]) -> list[np.ndarray]:
        """Run from t = 0 through ``plan`` ((stop ms, step ms) pieces), sampling dendrites at
        whole milliseconds piece by piece, so per-step traces never outgrow a piece."""
        h = hoc()
        s = self.settings
        pc = h.ParallelContext()
        if self._dend:  # pieces of at most CORENEURON_BLOCK_MS while dendrites are recorded
            plan = split_plan(plan, CORENEURON_BLOCK_MS)
        h.dt = plan[0][1]
        h.finitialize(s.v_init_mv)
        samples: list[list[np.ndarray]] = [[] for _ in self._dend]
        first = 0
        for stop, step in plan:
            h.dt = step
            # CoreNEURON takes int((stop - t) / dt) steps; t carries rounding from the pieces
            # before, so aim half a step beyond stop to land on it, not one step short
            pc.psolve(stop + step / 2)
            if not self._dend:
                continue
            t = self._t.as_numpy()[first:]  # views: only the kept samples are copied
            keep = np.abs(t - np.round(t)) < step / 4  # the samples at whole milliseconds
            for store, vec in zip(samples, self._dend, strict=True):
                store.append(vec.as_numpy()[keep])
                vec.resize(0)
            first += len(t)
        return [np.concatenate(parts)[: s.n_time_bins] for parts in samples]

    def run_binary(self, inputs: np.ndarray) -> SimulationResult:
        """Simulate a (time, channel) 0/1 input array (a spike in bin t fires at t ms)."""
        t, c = np.nonzero(inputs)
        return self.run(t.astype(float), c)
