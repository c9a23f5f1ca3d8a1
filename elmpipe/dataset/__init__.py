"""The Zarr dataset: the contract between the data stage and everything after it.

``schema`` names and lays out every array and attribute, ``writer`` creates splits and writes
simulations, ``reader`` opens stores (one version check) and reads splits, ``integrity`` finds
complete simulations whose chunks are missing or torn, ``statistics`` summarises splits.
docs/dataset.md is the prose reference.
"""

from elmpipe.dataset.reader import Dataset, Split, open_root
from elmpipe.dataset.schema import (
    DETECTION_PER_MS,
    KEPT_SPIKE_RANGE,
    SCHEMA_VERSION,
    SIMS_PER_FILE,
    SKIP_MS,
    SOMA_CLIP_MV,
    SPIKE_THRESHOLD_MV,
    DatasetSpec,
    detect_spikes,
    spike_labels,
)
from elmpipe.dataset.writer import SimulationRecord, SplitPlan, prepare_split, write_block
from elmpipe.errors import DatasetError

__all__ = [
    "DETECTION_PER_MS",
    "KEPT_SPIKE_RANGE",
    "SCHEMA_VERSION",
    "SIMS_PER_FILE",
    "SKIP_MS",
    "SOMA_CLIP_MV",
    "SPIKE_THRESHOLD_MV",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "SimulationRecord",
    "Split",
    "SplitPlan",
    "detect_spikes",
    "open_root",
    "prepare_split",
    "spike_labels",
    "write_block",
]
