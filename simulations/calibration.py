"""Input calibration: the scale of the NeuronIO protocol's input counts at which a cell fires as
the Hay cell does under NeuronIO.

Why: the protocol's per-subtree input totals are NeuronIO's numbers for the Hay cell. Spread over
another cell's dendrites they give a per-synapse rate inversely proportional to its dendritic
length, and cells differ in excitability, so a lab's reconstruction is silently over- or
under-driven (Hay's own cell3 never fires). One number, ``protocol.input_scale``, multiplies every
excitatory and inhibitory count (the E/I balance and the protocol's shape stay NeuronIO's).

How: a *probe* — :data:`PROBE_SIMULATIONS` simulations of 6 s with random streams that depend on
their index alone, a sample of the protocol's draws stratified by the Hay cell's output — is run at
a scale and its output spikes counted. Every draw that sets the drive's time course (Δ, σ, subtree
counts) comes first from the stream, so every cell and scale sees the same drive (common random
numbers): the count is a smooth, nearly monotone function of the scale, and the comparison with the
Hay cell's count on the same probe needs no large sample — nor, far from the target, the whole
probe (a round stops early once the draws that hold a quarter or half of the Hay cell's output on
it, extrapolated by that output, are 4× or 2× off, or as soon as their own count is past the
tolerance; judged in the run order, whatever order parallel workers finish them in). The search
is a secant in log(count)–log(scale), kept inside a bracket once it has one, over scales rounded
to 3 significant digits.

It starts from the geometric guess — this cell's dendritic length over the Hay cell's, i.e. the
Hay cell's input per µm of dendrite — rounded the same way. On the Hay cell that guess is exactly
1 and the probe's count is the target by construction, so the Hay cell is a fixed point of the
search: it keeps NeuronIO's protocol exactly, and its datasets stay what they were.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from elmpipe.dataset.schema import KEPT_SPIKE_RANGE, REFERENCE_OUTPUT
from elmpipe.errors import InputError
from elmpipe.outputs import write_json_atomic
from elmpipe.settings import StrictModel
from simulations.inputs import MAX_INPUT_SCALE, NeuronIOProtocol, RejectionOptions
from simulations.simulator import AdaptiveStep, SimulationSettings

#: the probe's simulations last this long; their random streams are (PROBE_SEED, "calibration", k)
PROBE_DURATION_MS = 6000.0
PROBE_SEED = 0
PROBE_SPLIT = "calibration"

#: the Hay cell (../shared/data/morphologies/cell1.asc, 5b parameters, NeuronIO's run settings at
#: the probe's step) on draws k = 0 … 23 of the probe's stream at input scale 1: output spikes
#: per 6 s simulation. Measured by ``python benchmarks/calibration.py --reference``.
REFERENCE_DRAW_SPIKES: tuple[int, ...] = (
    7, 0, 0, 5, 0, 34, 2, 11, 14, 26, 0, 7, 2, 11, 7, 0, 0, 20, 1, 10, 4, 8, 3, 0,
)  # fmt: skip
#: simulations in the default probe
PROBE_SIMULATIONS = 8
#: its dendritic length (µm, basal + apical): the geometric guess is the cell's over this
REFERENCE_DENDRITE_LENGTH_UM = 5133.5 + 7440.9

#: the probe integrates fast (the fine step matters for spike timing, not for counts); only these
#: of the user's settings, which change the cell's excitability, are kept
PROBE_KEPT_SETTINGS = ("v_init_mv", "celsius", "spike_threshold_mv", "synapses")

#: the probe's step: the demo's fast setting (spike counts, not times, are what it measures)
PROBE_ADAPTIVE_STEP = AdaptiveStep(coarse_dt_ms=0.1, scout_dt_ms=0.2, max_fine_share=0.25)

#: assumed d log(count) / d log(scale) before two points measure it
DEFAULT_GAIN = 3.0
SIGNIFICANT_DIGITS = 3


class CalibrationError(InputError):
    """The cell cannot be brought to the target by the input scale."""


class CalibrationSettings(StrictModel):
    """How the input scale is found (``calibration:`` in a data-stage or run config)."""

    probe_simulations: int = Field(
        PROBE_SIMULATIONS, ge=1, description="6 s probe simulations per tried scale"
    )
    target_rate_hz: float | None = Field(
        None,
        gt=0,
        le=100,
        description="output rate to reach on the probe; None: the Hay cell's on the same probe",
    )
    tolerance: float = Field(
        0.1, gt=0, lt=1, description="accepted relative difference of the probe's spike count"
    )
    max_rounds: int = Field(8, ge=1, le=30, description="scales tried at most")

    @model_validator(mode="after")
    def _reference_covers_probe(self) -> CalibrationSettings:
        if self.target_rate_hz is None and self.probe_simulations > len(REFERENCE_DRAW_SPIKES):
            raise ValueError(
                f"probe_simulations: the Hay cell's count is known for "
                f"{len(REFERENCE_DRAW_SPIKES)} probe simulations; give target_rate_hz to use more"
            )
        return self

    def draws(self) -> tuple[int, ...]:
        """The probe's simulations: a sample of the draws the Hay cell was measured on,
        stratified by its output there (every k-th of them in order of its spike count), so
        that the probe weighs weak and strong drive as the protocol does — a probe of only the
        most driving draws under-drives cells whose output rises more steeply with the input.
        With a target rate of one's own: the first draws."""
        n = self.probe_simulations
        if self.target_rate_hz is not None:
            return tuple(range(n))
        total = len(REFERENCE_DRAW_SPIKES)
        order = np.argsort(np.asarray(REFERENCE_DRAW_SPIKES), kind="stable")
        return tuple(sorted(int(order[int((i + 0.5) * total / n)]) for i in range(n)))

    def run_order(self) -> list[int]:
        """The draws in the order to run them: where the Hay cell fires most first (they tell
        most, which lets a round far from the target stop early)."""
        if self.target_rate_hz is not None:
            return list(self.draws())
        return sorted(self.draws(), key=lambda k: (-REFERENCE_DRAW_SPIKES[k], k))

    def target_spikes(self) -> float:
        """Output spikes the cell should fire over the whole probe."""
        if self.target_rate_hz is None:
            return float(sum(REFERENCE_DRAW_SPIKES[k] for k in self.draws()))
        return self.target_rate_hz * self.probe_simulations * PROBE_DURATION_MS / 1000.0

    def probe_target(self) -> dict[str, float]:
        """What the cell should do on the probe (the Hay cell's numbers there)."""
        if self.target_rate_hz is None:
            return output_statistics([REFERENCE_DRAW_SPIKES[k] for k in self.draws()])
        return {"rate_hz": self.target_rate_hz, "duration_ms": PROBE_DURATION_MS}

    def dataset_target(self) -> dict[str, float]:
        """What a calibrated cell's datasets should then show over all draws (the Hay cell's
        statistics under NeuronIO), for `describe` and `simulate` to compare with."""
        if self.target_rate_hz is None:
            return dict(REFERENCE_OUTPUT)
        return {"rate_hz": self.target_rate_hz, "duration_ms": PROBE_DURATION_MS}


