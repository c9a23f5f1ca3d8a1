"""The original NeuronIO pickle files: read them safely, convert them, and write our data in them.

A NeuronIO file holds ``{'Params': {...}, 'Results': {'listOfSingleSimulationDicts': [...]}}``
with numpy arrays inside (docs/dataset.md, "NeuronIO files"). Those files come from strangers,
so they are read with :class:`SafeUnpickler`, which admits only the numpy types the format needs:
a crafted file cannot run code. Files are written in the layout of the later ("Kaggle") NeuronIO
files so that code written for NeuronIO — ELM's loader among it — reads our simulations.
"""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from elmpipe.dataset import (
    DETECTION_PER_MS,
    Dataset,
    SimulationRecord,
    spike_labels,
    write_block,
)
from elmpipe.errors import InputError
from elmpipe.outputs import atomic_write
from elmpipe.safe_pickle import SafeUnpickler, UnsafePickleError


class NeuronIOFormatError(InputError):
    """A file is not a (safe, well-formed) NeuronIO pickle."""


def load_pickle(path: str | Path) -> dict[str, Any]:
    """Read a NeuronIO file (Python 2 or 3 pickle) without executing anything it names."""
    path = Path(path)
    data = path.read_bytes()
    last_error: Exception | None = None
    for encoding in ("ASCII", "latin1"):  # Python 2 files need latin1 for numpy's byte strings
        try:
            loaded = SafeUnpickler(io.BytesIO(data), encoding=encoding).load()
            break
        except UnsafePickleError as exc:
            raise NeuronIOFormatError(f"{path}: {exc}") from None
        except pickle.UnpicklingError as exc:
            last_error = exc
        except (UnicodeDecodeError, EOFError, ValueError, TypeError) as exc:
            last_error = exc
    else:
        raise NeuronIOFormatError(f"{path} is not a readable pickle: {last_error}")
    try:
        loaded["Params"], loaded["Results"]["listOfSingleSimulationDicts"]
    except (TypeError, KeyError) as exc:
        raise NeuronIOFormatError(
            f"{path} is not a NeuronIO file (needs Params and Results.listOfSingleSimulationDicts)"
        ) from exc
    return loaded


@dataclass(frozen=True)
class NeuronIOLayout:
    """Size facts of a NeuronIO file, from its Params."""

    n_segments: int
    duration_ms: int
    n_sims: int
    has_dendrites: bool
    #: output spike times stored as float16 (NeuronIO's own files), not as exact times
    float16_spikes: bool = True

    @classmethod
    def of(cls, experiment: dict[str, Any], path: Path | str = "") -> NeuronIOLayout:
        params = experiment["Params"]
        sims = experiment["Results"]["listOfSingleSimulationDicts"]
        if not isinstance(params, dict):
            raise NeuronIOFormatError(f"{path}: Params is a {type(params).__name__}, not a dict")
        try:
            n_segments = len(params["allSegmentsType"])
            duration = float(params["totalSimDurationInSec"]) * 1000
        except KeyError as exc:
            raise NeuronIOFormatError(f"{path}: Params lacks {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise NeuronIOFormatError(
                f"{path}: Params.totalSimDurationInSec or allSegmentsType is malformed ({exc})"
            ) from exc
        if not 1 <= duration <= 3_600_000:
            raise NeuronIOFormatError(
                f"{path}: Params.totalSimDurationInSec is {duration / 1000:g} s, not a duration"
            )
        if n_segments < 1:
            raise NeuronIOFormatError(f"{path}: Params.allSegmentsType lists no segment")
        if not isinstance(sims, list | tuple) or not sims:
            raise NeuronIOFormatError(f"{path}: the file holds no list of simulations")
        if not all(isinstance(sim, dict) for sim in sims):
            raise NeuronIOFormatError(f"{path}: a simulation is not a dict")
        times = sims[0].get("outputSpikeTimes")
        float16 = not isinstance(times, np.ndarray) or times.dtype == np.float16
        return cls(
            n_segments,
            round(duration),
            len(sims),
            "dendriticVoltagesLowRes" in sims[0],
            float16,
        )


def _segment(key: Any, n_segments: int, where: str) -> int:
    try:
        segment = int(key)
    except (TypeError, ValueError):
        raise NeuronIOFormatError(f"{where}: input segment {key!r} is not a number") from None
    if segment != key or not 0 <= segment < n_segments:
        shown = key.item() if isinstance(key, np.generic) else key
        raise NeuronIOFormatError(
            f"{where}: input segment {shown!r} is not one of the file's {n_segments} segments "
            "(0 … n − 1, Params.allSegmentsType)"
        )
    return segment


