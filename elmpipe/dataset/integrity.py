"""Is a simulation marked complete really whole on disk? A cheap check, made on every open.

Two layers keep damage from passing as data (docs/dataset.md, "Completion and integrity"):

1. Every chunk carries a CRC-32C checksum (schema version 2), which zarr verifies on every read;
   a flipped bit inside a chunk is a read error, never silently different numbers.
2. This module's structural check, cheap enough to run whenever a split is opened: for every
   complete simulation, each of its chunk files exists and, for sharded arrays, the shard's index
   (at the file's end, with its own CRC-32C) is intact and points only inside the file. That
   catches deleted files — which zarr would otherwise read as fill values — and truncated ones.
   It costs one ``stat`` and one small read per file, not a read of the data.

A simulation that fails either check is *damaged*: readers refuse it naming the simulation, and
the writers recompute it when the command that made it runs again.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation

from elmpipe.dataset.schema import ALWAYS_WRITTEN_V1, COMPLETE, SIM_ARRAYS

_EMPTY = 2**64 - 1


def _shard_index_problem(path: Path, sharding: ShardingCodec, shard_shape: tuple[int, ...]) -> str:
    """Why the shard file at ``path`` is not whole ('' when it is)."""
    layout_known = sharding.index_location == ShardingCodecIndexLocation.end and [
        type(c) for c in sharding.index_codecs
    ] == [BytesCodec, Crc32cCodec]
    if not layout_known:
        return ""  # not a layout we write; zarr's own checks apply on read
    inner = math.prod(s // c for s, c in zip(shard_shape, sharding.chunk_shape, strict=True))
    index_bytes = 16 * inner + 4
    size = path.stat().st_size
    if size < index_bytes:
        return f"is truncated ({size} bytes)"
    with open(path, "rb") as handle:
        handle.seek(size - index_bytes)
        tail = handle.read(index_bytes)
    body, checksum = tail[:-4], tail[-4:]
    if google_crc32c.value(body).to_bytes(4, "little") != checksum:
        return "is truncated or corrupt (its index fails its checksum)"
    entries = struct.unpack(f"<{2 * inner}Q", body)
    data_end = size - index_bytes
    for offset, nbytes in zip(entries[::2], entries[1::2], strict=True):
        if (offset, nbytes) != (_EMPTY, _EMPTY) and offset + nbytes > data_end:
            return "is truncated (a chunk lies past its end)"
    return ""


def damaged_simulations(
    store: Path, group: zarr.Group, candidates: np.ndarray, schema_version: int
) -> dict[int, str]:
    """Simulations among ``candidates`` (indices) whose chunk files are missing or torn.

    Returns simulation index → the first problem found, naming the array and file.
    """
    damaged: dict[int, str] = {}
    if candidates.size == 0:
        return damaged
    for name, array in group.arrays():
        if name not in SIM_ARRAYS or name == COMPLETE:
            continue
        if schema_version < 2 and name not in ALWAYS_WRITTEN_V1:
            continue  # version 1 left chunks equal to the fill value unwritten
        codecs = array.metadata.codecs
        sharding = codecs[0] if codecs and isinstance(codecs[0], ShardingCodec) else None
        per_file = array.metadata.chunk_grid.chunk_shape
        sims_per_file = per_file[0]
        rest = (0,) * (len(per_file) - 1)
        folder = store / array.path
        for file_index in np.unique(candidates // sims_per_file):
            key = array.metadata.encode_chunk_key((int(file_index), *rest))
            path = folder / key
            if not path.is_file():
                problem = f"{name}: chunk file {array.path}/{key} is missing"
            elif sharding is not None:
                problem = _shard_index_problem(path, sharding, per_file)
                problem = f"{name}: shard file {array.path}/{key} {problem}" if problem else ""
            else:
                problem = ""
            if problem:
                first = int(file_index) * sims_per_file
                for sim in candidates[(candidates >= first) & (candidates < first + sims_per_file)]:
                    damaged.setdefault(int(sim), problem)
    return damaged