def probe_settings(settings: SimulationSettings) -> SimulationSettings:
    """The probe's run settings: the user's excitability settings, a fast engine setting."""
    kept = settings.model_dump(include=set(PROBE_KEPT_SETTINGS))
    return SimulationSettings(
        **kept,
        duration_ms=PROBE_DURATION_MS,
        engine="coreneuron",
        dt_ms=0.025,
        adaptive=PROBE_ADAPTIVE_STEP,
    )


def probe_protocol(protocol: NeuronIOProtocol, scale: float) -> NeuronIOProtocol:
    """The user's protocol at ``scale``, without rejection (the drive itself is calibrated)."""
    return protocol.model_copy(update={"input_scale": scale, "rejection": RejectionOptions()})


def geometric_guess(dendrite_length_um: float) -> float:
    """The scale giving the Hay cell's input per µm of dendrite: the protocol spreads fixed
    subtree totals over the cell's length, so a cell twice as long needs twice the input."""
    return round_scale(dendrite_length_um / REFERENCE_DENDRITE_LENGTH_UM)


def round_scale(scale: float) -> float:
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(scale))
    return float(min(MAX_INPUT_SCALE, round(scale, digits)))


def output_statistics(counts: Sequence[int]) -> dict[str, float]:
    """What a set of 6 s simulations did: rate, spikes per simulation, share in 0–24."""
    counts_arr = np.asarray(counts)
    low, high = KEPT_SPIKE_RANGE
    return {
        "rate_hz": float(counts_arr.mean() / (PROBE_DURATION_MS / 1000.0)),
        "spikes_per_simulation": float(counts_arr.mean()),
        "share_in_kept_range": float(np.mean((counts_arr >= low) & (counts_arr <= high))),
        "silent_share": float(np.mean(counts_arr == 0)),
        "duration_ms": PROBE_DURATION_MS,
    }


