"""Synapse placement and the input-channel layout shared by every dataset of a cell.

One excitatory (AmpaNmda) and one inhibitory (GabaA) synapse sit at the centre of every dendritic
segment. Channel c < n carries the excitatory input of segment row c, channel n + c its inhibitory
input (n = number of dendritic segments: 639 → 1278 channels for the Hay cell).

Input events are delivered by one PatternStim that replays (time, channel) vectors prepared in
numpy: no Python runs per event, before or during the run, and the events are re-queued at every
``finitialize``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from elmpipe.errors import InputError
from elmpipe.settings import StrictModel
from simulations._neuron import hoc
from simulations.cell import Cell

EXCITATORY = "excitatory"
INHIBITORY = "inhibitory"


class SynapseError(InputError):
    """A lab's synapse mechanism cannot be used as configured."""


class SynapseSettings(StrictModel):
    """Synapse strengths and release; the defaults are NeuronIO's (docs/mechanisms.md)."""

    excitatory_gmax_us: float = Field(0.0004, gt=0, description="AMPA (and NMDA) peak, µS")
    nmda_ratio: float = Field(1.0, ge=0, description="NMDA peak / AMPA peak")
    inhibitory_gmax_us: float = Field(0.001, gt=0, description="GABA_A peak, µS")
    t0_lockout: bool | None = Field(
        None,
        description="the reference release quirk: a synapse with an input at exactly t = 0 never "
        "releases in that simulation (docs/mechanisms.md). None: on when replaying NeuronIO "
        "data (to reproduce it), as the source when replaying ours, off for new inputs",
    )


