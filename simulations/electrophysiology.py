"""Standard electrophysiology on a cell: rest, input resistance, current steps, single synapses.

These are the sanity anchors a modeller checks before trusting a cell (see docs/cell.md), and what
``elmpipe cell info`` reports. Runs use the data stage's settings: CVode (atol 1e-3),
initialisation at -76 mV, celsius 6.3 °C unless told otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulations._neuron import hoc
from simulations.cell import Cell

V_INIT = -76.0  # mV, NeuronIO's initialisation
CELSIUS = 6.3  # °C, NEURON's default, which NeuronIO ran at (only E_Ca depends on it)
SPIKE_THRESHOLD = -20.0  # mV, somatic crossing that counts as an action potential


@dataclass
class Recording:
    """Traces sampled on a regular grid (``dt`` ms) plus somatic spike times."""

    t: np.ndarray
    traces: dict[str, np.ndarray]
    spike_times: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def at(self, name: str, time: float) -> float:
        return float(np.interp(time, self.t, self.traces[name]))


def run(
    cell: Cell,
    tstop: float,
    *,
    record: dict[str, Any] | None = None,
    dt: float = 0.1,
    v_init: float = V_INIT,
    celsius: float = CELSIUS,
    atol: float = 1e-3,
    setup: Iterable[Any] = (),
) -> Recording:
    """Simulate ``cell`` to ``tstop`` ms with CVode and return traces resampled every ``dt`` ms.

    ``record`` maps names to NEURON references (``seg._ref_v``); soma and nexus voltage are always
    recorded. ``setup`` holds objects (stimuli, synapses) that must live during the run.
    """
    h = hoc()
    h.celsius = celsius
    h.cvode_active(1)  # through stdrun, so that continuerun stops exactly at tstop
    h.CVode().atol(atol)
    refs = {"soma": cell.soma[0](0.5)._ref_v, "nexus": cell.location(cell.nexus)._ref_v}
    refs.update(record or {})
    t_vec = h.Vector().record(h._ref_t)
    vecs = {name: h.Vector().record(ref) for name, ref in refs.items()}
    spikes = h.Vector()
    detector = h.NetCon(cell.soma[0](0.5)._ref_v, None, sec=cell.soma[0])
    detector.threshold = SPIKE_THRESHOLD
    detector.record(spikes)
    keep_alive = list(setup)
    h.finitialize(v_init)
    h.continuerun(tstop)
    # Recording every CVode step is far cheaper than making CVode stop every dt; resample after.
    raw_t = np.array(t_vec)
    grid = np.arange(0.0, tstop + dt / 2, dt)
    traces = {name: np.interp(grid, raw_t, np.array(vec)) for name, vec in vecs.items()}
    del keep_alive, detector
    return Recording(grid, traces, np.array(spikes))


def current_step(
    cell: Cell,
    amplitude: float,
    *,
    delay: float = 500.0,
    duration: float = 1000.0,
    after: float = 200.0,
    location: Any = None,
    **run_kwargs: Any,
) -> Recording:
    """Inject ``amplitude`` nA for ``duration`` ms after ``delay`` ms (at the soma by default)."""
    h = hoc()
    clamp = h.IClamp(location if location is not None else cell.soma[0](0.5))
    clamp.delay, clamp.dur, clamp.amp = delay, duration, amplitude
    rec = run(cell, delay + duration + after, setup=[clamp], **run_kwargs)
    rec.extra.update(amplitude=amplitude, delay=delay, duration=duration)
    return rec


def spikes_during_step(rec: Recording) -> np.ndarray:
    start, stop = rec.extra["delay"], rec.extra["delay"] + rec.extra["duration"]
    return rec.spike_times[(rec.spike_times >= start) & (rec.spike_times < stop + 5.0)]


def resting_potential(cell: Cell, at: float = 1500.0, **run_kwargs: Any) -> tuple[float, float]:
    """(soma, nexus) voltage in mV after relaxing from -76 mV for ``at`` ms without input."""
    rec = run(cell, at, **run_kwargs)
    return rec.at("soma", at), rec.at("nexus", at)


def input_resistance(
    cell: Cell, amplitude: float = -0.05, *, delay: float = 1000.0, duration: float = 1000.0
) -> float:
    """Somatic input resistance (MΩ) from the steady-state response to a small current step."""
    rec = current_step(cell, amplitude, delay=delay, duration=duration, after=0.0)
    before = rec.at("soma", delay - 1.0)
    during = rec.at("soma", delay + duration - 1.0)
    return (during - before) / amplitude


def synaptic_event(
    cell: Cell,
    kind: str,
    location: Any,
    *,
    onset: float = 300.0,
    window: float = 300.0,
    weight: float = 1.0,
    clamp_at: float | None = None,
    n_events: int = 1,
    synapse_params: dict[str, float] | None = None,
    **run_kwargs: Any,
) -> Recording:
    """Deliver ``n_events`` simultaneous events to one synapse of ``kind`` (AmpaNmda or GabaA).

    With ``clamp_at`` the synapse's compartment is voltage-clamped (SEClamp), so the recorded
    conductances show the kinetics alone. ``synapse_params`` overrides the synapse's parameters
    (e.g. ``{"nmda_ratio": 0}`` for AMPA only). Records the synapse's conductances and the local
    voltage.
    """
    h = hoc()
    syn = getattr(h, kind)(location)
    for name, value in (synapse_params or {}).items():
        setattr(syn, name, value)
    source = h.NetStim()
    source.number, source.start, source.interval = 1, onset, 1e9
    connections = []
    for _ in range(n_events):
        con = h.NetCon(source, syn)
        con.weight[0], con.delay = weight, 0.0
        connections.append(con)
    setup: list[Any] = [syn, source, *connections]
    if clamp_at is not None:
        clamp = h.SEClamp(location)
        clamp.dur1, clamp.amp1, clamp.rs = 1e9, clamp_at, 1e-3
        setup.append(clamp)
    names = ["g", "g_AMPA", "g_NMDA", "mgblock"] if kind == "AmpaNmda" else ["g"]
    record = {name: getattr(syn, f"_ref_{name}") for name in names}
    record["v_local"] = location._ref_v
    rec = run(cell, onset + window, record=record, setup=setup, **run_kwargs)
    rec.extra.update(onset=onset, kind=kind)
    return rec


@contextlib.contextmanager
def scaled_conductance(
    cell: Cell, mechanism: str, factor: float, parameter: str = "gbar"
) -> Iterator[None]:
    """Temporarily multiply ``mechanism.parameter`` by ``factor`` wherever it is inserted."""
    saved = []
    for sec in cell.all:
        for seg in sec:
            if hasattr(seg, mechanism):
                mech = getattr(seg, mechanism)
                saved.append((mech, getattr(mech, parameter)))
                setattr(mech, parameter, saved[-1][1] * factor)
    try:
        yield
    finally:
        for mech, value in saved:
            setattr(mech, parameter, value)


@dataclass(frozen=True)
class CalciumResponse:
    plateau_ms: float  # time the nexus stays above -40 mV after the injection ends
    peak_mv: float  # peak nexus voltage
    peak_ica: float  # most negative Ca current density at the nexus (mA/cm2)
    soma_spikes: int


def calcium_response(
    cell: Cell,
    amplitude: float = 1.0,
    duration: float = 10.0,
    *,
    block_calcium: bool = False,
    delay: float = 300.0,
) -> CalciumResponse:
    """Inject a brief current at the nexus, in the Ca hot zone, and measure the Ca spike.

    A regenerative Ca_LVAst/Ca_HVA response outlasts the injection by tens of ms; with calcium
    channels blocked the nexus repolarises within about a millisecond.
    """
    nexus = cell.location(cell.nexus)
    with contextlib.ExitStack() as stack:
        if block_calcium:
            stack.enter_context(scaled_conductance(cell, "Ca_LVAst", 0.0))
            stack.enter_context(scaled_conductance(cell, "Ca_HVA", 0.0))
        rec = current_step(
            cell,
            amplitude,
            delay=delay,
            duration=duration,
            after=150.0,
            location=nexus,
            record={"ica": nexus._ref_ica},
        )
    after = rec.t > delay + duration
    step = rec.t[1] - rec.t[0]
    return CalciumResponse(
        plateau_ms=float(np.sum(rec.traces["nexus"][after] > -40.0) * step),
        peak_mv=float(rec.traces["nexus"].max()),
        peak_ica=float(rec.traces["ica"].min()),
        soma_spikes=len(rec.spike_times),
    )


def nmda_response(cell: Cell, location: Any, n_events: int, *, nmda_ratio: float = 1.0) -> float:
    """Integral (mV·ms) of the local depolarisation after ``n_events`` coactive AMPA+NMDA events."""
    onset = 300.0
    rec = synaptic_event(
        cell,
        "AmpaNmda",
        location,
        onset=onset,
        window=300.0,
        n_events=n_events,
        synapse_params={"nmda_ratio": nmda_ratio},
    )
    after = rec.t > onset
    baseline = rec.at("v_local", onset - 1.0)
    return float(np.trapezoid(rec.traces["v_local"][after] - baseline, rec.t[after]))


@dataclass(frozen=True)
class NmdaResponse:
    n_events: int
    integral_mv_ms: float  # AMPA + NMDA
    ampa_only_mv_ms: float  # the same events with nmda_ratio = 0

    @property
    def nmda_per_event(self) -> float:
        """NMDA-dependent depolarisation per event (mV·ms)."""
        return (self.integral_mv_ms - self.ampa_only_mv_ms) / self.n_events


def nmda_nonlinearity(cell: Cell, location: Any, n_events: int) -> NmdaResponse:
    """Compare ``n_events`` coactive events with and without NMDA at one site.

    The NMDA share per event grows with the number of coactive events as depolarisation relieves
    the Mg block: the supralinearity behind NMDA spikes.
    """
    return NmdaResponse(
        n_events,
        nmda_response(cell, location, n_events),
        nmda_response(cell, location, n_events, nmda_ratio=0.0),
    )


def distal_basal_location(cell: Cell) -> Any:
    """Middle of the basal section whose far end lies farthest from the soma."""
    return max(cell.dend, key=lambda sec: cell.distance(sec(1)))(0.5)
