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


def fires(
    cell: Cell,
    amplitude: float,
    *,
    delay: float = 500.0,
    duration: float = 1000.0,
    celsius: float = CELSIUS,
    chunk: float = 25.0,
) -> bool:
    """Does a somatic step of ``amplitude`` nA (as :func:`current_step`'s) evoke a spike?

    The run stops at the first spike, so a firing step costs no more than a silent one: what a
    rheobase search needs, where CVode would otherwise follow every spike of a strong step.
    """
    h = hoc()
    h.celsius = celsius
    h.cvode_active(1)
    h.CVode().atol(1e-3)
    clamp = h.IClamp(cell.soma[0](0.5))
    clamp.delay, clamp.dur, clamp.amp = delay, duration, amplitude
    spikes = h.Vector()
    detector = h.NetCon(cell.soma[0](0.5)._ref_v, None, sec=cell.soma[0])
    detector.threshold = SPIKE_THRESHOLD
    detector.record(spikes)
    h.finitialize(V_INIT)
    stop = delay + duration + 5.0  # as spikes_during_step counts them
    while h.t < stop and not any(delay <= t < stop for t in spikes):
        h.continuerun(min(h.t + chunk, stop))
    del detector, clamp
    return any(delay <= t < stop for t in spikes)


def rheobase(
    cell: Cell,
    known: dict[float, int] | None = None,
    *,
    ceiling: float = 3.0,
    resolution: float = 0.02,
) -> float | None:
    """Smallest 1 s somatic step (nA) that evokes an action potential, by bisection.

    ``known`` maps amplitudes already stepped (``step_counts``) to their spike counts, to
    bracket the search without running them again. Above them 1.5, 2 and ``ceiling`` nA are
    tried; None when nothing up to ``ceiling`` fires. The answer is the smallest amplitude seen
    to fire, within ``resolution`` nA of the highest seen silent: four more steps from the
    0.2 nA grid of ``elmpipe cell check``, each stopped at its first spike (:func:`fires`).
    """
    seen = {a: n > 0 for a, n in (known or {}).items()}

    def test(amplitude: float) -> bool:
        if amplitude not in seen:
            seen[amplitude] = fires(cell, amplitude)
        return seen[amplitude]

    for amplitude in (a for a in (1.5, 2.0, ceiling) if a <= ceiling):
        if any(seen.values()):
            break
        if amplitude > max(seen, default=0.0):
            test(amplitude)
    if not any(seen.values()):
        return None
    high = min(a for a, fired in seen.items() if fired)
    low = max((a for a, fired in seen.items() if not fired and a < high), default=0.0)
    while high - low > resolution:
        middle = (low + high) / 2
        low, high = (low, middle) if test(middle) else (middle, high)
    return high


def step_counts(cell: Cell, amplitudes: Iterable[float]) -> dict[float, int]:
    """Action potentials during 1 s somatic steps of each amplitude (nA)."""
    return {a: len(spikes_during_step(current_step(cell, a))) for a in amplitudes}


#: where back-propagation is measured: a fixed path distance on the main apical dendrite,
#: proximal to the Ca hot zone (585-890 um on the Hay cells), so that a Ca spike the action
#: potential may trigger there does not pass for the action potential itself
BAP_DISTANCE_UM = 400.0


def apical_location(cell: Cell, distance: float) -> Any:
    """The segment of the main apical path whose centre lies nearest ``distance`` um from the
    soma (the path's far end on a cell whose apical dendrite is shorter)."""
    segments = [seg for sec in cell.main_apical_path() for seg in sec]
    return min(segments, key=lambda seg: abs(cell.distance(seg) - distance))


@dataclass(frozen=True)
class BackPropagation:
    """A somatic action potential and what of it reaches the apical dendrite."""

    pulse_na: float  # the pulse that evoked it (``duration`` ms at the soma)
    soma_spikes: int
    soma_amplitude_mv: float  # peak above the voltage just before the pulse
    apical_amplitude_mv: float  # the same at the apical site
    apical_distance_um: float  # the site's path distance from the soma

    @property
    def attenuation(self) -> float:
        """Apical amplitude over soma amplitude (1: no attenuation)."""
        return self.apical_amplitude_mv / self.soma_amplitude_mv


def back_propagation(
    cell: Cell,
    amplitudes: Iterable[float] = (1.9, 3.8, 7.6),
    *,
    distance: float = BAP_DISTANCE_UM,
    duration: float = 5.0,
    delay: float = 300.0,
    window: float = 3.0,
) -> BackPropagation | None:
    """Evoke an action potential by a brief somatic pulse; measure it ``distance`` um up the
    main apical dendrite.

    The pulse lasts ``duration`` ms at the first of ``amplitudes`` nA that evokes a spike (Hay
    et al.'s bAP protocol: 1.9 nA for 5 ms); amplitudes are peaks above the voltage before the
    pulse, up to ``window`` ms after the first somatic spike, so later spikes or a dendritic Ca
    spike are not counted. None when no pulse evokes a spike.
    """
    site = apical_location(cell, distance)
    for amplitude in amplitudes:
        rec = current_step(
            cell,
            amplitude,
            delay=delay,
            duration=duration,
            after=20.0,
            dt=0.025,
            record={"apical": site._ref_v},
        )
        if len(rec.spike_times):
            break
    else:
        return None
    during = (rec.t >= delay) & (rec.t <= rec.spike_times[0] + window)
    soma0, apical0 = rec.at("soma", delay - 1.0), rec.at("apical", delay - 1.0)
    return BackPropagation(
        pulse_na=float(amplitude),
        soma_spikes=len(rec.spike_times),
        soma_amplitude_mv=float(rec.traces["soma"][during].max() - soma0),
        apical_amplitude_mv=float(rec.traces["apical"][during].max() - apical0),
        apical_distance_um=cell.distance(site),
    )


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
    peak_mv: float  # peak nexus voltage, the injection's own depolarisation included
    peak_ica: float  # most negative Ca current density at the nexus (mA/cm2)
    soma_spikes: int
    #: peak nexus voltage from 1 ms after the injection ends: what the cell's own currents hold
    #: once the injected current (some 20 mV of the peak on the Hay cell) and its capacitive
    #: tail are gone
    peak_after_mv: float = float("nan")


#: the peak-conductance parameter names of channel mechanisms, in the libraries labs use
CONDUCTANCE_PARAMETERS = ("gbar", "gCabar", "gcabar", "gmax")


def calcium_channels(cell: Cell) -> list[tuple[str, str]]:
    """(mechanism, conductance parameter) of the calcium channels at the nexus: mechanisms named
    Ca… (any case; Hay's Ca_HVA and Ca_LVAst, and their kin in lab models) that have a
    conductance. Calcium buffers (CaDynamics…) have none and are left alone."""
    found = []
    for mech in cell.location(cell.nexus):
        name = mech.name()
        if name.lower().startswith("ca"):
            parameter = next((p for p in CONDUCTANCE_PARAMETERS if hasattr(mech, p)), None)
            if parameter is not None:
                found.append((name, parameter))
    return found


def has_calcium_at_nexus(cell: Cell) -> bool:
    """Whether the nexus carries a calcium current (a lab's model may have none there)."""
    from simulations._neuron import hoc

    return bool(hoc().ismembrane("ca_ion", sec=cell.location(cell.nexus).sec))


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
            for mechanism, parameter in calcium_channels(cell):
                stack.enter_context(scaled_conductance(cell, mechanism, 0.0, parameter))
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
        peak_after_mv=float(rec.traces["nexus"][rec.t >= delay + duration + 1.0].max()),
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