def _binary_inputs(sim: dict, n_segments: int, n_time: int, where: str) -> np.ndarray:
    inputs = np.zeros((n_time, 2 * n_segments), dtype=bool)
    for key, offset in (("exInputSpikeTimes", 0), ("inhInputSpikeTimes", n_segments)):
        by_segment = sim[key]
        if not isinstance(by_segment, dict):
            raise NeuronIOFormatError(
                f"{where}: {key} is a {type(by_segment).__name__}, not a dict of segment → times"
            )
        for segment, times in by_segment.items():
            column = offset + _segment(segment, n_segments, where)
            try:
                t = np.asarray(times, dtype=np.float64).ravel()
            except (TypeError, ValueError):
                raise NeuronIOFormatError(f"{where}: {key}[{segment!r}] is not numbers") from None
            if not np.isfinite(t).all():
                raise NeuronIOFormatError(f"{where}: {key}[{segment!r}] holds nan or inf")
            t = t.astype(np.int64)
            t = t[(t >= 0) & (t < n_time)]
            inputs[t, column] = True  # repeated spikes in a bin collapse to one
    return inputs


def _trace(sim: dict, key: str, n_time: int, where: str) -> np.ndarray:
    try:
        trace = np.asarray(sim[key], dtype=np.float32)
    except (TypeError, ValueError):
        raise NeuronIOFormatError(f"{where}: {key} is not an array of numbers") from None
    if trace.shape != (n_time,):
        raise NeuronIOFormatError(f"{where}: {key} has shape {trace.shape}, expected ({n_time},)")
    if not np.isfinite(trace).all():
        raise NeuronIOFormatError(f"{where}: {key} holds nan or inf")
    return trace