@dataclass
class Round:
    """One tried scale: the probe's output spikes (extrapolated when it stopped early)."""

    scale: float
    spikes: int
    counts: list[int]  # per probe draw that ran, in draw order
    seconds: float
    complete: bool = True  # False: stopped early, known to be outside the tolerance


@dataclass
class Calibration:
    """A calibration's outcome, as a dataset records it (JSON-ready through :meth:`to_dict`)."""

    input_scale: float
    method: str  # "calibrated", "known", "cached", "given", "store"
    converged: bool = True
    target_spikes: float | None = None  # over the probe
    target: dict[str, float] = field(default_factory=dict)  # for the datasets, over all draws
    probe_target: dict[str, float] = field(default_factory=dict)
    probe_achieved: dict[str, float] = field(default_factory=dict)
    rounds: list[Round] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        rounds = [Round(**r) for r in data.get("rounds", [])]
        return cls(**{**data, "rounds": rounds})

    def with_method(self, method: str) -> Calibration:
        return Calibration.from_dict({**self.to_dict(), "method": method})


def reference_target() -> dict[str, float]:
    """The Hay cell's statistics under NeuronIO: what datasets of a calibrated cell compare with."""
    return dict(REFERENCE_OUTPUT)


def calibration_key(
    cell_fingerprint: str,
    mechanisms: str,
    protocol: NeuronIOProtocol,
    settings: SimulationSettings,
    options: CalibrationSettings,
) -> str:
    """What a calibration depends on; equal keys give equal scales (the search is deterministic)."""
    identity = {
        "cell": cell_fingerprint,
        "mechanisms": mechanisms,
        "protocol": probe_protocol(protocol, 1.0).model_dump(mode="json", exclude={"input_scale"}),
        "probe": probe_settings(settings).model_dump(mode="json"),
        "options": options.model_dump(mode="json"),
        "reference": list(REFERENCE_DRAW_SPIKES),
        "draws": list(options.draws()),
        "seed": [PROBE_SEED, PROBE_SPLIT],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


#: runs the probe at one scale: (scale, enough) → output spikes per probe draw, in the order
#: they finished; it may stop early once ``enough(finished so far)`` says so
ProbeRunner = Callable[[float, Callable[[dict[int, int]], bool]], dict[int, int]]

#: a round may stop once the draws in hold a share of the Hay cell's output on the probe and their
#: output, extrapolated by the Hay cell's on the same draws, is this far (×) from the target: the
#: search only needs the direction. Shares of the *output*, not of the draws: a draw where the Hay
#: cell is silent tells nothing of the scale, however early it finishes
EARLY_STOPS = ((0.25, 4.0), (0.5, 2.0))  # (share of the Hay cell's probe output in, factor off)


class _Search:
    """The scale search over probe counts (pure: no simulation; tested on synthetic cells)."""

    def __init__(self, target: float, tolerance: float, start: float) -> None:
        self.target = target
        self.tolerance = tolerance
        self.next_scale: float | None = round_scale(start)
        self.tried: dict[float, int] = {}
        self.low: float | None = None  # largest scale known to fire too little
        self.high: float | None = None  # smallest scale known to fire too much

    def within(self, spikes: int) -> bool:
        return abs(spikes - self.target) <= max(self.tolerance * self.target, 1.0)

    def record(self, scale: float, spikes: int) -> bool:
        """Take a measurement; True when it is within the tolerance."""
        self.tried[scale] = spikes
        if self.within(spikes):
            self.next_scale = None
            return True
        past_peak = any(s < scale and n > spikes for s, n in self.tried.items())
        if spikes < self.target and not past_peak:
            self.low = scale if self.low is None else max(self.low, scale)
        else:
            self.high = scale if self.high is None else min(self.high, scale)
        if past_peak:
            # less output than a smaller scale gave: past the peak of the cell's response
            # (depolarisation block, saturated input bins). The answer lies on the rising side,
            # below; a lower bound stands only where a still smaller scale fired less.
            assert self.high is not None  # set just above: past the peak, a scale is an upper bound
            self.low = max(
                (
                    s
                    for s, n in self.tried.items()
                    if s < self.high
                    and n < self.target
                    and any(s2 < s and n2 < n for s2, n2 in self.tried.items())
                ),
                default=None,
            )
        self.next_scale = self._propose(scale, spikes)
        return False

    def _gain(self) -> float:
        """d log(count) / d log(scale) from the two firing points nearest the target."""
        firing = sorted((s, n) for s, n in self.tried.items() if n > 0)
        if len(firing) < 2:
            return DEFAULT_GAIN
        nearest = sorted(firing, key=lambda p: abs(math.log(p[1] / self.target)))[:2]
        (s1, n1), (s2, n2) = sorted(nearest)
        if n1 == n2:
            return DEFAULT_GAIN
        return float(np.clip(math.log(n2 / n1) / math.log(s2 / s1), 0.5, 12.0))

    def _propose(self, scale: float, spikes: int) -> float | None:
        if self.high == scale and spikes < self.target and self.low is None:
            proposal = min(self.tried) / 2.0  # past the peak: below everything tried
        elif spikes == 0:
            proposal = scale * 3.0  # silent: far below; no slope to go by
        else:
            step = (self.target / spikes) ** (1.0 / self._gain())
            proposal = scale * float(np.clip(step, 0.25, 4.0))
        if self.low is not None and self.high is not None:
            if not self.low < proposal < self.high:
                proposal = math.sqrt(self.low * self.high)
        proposal = round_scale(min(proposal, MAX_INPUT_SCALE))
        if proposal in self.tried:
            return None  # the grid cannot get closer than what was tried
        return proposal

    def best(self, among: list[float]) -> float:
        """The scale whose count is nearest the target by ratio, not by difference: 3× too many
        spikes is nearer than none (by difference, a silent scale won whenever the best firing
        one was more than 2× over)."""
        return min(among, key=lambda s: abs(math.log((self.tried[s] + 0.5) / (self.target + 0.5))))


class _Extrapolation:
    """A partial probe's total, by the Hay cell's output on the same draws (common random
    numbers make the ratio of the two a good estimate with few draws), and when a round may stop.

    A round is judged on the finished prefixes of its run order only — draws that finished out of
    turn wait for those before them — so that which draws a parallel executor happened to finish
    first cannot change a round's result, and the search stays a function of the cell (equal keys,
    equal scales)."""

    def __init__(self, options: CalibrationSettings) -> None:
        self.draws = options.draws()
        self.order = options.run_order()
        self.target = options.target_spikes()
        self.usable = options.target_rate_hz is None
        self.ceiling = self.target * (1 + options.tolerance)  # above it: too much, whatever follows

    def total(self, partial: dict[int, int]) -> int:
        if len(partial) == len(self.draws) or not self.usable:
            return int(sum(partial.values()))
        reference = sum(REFERENCE_DRAW_SPIKES[k] for k in partial)
        return round(sum(partial.values()) * self.target / max(reference, 1))

    def stop_at(self, finished: dict[int, int]) -> dict[int, int] | None:
        """The shortest finished prefix of the run order whose counts settle the round's
        direction (a partial round to record), or None: none does yet, or every draw is in."""
        prefix: dict[int, int] = {}
        for k in self.order[:-1]:
            if k not in finished:
                return None
            prefix[k] = finished[k]
            if self._far_off(prefix):
                return prefix
        return None

    def _far_off(self, prefix: dict[int, int]) -> bool:
        if sum(prefix.values()) > max(self.ceiling, self.target + 1):
            return True  # counts only add up: the round is already too high
        if not self.usable:
            return False
        covered = sum(REFERENCE_DRAW_SPIKES[k] for k in prefix) / self.target
        ratio = self.total(prefix) / self.target
        return any(
            covered >= share and not 1 / factor <= ratio <= factor for share, factor in EARLY_STOPS
        )

    def enough(self, finished: dict[int, int]) -> bool:
        return self.stop_at(finished) is not None


def _whole_round(run_probe: ProbeRunner, scale: float, options: CalibrationSettings) -> Round:
    """Every probe simulation at ``scale``, none cut short."""
    began = time.perf_counter()
    found = run_probe(scale, lambda partial: False)
    counts = [int(found[k]) for k in options.draws()]
    return Round(scale, sum(counts), counts, time.perf_counter() - began)


def calibrate(
    run_probe: ProbeRunner,
    dendrite_length_um: float,
    options: CalibrationSettings | None = None,
    *,
    on_round: Callable[[Round], None] | None = None,
) -> Calibration:
    """Search the input scale; ``run_probe`` simulates the probe at a scale (any executor)."""
    options = options or CalibrationSettings()
    started = time.perf_counter()
    target = options.target_spikes()
    search = _Search(target, options.tolerance, geometric_guess(dendrite_length_um))
    extrapolation = _Extrapolation(options)
    rounds: list[Round] = []
    converged = False
    while search.next_scale is not None and len(rounds) < options.max_rounds:
        scale = search.next_scale
        began = time.perf_counter()
        found = run_probe(scale, extrapolation.enough)
        judged = extrapolation.stop_at(found) or {k: found[k] for k in options.draws()}
        counts = [int(judged[k]) for k in options.draws() if k in judged]
        complete = len(counts) == len(options.draws())
        spikes = extrapolation.total({k: int(n) for k, n in judged.items()})
        rounds.append(Round(scale, spikes, counts, time.perf_counter() - began, complete))
        if on_round is not None:
            on_round(rounds[-1])
        converged = search.record(scale, spikes) and complete
        if converged:
            break
    if all(r.spikes == 0 for r in rounds):
        raise CalibrationError(
            f"the cell fires no output spike on the calibration probe even at input scale "
            f"{max(search.tried):g} (tried {', '.join(f'{s:g}' for s in search.tried)}): it "
            "cannot be driven like the Hay cell; see `elmpipe cell check` for what is wrong"
        )
    chosen = scale if converged else search.best(list(search.tried))
    if not any(r.scale == chosen and r.complete for r in rounds):
        # the closest scale was cut short: measure it whole, for the record and the statistics
        rounds.append(_whole_round(run_probe, chosen, options))
        if on_round is not None:
            on_round(rounds[-1])
    chosen_counts = next(r.counts for r in rounds if r.scale == chosen and r.complete)
    return Calibration(
        input_scale=chosen,
        method="calibrated",
        converged=converged,
        target_spikes=target,
        target=options.dataset_target(),
        probe_target=options.probe_target(),
        probe_achieved=output_statistics(chosen_counts),
        rounds=rounds,
        probe=_probe_record(options, len(chosen_counts), dendrite_length_um),
        seconds=time.perf_counter() - started,
    )


def _probe_record(options: CalibrationSettings, simulations: int, length_um: float) -> dict:
    """What the probe was, for the calibration's record."""
    return {
        "simulations": simulations,
        "draws": list(options.draws()),
        "duration_ms": PROBE_DURATION_MS,
        "seed": PROBE_SEED,
        "split": PROBE_SPLIT,
        "tolerance": options.tolerance,
        "start": geometric_guess(length_um),
    }


# -- results known in advance and the cache ------------------------------------------------------

KNOWN_CALIBRATIONS = Path(__file__).parent / "data" / "calibrations.json"


def _cache_file(key: str) -> Path:
    from simulations.mechanisms import cache_root

    return cache_root() / "calibrations" / f"{key}.json"


def known_calibration(key: str) -> Calibration | None:
    """A calibration measured before with the same key: shipped with elmpipe (the built-in and
    the Hay cell), or cached on this machine by an earlier run that reached the target."""
    if KNOWN_CALIBRATIONS.is_file():
        shipped = json.loads(KNOWN_CALIBRATIONS.read_text())
        if key in shipped:
            return Calibration.from_dict(shipped[key]).with_method("known")
    path = _cache_file(key)
    try:
        cached = Calibration.from_dict(json.loads(path.read_text())).with_method("cached")
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent, unreadable or from another version: calibrate again
    # one that missed the target is tried again rather than passed on in silence as "calibrated
    # before" (one made before rounds were judged in run order could miss for no cause of the cell)
    return cached if cached.converged else None


def remember_calibration(calibration: Calibration) -> None:
    """Cache a calibration for later runs (best effort: a read-only cache only costs time)."""
    if calibration.key is None:
        return
    path = _cache_file(calibration.key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, calibration.to_dict(), indent=1)
    except OSError:
        pass