def silenced_at_t0(times: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """Mask of the events that still release under the t = 0 lock-out: a channel that receives an
    event at exactly 0 ms loses every event of the simulation (the reference model computes
    its release probability as 0/0 at t = 0 and stays NaN — l5pc-model.md §9)."""
    silenced = np.unique(channels[times == 0.0])
    return ~np.isin(channels, silenced)


@dataclass(frozen=True)
class ChannelTable:
    """Input channels in dataset order: excitatory rows for every segment, then inhibitory."""

    segment: np.ndarray  # int: row of the cell's segment table
    kind: np.ndarray  # str: "excitatory" | "inhibitory"

    def __len__(self) -> int:
        return len(self.segment)

    @classmethod
    def for_segments(cls, n_segments: int) -> ChannelTable:
        rows = np.arange(n_segments)
        return cls(
            segment=np.concatenate([rows, rows]),
            kind=np.array([EXCITATORY] * n_segments + [INHIBITORY] * n_segments),
        )

    def to_dict(self) -> dict[str, list]:
        return {"segment": self.segment.tolist(), "kind": self.kind.tolist()}


class Synapses:
    """The synapses of one cell and the machinery that delivers input spikes to them.

    Build once per cell and reuse for every simulation: :meth:`set_inputs` replaces the spike
    trains; the next ``finitialize`` queues them.
    """

    def __init__(
        self, cell: Cell, settings: SynapseSettings | None = None, *, delay_ms: float = 0.0
    ) -> None:
        h = hoc()
        self.cell = cell
        self.delay_ms = float(delay_ms)
        self.settings = settings or SynapseSettings()
        self.channels = ChannelTable.for_segments(len(cell.segments))
        segments = cell.dendritic_segments()
        self.point_processes: list[Any] = []
        for kind, ours in ((EXCITATORY, "AmpaNmda"), (INHIBITORY, "GabaA")):
            lab = cell.synapse_mechanisms.get(kind)
            mechanism = lab.mechanism if lab else ours
            if not hasattr(h, mechanism):
                raise SynapseError(
                    f"{kind} synapse mechanism {mechanism!r} is not loaded: it must be a "
                    "POINT_PROCESS of the model's mechanisms folder"
                )
            self.point_processes.extend(getattr(h, mechanism)(seg) for seg in segments)
        self._apply_strengths()
        # PatternStim "fires" gid c; a NetCon attached to gid c (weight 1) feeds synapse c. The
        # gids exist only as PatternStim sources, never as cells. The delay is 0 under NEURON;
        # CoreNEURON needs one above dt, so events are then queued that much earlier.
        self._pc = h.ParallelContext()
        self._connections = []
        for gid, syn in enumerate(self.point_processes):
            con = self._pc.gid_connect(gid, syn)
            con.weight[0] = 1.0
            con.delay = self.delay_ms
            self._connections.append(con)
        self._stim = h.PatternStim()
        self._times = h.Vector()
        self._gids = h.Vector()
        self.n_events = 0

    @classmethod
    def attached(
        cls, cell: Cell, settings: SynapseSettings | None = None, *, delay_ms: float = 0.0
    ) -> Synapses:
        """The cell's one set of synapses, made on first use and reconfigured after that.

        A cell carries a single set (one PatternStim): a second set would double every input
        and CoreNEURON accepts only one PatternStim. The cell refers to them weakly: they are
        gone with the last simulator that uses them.
        """
        ref = getattr(cell, "_attached_synapses", None)
        existing = ref() if ref is not None else None
        if existing is None:
            existing = cls(cell, settings, delay_ms=delay_ms)
            cell._attached_synapses = weakref.ref(existing)
        else:
            existing.configure(settings or SynapseSettings())
            existing.set_delay(delay_ms)
        return existing

    def configure(self, settings: SynapseSettings) -> None:
        """Set the synapse strengths (nothing to do when they are already these)."""
        if settings != self.settings:
            self.settings = settings
            self._apply_strengths()

    def _apply_strengths(self) -> None:
        """elmpipe's synapses take the settings' strengths; a lab's, the parameters its model
        names (the settings' strengths are elmpipe's synapses' parameters)."""
        settings = self.settings
        n = len(self.point_processes) // 2
        halves = {EXCITATORY: self.point_processes[:n], INHIBITORY: self.point_processes[n:]}
        ours = {
            EXCITATORY: {"gmax": settings.excitatory_gmax_us, "nmda_ratio": settings.nmda_ratio},
            INHIBITORY: {"gmax": settings.inhibitory_gmax_us},
        }
        for kind, synapses in halves.items():
            lab = self.cell.synapse_mechanisms.get(kind)
            values = lab.parameters if lab else ours[kind]
            for name, value in values.items():
                for syn in synapses:
                    if not hasattr(syn, name):
                        raise SynapseError(
                            f"{kind} synapse mechanism {syn.hname().split('[')[0]} has no "
                            f"parameter {name!r}"
                        )
                    setattr(syn, name, value)

    def set_delay(self, delay_ms: float) -> None:
        """Connection delay; inputs set afterwards are queued this much earlier."""
        if float(delay_ms) != self.delay_ms:
            self.delay_ms = float(delay_ms)
            for con in self._connections:
                con.delay = self.delay_ms

    def __len__(self) -> int:
        return len(self.point_processes)

    def set_inputs(self, times: np.ndarray, channels: np.ndarray) -> None:
        """Replace the input spikes: event i arrives at ``times[i]`` ms on ``channels[i]``."""
        times = np.asarray(times, dtype=float)
        channels = np.asarray(channels, dtype=np.int64)
        if times.shape != channels.shape:
            raise ValueError("times and channels must have the same shape")
        if len(channels) and (channels.min() < 0 or channels.max() >= len(self)):
            raise ValueError(f"input channel out of range 0..{len(self) - 1}")
        order = np.lexsort((channels, times))
        # an event at t arrives at t when queued at t - delay (events at 0 arrive at the delay)
        queued = np.maximum(times[order] - self.delay_ms, 0.0)
        self._times = hoc().Vector(queued)
        self._gids = hoc().Vector(channels[order].astype(float))
        self._stim.play(self._times, self._gids)
        self.n_events = len(times)
