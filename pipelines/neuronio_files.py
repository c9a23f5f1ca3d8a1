"""NeuronIO files in and out: import a folder of pickles into a split, export a split to pickles.

One task per file on the configured executor (simulations.neuronio does the conversion of one
file); an interrupted import resumes, and a killed export never leaves a file that looks whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from elmpipe.dataset import Dataset, DatasetError, DatasetSpec, prepare_split
from elmpipe.errors import MissingFileError
from elmpipe.outputs import check_output_folder
from pipelines.cluster import ClusterConfig, Task, executor
from simulations.neuronio import (
    NeuronIOFormatError,
    NeuronIOLayout,
    check_same_shape,
    export_file,
    file_layout,
    import_file,
    import_params,
    load_pickle,
    whole_seconds,
)
from simulations.synapses import ChannelTable

PICKLE_SUFFIXES = (".p", ".pkl", ".pickle")
DEFAULT_CLUSTER = ClusterConfig()


@dataclass(frozen=True)
class Export:
    """What an export wrote: file names, and how much of each simulation they hold."""

    names: list[str]
    simulated_ms: int
    exported_ms: int  # NeuronIO files hold whole seconds


def neuronio_spec(
    first: dict[str, Any], files: list[tuple[str, int]], layout: NeuronIOLayout, dendrites: bool
) -> DatasetSpec:
    params = first["Params"]
    table = {
        "region": [str(t) for t in params["allSegmentsType"]],
        "length": np.asarray(params.get("allSegmentsLength", []), float).tolist(),
        "distance": np.asarray(params.get("allSegments_DistFromSoma", []), float).tolist(),
        "section_index": np.asarray(params.get("allSegments_SectionInd", []), int).tolist(),
    }
    fingerprint = hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()
    morphology = str(params.get("morphology_description", "NeuronIO L5PC (Hay et al. cell1.asc)"))
    return DatasetSpec(
        cell={
            "source": "NeuronIO files",
            "morphology": morphology,
            "fingerprint": f"neuronio-{fingerprint}",
            "segments": {"dendritic": layout.n_segments},
            "segment_table": table,
        },
        channels=ChannelTable.for_segments(layout.n_segments).to_dict(),
        protocol={
            "kind": "neuronio-import",
            # as the files store them: NeuronIO's own files float16, others perhaps exact
            "spike_time_precision": "float16" if layout.float16_spikes else "exact",
            "files": [[name, n] for name, n in files],
            "params": json.loads(json.dumps(import_params(first), default=str)),
        },
        simulation={"duration_ms": float(layout.duration_ms), "record_dendrites": dendrites},
        seed=0,
    )


def _counted_before(out: Path, names: list[str]) -> list[int] | None:
    """File sizes recorded by an earlier (interrupted) import of the same files, if any."""
    try:
        recorded = Dataset(out).protocol.get("files", [])
    except (DatasetError, MissingFileError):
        return None
    if [name for name, _ in recorded] != names:
        return None
    return [int(n) for _, n in recorded]


def import_neuronio(
    folder: str | Path,
    out: str | Path,
    split: str,
    *,
    with_dendrites: bool = False,
    cluster: ClusterConfig = DEFAULT_CLUSTER,
    progress: bool = True,
) -> int:
    """Convert every NeuronIO file in ``folder`` into ``split`` of the store at ``out``.

    Files may hold different numbers of simulations, so a first parallel pass counts them (an
    interrupted import reuses the counts recorded in the store); the second converts each file
    into its own range of simulations.
    """
    out = check_output_folder(out, "dataset").resolve()  # before resolve(): links that loop
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise MissingFileError(f"NeuronIO folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not files:
        raise DatasetError(f"no NeuronIO pickle files ({', '.join(PICKLE_SUFFIXES)}) in {folder}")
    first = load_pickle(files[0])
    first_layout = NeuronIOLayout.of(first, files[0])
    if with_dendrites and not first_layout.has_dendrites:
        raise NeuronIOFormatError(f"{files[0]} has no dendritic voltages to import")
    with executor(cluster) as pool:
        counts = _counted_before(out, [f.name for f in files])
        if counts is None:
            layouts = pool.run(
                [Task(file_layout, (str(f),)) for f in files],
                label="counting",
                unit="file",
                progress=progress,
            )
            for path, layout in zip(files, layouts, strict=True):
                check_same_shape(str(path), layout, first_layout)
            counts = [layout.n_sims for layout in layouts]
        spec = neuronio_spec(
            first,
            list(zip([f.name for f in files], counts, strict=True)),
            first_layout,
            with_dendrites,
        )
        del first
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        plan = prepare_split(out, spec, split, int(starts[-1]))
        todo = set(plan.todo.tolist())
        tasks = []
        for i, path in enumerate(files):
            if todo & set(range(starts[i], starts[i + 1])):
                layout = dataclasses.replace(first_layout, n_sims=counts[i])
                args = (str(path), str(out), split, int(starts[i]), layout, with_dendrites)
                tasks.append(Task(import_file, args))
        pool.run(tasks, label=f"importing {split}", unit="file", progress=progress)
    return int(starts[-1])


def export_neuronio(
    store: str | Path,
    split: str,
    folder: str | Path,
    *,
    sims_per_file: int = 128,
    cluster: ClusterConfig = DEFAULT_CLUSTER,
    progress: bool = True,
) -> Export:
    """Write the complete simulations of ``split`` as NeuronIO files into ``folder``."""
    if sims_per_file <= 0:
        raise DatasetError("sims_per_file must be positive")
    folder = check_output_folder(folder, "export folder")
    dataset = Dataset(store)
    source = dataset.split(split)
    seconds = whole_seconds(source.n_time)  # before any work: too short is an error
    complete = source.require_intact()
    if complete.size == 0:
        raise DatasetError(f"{store} split {split!r} has no complete simulations to export")
    folder.mkdir(parents=True, exist_ok=True)
    seed = int(dataset.attrs.get("seed", 0))
    chunks = [
        complete[i : i + sims_per_file].tolist() for i in range(0, complete.size, sims_per_file)
    ]
    tasks = [
        Task(export_file, (str(dataset.path), split, chunk, str(folder), seed * 1000 + i))
        for i, chunk in enumerate(chunks)
    ]
    with executor(cluster) as pool:
        names = pool.run(tasks, label=f"exporting {split}", unit="file", progress=progress)
    return Export(names, simulated_ms=source.n_time, exported_ms=seconds * 1000)