def simulation_to_record(
    sim: dict[str, Any], layout: NeuronIOLayout, with_dendrites: bool, where: str = ""
) -> SimulationRecord:
    """One NeuronIO simulation dict as a record of our schema."""
    n_time = layout.duration_ms
    try:
        soma = _trace(sim, "somaVoltageLowRes", n_time, where)
        nexus = _trace(sim, "nexusVoltageLowRes", n_time, where)
        inputs = _binary_inputs(sim, layout.n_segments, n_time, where)
        output = sim["outputSpikeTimes"]
    except KeyError as exc:
        raise NeuronIOFormatError(f"{where}: simulation lacks {exc}") from exc
    try:
        stored = np.asarray(output, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise NeuronIOFormatError(f"{where}: outputSpikeTimes is not numbers") from None
    if not (np.isfinite(stored).all() and (stored >= 0).all() and (stored <= n_time).all()):
        raise NeuronIOFormatError(
            f"{where}: outputSpikeTimes holds values outside 0 … {n_time} ms (or nan/inf)"
        )
    # the file's own precision: NeuronIO's float16 values stay float16 (the labels follow them);
    # exact times from other files stay exact
    if layout.float16_spikes:
        stored = stored.astype(np.float16).astype(np.float64)
    spike_times = np.sort(stored)
    labels = spike_labels(spike_times, n_time)
    dend = None
    if with_dendrites:
        dend = np.asarray(sim["dendriticVoltagesLowRes"], dtype=np.float32).T.copy()
        if dend.shape != (n_time, layout.n_segments) or not np.isfinite(dend).all():
            raise NeuronIOFormatError(
                f"{where}: dendriticVoltagesLowRes is not ({layout.n_segments}, {n_time}) "
                "finite numbers"
            )
    return SimulationRecord(
        inputs=inputs,
        soma_v=soma,
        nexus_v=nexus,
        spikes=labels,
        spike_times=spike_times,
        interval_ms=-1,
        smoothing_ms=-1,
        attempts=1,
        dend_v=dend,
    )


def import_params(experiment: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a file's Params (small values only), for dataset attributes."""
    out: dict[str, Any] = {}
    for key, value in experiment["Params"].items():
        if isinstance(value, np.ndarray):
            if value.size > 64:
                continue
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, list | tuple) and len(value) > 64:
            continue
        if isinstance(value, dict):
            continue
        out[str(key)] = value
    return out


# -- writing ------------------------------------------------------------------------------------


def input_ranges(inputs: np.ndarray, n_segments: int) -> tuple[list[int], list[int]]:
    """Across-simulation means of each simulation's 5th/95th percentile of the total input count
    in sliding 100 ms windows, for excitation and inhibition (the Kaggle file-name numbers)."""
    exc: list[np.ndarray] = []
    inh: list[np.ndarray] = []
    for sim in inputs:
        for target, block in ((exc, sim[:, :n_segments]), (inh, sim[:, n_segments:])):
            per_ms = block.sum(axis=1).astype(float)
            windows = np.convolve(per_ms, np.ones(100), mode="valid")
            target.append(np.percentile(windows, [5, 95]))
    return [round(v) for v in np.mean(exc, axis=0)], [round(v) for v in np.mean(inh, axis=0)]


def file_name(
    n_spikes: int, exc: list[int], inh: list[int], n_sims: int, seconds: int, seed: int
) -> str:
    return (
        f"L5PC_sim__Output_spikes_{n_spikes:04d}__Input_ranges_Exc_[{exc[0]:04d},{exc[1]:04d}]_"
        f"Inh_[{inh[0]:04d},{inh[1]:04d}]_per100ms__simXsec_{n_sims}x{seconds}_randseed_{seed}.p"
    )


def whole_seconds(n_time: int) -> int:
    """How many whole seconds of a simulation NeuronIO's format can hold.

    NeuronIO files state their duration as a whole number of seconds (``totalSimDurationInSec``,
    6), and code written for them sizes arrays with ``totalSimDurationInSec * 1000``: a
    simulation that is not whole seconds long is exported truncated to its whole seconds.
    """
    seconds = n_time // 1000
    if seconds < 1:
        raise NeuronIOFormatError(
            f"simulations of {n_time} ms are shorter than 1 s; NeuronIO files hold whole seconds"
        )
    return seconds


def record_to_simulation(sim: dict[str, np.ndarray], n_segments: int, n_time: int) -> dict:
    """One of our simulations, cut to its first ``n_time`` ms, as a NeuronIO simulation dict.

    We store voltages at 1 kHz; the 8 kHz entries are linear interpolations of them (code written
    for NeuronIO reads the 1 kHz traces, spike times and inputs).
    """
    t_low = np.arange(n_time, dtype=np.float32)
    t_high = (np.arange(n_time * DETECTION_PER_MS) / DETECTION_PER_MS).astype(np.float32)
    soma, nexus = sim["soma_v"][:n_time], sim["nexus_v"][:n_time]
    spike_times = np.asarray(sim["spike_times"], dtype=np.float64)
    exc: dict[np.int64, list[np.int64]] = {}
    inh: dict[np.int64, list[np.int64]] = {}
    t_idx, c_idx = np.nonzero(sim["inputs"][:n_time])
    for target, lo in ((exc, 0), (inh, n_segments)):
        mask = (c_idx >= lo) & (c_idx < lo + n_segments)
        for segment in np.unique(c_idx[mask]):
            target[np.int64(segment - lo)] = [
                np.int64(t) for t in t_idx[mask][c_idx[mask] == segment]
            ]
    out = {
        "recordingTimeHighRes": t_high,
        "somaVoltageHighRes": np.interp(t_high, t_low, soma).astype(np.float16),
        "nexusVoltageHighRes": np.interp(t_high, t_low, nexus).astype(np.float16),
        "recordingTimeLowRes": t_low,
        "somaVoltageLowRes": soma.astype(np.float16),
        "nexusVoltageLowRes": nexus.astype(np.float16),
        "exInputSpikeTimes": exc,
        "inhInputSpikeTimes": inh,
        "outputSpikeTimes": spike_times[spike_times < n_time].astype(np.float16),
    }
    if "dend_v" in sim:
        out["dendriticVoltagesLowRes"] = sim["dend_v"][:n_time].T.astype(np.float16)
    return out


def export_params(
    attrs: dict[str, Any], sims: list[dict], seed: int, seconds: int
) -> dict[str, Any]:
    """Params of an exported file with NeuronIO's types: plain Python ints, floats, bools,
    strings and lists (repository and revision keys), from our dataset attributes."""
    table = attrs["cell"]["segment_table"]
    simulation = attrs["simulation"]
    protocol = attrs.get("protocol", {})
    n_time = seconds * 1000
    spikes = [s["spike_times"][s["spike_times"] < n_time] for s in sims]
    counts = [len(t) for t in spikes]
    isis = [float(d) for t in spikes for d in np.diff(t)]
    params: dict[str, Any] = {
        "randomSeed": int(seed),
        "random_seed": int(seed),
        "numSimulations": len(sims),
        "totalSimDurationInSec": int(seconds),
        "collectAndSaveDVTs": bool("dend_v" in sims[0]),
        "numSamplesPerMS_HighRes": int(DETECTION_PER_MS),
        "excitatorySynapseType": "NMDA",
        "inhibitorySynapseType": "GABA_A",
        "useActiveDendrites": True,
        "Ih_vshift": 0,
        "gmax_NMDA_to_AMPA_ratio": float(simulation.get("synapses", {}).get("nmda_ratio", 1.0)),
        "allSegmentsType": [str(r) for r in table["region"]],
        "allSegmentsLength": [float(v) for v in table["length"]],
        "allSegments_DistFromSoma": [float(v) for v in table["distance"]],
        "allSegments_SectionInd": [int(v) for v in table["section_index"]],
        "morphology_description": str(attrs["cell"].get("morphology", "")),
        "numOutputSpikesPerSim": counts,
        "totalNumOutputSpikes": int(sum(counts)),
        "totalNumSimulationSeconds": int(len(sims) * seconds),
        "averageOutputFrequency": float(sum(counts) / (len(sims) * seconds)),
        "listOfISIs": isis,
        "ISICV": float(np.std(isis) / np.mean(isis)) if len(isis) > 1 else math.nan,
        "elmpipe_protocol": protocol,
    }
    if protocol.get("kind") == "neuronio":
        params["inst_rate_sampling_time_interval_options_ms"] = [
            int(v) for v in protocol["interval_options_ms"]
        ]
        for subtree, tag in (("basal", "Bas"), ("apical", "Apic")):
            exc = protocol["excitatory_per_100ms"][subtree]
            off = protocol["inhibitory_offset_per_100ms"][subtree]
            params[f"num_ex_synapses_per100ms_range_{tag}"] = [
                _number(exc["low"]),
                _number(exc["high"]),
            ]
            params[f"num_inh_synapses_per100ms_offset_range_{tag}"] = [
                _number(off["low"]),
                _number(off["high"]),
            ]
    return params


def _number(value: float) -> int | float:
    """Whole numbers as ints, as NeuronIO's scripts wrote their ranges."""
    return int(value) if float(value).is_integer() else float(value)


def write_pickle(path: Path, experiment: dict[str, Any]) -> None:
    """Atomically: a killed export never leaves a file that looks whole."""
    with atomic_write(path, "wb") as handle:
        pickle.dump(experiment, handle, protocol=pickle.DEFAULT_PROTOCOL)


# -- tasks (one file each; run by any executor) --------------------------------------------------


def file_layout(path: str) -> NeuronIOLayout:
    """Read a file only to learn its size (the first pass of an import)."""
    return NeuronIOLayout.of(load_pickle(path), path)


def check_same_shape(path: str, layout: NeuronIOLayout, first: NeuronIOLayout) -> None:
    if (layout.n_segments, layout.duration_ms) != (first.n_segments, first.duration_ms):
        raise NeuronIOFormatError(
            f"{path}: simulations of {layout.duration_ms} ms with {layout.n_segments} segments; "
            f"the first file has {first.duration_ms} ms and {first.n_segments} segments"
        )
    if layout.float16_spikes != first.float16_spikes:
        precision = {True: "float16", False: "exact"}
        raise NeuronIOFormatError(
            f"{path}: output spike times are {precision[layout.float16_spikes]}, the first "
            f"file's {precision[first.float16_spikes]}: one store holds one precision"
        )


def import_file(
    path: str, store: str, split: str, start: int, expected: NeuronIOLayout, with_dendrites: bool
) -> int:
    """Convert one NeuronIO file into simulations ``start …`` of ``split``; return how many."""
    experiment = load_pickle(path)
    layout = NeuronIOLayout.of(experiment, path)
    if layout != expected:
        raise NeuronIOFormatError(f"{path} changed since it was counted ({layout} ≠ {expected})")
    if with_dendrites and not layout.has_dendrites:
        raise NeuronIOFormatError(f"{path} has no dendriticVoltagesLowRes")
    sims = experiment["Results"]["listOfSingleSimulationDicts"]
    records = [
        simulation_to_record(sim, layout, with_dendrites, f"{path}, simulation {i}")
        for i, sim in enumerate(sims)
    ]
    write_block(store, split, start, records)
    return len(records)


def export_file(store: str, split: str, indices: list[int], folder: str, seed: int) -> str:
    """Write simulations ``indices`` of ``split`` as one NeuronIO file; return its name."""
    dataset = Dataset(store)
    n_segments = dataset.n_segments
    source = dataset.split(split)
    seconds = whole_seconds(source.n_time)
    sims = [source.simulation(i) for i in indices]
    converted = [record_to_simulation(s, n_segments, seconds * 1000) for s in sims]
    experiment = {
        "Params": export_params(dataset.attrs, sims, seed, seconds),
        "Results": {"listOfSingleSimulationDicts": converted},
    }
    exc, inh = input_ranges(np.stack([s["inputs"][: seconds * 1000] for s in sims]), n_segments)
    total = experiment["Params"]["totalNumOutputSpikes"]
    name = file_name(total, exc, inh, len(sims), seconds, seed)
    write_pickle(Path(folder) / name, experiment)
    return name
