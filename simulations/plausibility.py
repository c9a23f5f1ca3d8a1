"""Plausible ranges for a cortical (layer-5) pyramidal cell, and a verdict on each measurement.

``elmpipe cell check`` measures a cell (simulations.electrophysiology) and ends with one verdict
per property: ``ok`` inside the range, ``flag`` outside it, each with its reason. The ranges are
data, here and nowhere else (:data:`RANGES`), each bound with why a value beyond it is implausible
and what it rests on. They are deliberately wide: a flag says "look at this before trusting
datasets of this cell", not "wrong". Every bound leaves the four reference cells inside — the
built-in cell and the three Hay et al. (2011) reconstructions under hay-5b (their values are in
docs/own-cell.md) — and catches what broken cells measured (docs/own-cell.md, "Warnings and what
they mean"). No NEURON here: verdicts are pure functions of numbers, tested without simulating.
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Range:
    """A property's plausible range; ``None`` leaves that side open."""

    label: str  # as printed
    unit: str
    low: float | None
    high: float | None
    below: str  # why a value under ``low`` is implausible
    above: str  # why a value over ``high`` is
    basis: str  # where the bounds come from
    missing: str = "not measured"  # why a property could not be measured, if it can happen

    def bounds(self) -> str:
        low = "" if self.low is None else f"{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}"
        if self.low is None:
            return f"≤ {high} {self.unit}".strip()
        if self.high is None:
            return f"≥ {low} {self.unit}".strip()
        return f"{low}…{high} {self.unit}".strip()


RANGES: dict[str, Range] = {
    "resting_potential_mv": Range(
        "resting potential (soma)",
        "mV",
        -85.0,
        -60.0,
        below="more negative than the K+ reversal (−85 mV in hay-5b): the leak (e_pas −90 mV) "
        "dominates, with too little Ih or other depolarising conductance",
        above="a pyramidal cell resting above −60 mV sits near its firing threshold: too little "
        "leak or K+ conductance, or too much Ih or persistent Na",
        basis="L5 pyramidal cells rest between about −80 and −60 mV in slices; the Hay cells "
        "−81.5…−80.5 mV",
    ),
    "input_resistance_mohm": Range(
        "input resistance",
        "MΩ",
        10.0,
        100.0,
        below="a very large membrane area or far too much leak for one pyramidal cell",
        above="too little leak, or a small cell: L5 pyramidal cells measure some tens of MΩ "
        "(thick-tufted ones about 20–60 MΩ); a surrogate's inputs then over-drive it",
        basis="L5 pyramidal cells about 10–100 MΩ; the Hay cells 19.5–54.7 MΩ",
    ),
    "rheobase_na": Range(
        "rheobase (1 s step)",
        "nA",
        0.05,
        2.5,
        below="fires for tens of pA: hyperexcitable (input resistance too high, leak too low or "
        "Na too dense)",
        above="needs more current than a pyramidal cell (a few hundred pA, the largest L5 cells "
        "up to 1–2 nA): the soma cannot reach threshold (too much leak or K+, too little Na)",
        basis="pyramidal cells about 0.1–1 nA in slices; the Hay cells 0.34–1.64 nA",
        missing="no somatic action potential for 1 s steps up to 3 nA",
    ),
    "rate_at_1na_hz": Range(
        "firing at the 1 nA step",
        "Hz",
        None,
        60.0,
        below="",
        above="regular-spiking pyramidal cells fire some tens of spikes/s at 1 nA: too much Na, "
        "too little K+ or too high an input resistance",
        basis="a few tens of Hz at 1 nA at most; the Hay cells 0–21 Hz",
    ),
    "bap_attenuation": Range(
        "back-propagation, apical/soma amplitude",
        "",
        0.1,
        0.9,
        below="the action potential barely enters the apical dendrite, which in L5 pyramidal "
        "cells supports active back-propagation: too little dendritic Na, or a passive or very "
        "thin apical trunk",
        above="no attenuation 400 µm up the apical dendrite: the dendrite is as excitable as the "
        "soma (dendritic Na far too dense)",
        basis="back-propagating action potentials attenuate along the apical trunk (Stuart & "
        "Sakmann 1994); the Hay cells 0.21–0.68 at 400 µm",
        missing="no somatic action potential for 5 ms pulses up to 7.6 nA",
    ),
    "ca_spike_ms": Range(
        "Ca spike at the nexus, duration",
        "ms",
        10.0,
        80.0,
        below="no regenerative Ca spike after 1 nA for 10 ms at the nexus: thick-tufted L5 cells "
        "have a Ca hot zone near the main bifurcation (Larkum et al. 1999); Ca_LVAst/Ca_HVA are "
        "too weak there, or the nexus lies outside the hot zone (--nexus)",
        above="a plateau far longer than a Ca spike (some tens of ms): the Ca and Ca-activated "
        "K+ conductances are out of balance",
        basis="time above −40 mV after the pulse; the Hay cells 18.5–26.1 ms",
    ),
    "ca_spike_peak_mv": Range(
        "Ca spike at the nexus, peak after the pulse",
        "mV",
        None,
        40.0,
        below="",
        above="a Ca spike peaks well below +40 mV once the injected current is off: a higher "
        "peak means a Na-like regenerative event or Ca conductances far too dense",
        basis="nexus peak from 1 ms after the pulse; the Hay cells +7…+24 mV",
    ),
    "ca_blocked_ms": Range(
        "Ca channels blocked: nexus plateau",
        "ms",
        None,
        5.0,
        below="",
        above="with Ca_LVAst and Ca_HVA blocked, the nexus still stays depolarised after the "
        "pulse: the 'Ca spike' is carried by something else (dendritic Na, Ih, a very high "
        "local input resistance)",
        basis="without Ca channels the nexus repolarises within a millisecond; the Hay cells "
        "0.5–0.7 ms",
    ),
    "ca_blocked_peak_mv": Range(
        "Ca channels blocked: nexus peak",
        "mV",
        None,
        0.0,
        below="",
        above="without Ca channels 1 nA for 10 ms should only depolarise the nexus passively: "
        "a peak above 0 mV means a regenerative response without Ca (dendritic Na) or a far too "
        "high local input resistance (a thin, short tuft)",
        basis="peak including the pulse; the Hay cells −22…−14 mV",
    ),
    "nmda_supralinearity": Range(
        "NMDA per event, 40 vs 1 coactive",
        "×",
        1.5,
        None,
        below="the NMDA-dependent depolarisation per event should grow as coactive inputs "
        "relieve the Mg block (NMDA spikes in basal dendrites, Schiller et al. 2000): the NMDA "
        "conductance or its Mg block is off, or the distal basal site is very thick",
        above="",
        basis="ratio of the NMDA part per event at 40 and at 1 coactive event, distal basal site; "
        "the Hay cells 2.2–4.7",
        missing="no NMDA-dependent depolarisation for a single event",
    ),
}


@dataclass(frozen=True)
class Verdict:
    """One property's verdict: ``ok`` inside its range, ``flag`` outside it (or unmeasured)."""

    property: str  # key of RANGES
    value: float | None
    verdict: Literal["ok", "flag"]
    reason: str

    @builtins.property  # the field `property` above shadows the builtin's name here
    def ok(self) -> bool:
        return self.verdict == "ok"


def judge(key: str, value: float | None) -> Verdict:
    """The verdict on one measurement (a key of :data:`RANGES`)."""
    bounds = RANGES[key]
    if value is None or not math.isfinite(value):
        return Verdict(key, None, "flag", bounds.missing)
    if bounds.low is not None and value < bounds.low:
        return Verdict(key, value, "flag", f"below {bounds.low:g} {bounds.unit}: {bounds.below}")
    if bounds.high is not None and value > bounds.high:
        return Verdict(key, value, "flag", f"above {bounds.high:g} {bounds.unit}: {bounds.above}")
    return Verdict(key, value, "ok", bounds.basis)


def assess(measurements: dict[str, float | None]) -> list[Verdict]:
    """Verdicts on every property of :data:`RANGES` present in ``measurements``, in its order."""
    return [judge(key, measurements[key]) for key in RANGES if key in measurements]


def measurements_of(check: dict) -> dict[str, float | None]:
    """The judged numbers from ``elmpipe cell check``'s report (its JSON without verdicts)."""
    nmda = check["nmda"]["events"]
    single = nmda["1"]["nmda_per_event"]
    bap = check["back_propagation"]
    calcium: dict[str, float | None] = {}
    if check["calcium_spike"] is not None:  # None: no calcium at the nexus, nothing to judge
        ca, blocked = check["calcium_spike"]["intact"], check["calcium_spike"]["ca_blocked"]
        calcium = {
            "ca_spike_ms": ca["plateau_ms"],
            "ca_spike_peak_mv": ca["peak_after_mv"],
            "ca_blocked_ms": blocked["plateau_ms"],
            "ca_blocked_peak_mv": blocked["peak_mv"],
        }
    return {
        "resting_potential_mv": check["resting_potential_mv"]["soma"],
        "input_resistance_mohm": check["input_resistance_mohm"],
        "rheobase_na": check["rheobase_na"],
        "rate_at_1na_hz": check["step_spikes"]["1.0"] / 1.0,  # spikes in the 1 s step
        "bap_attenuation": None if bap is None else bap["attenuation"],
        **calcium,
        "nmda_supralinearity": nmda["40"]["nmda_per_event"] / single if single > 0 else None,
    }
