"""Transfer by geometry: a synapse's weight comes from the source synapse at the same place in
the cell, and the target's branches read the places the source's branches read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pipelines.cli import cli
from surrogate.checkpoints import load_model, read_checkpoint, save_checkpoint
from surrogate.geometry import CellGeometry, nearest_sources, segment_order_like
from surrogate.models import ELM, ELMConfig
from surrogate.warm_start import warm_start
from tests.toy_dataset import toy_geometry


def geometry(regions, distances, diams, l_max, nexus) -> CellGeometry:
    return CellGeometry(
        np.array(regions), np.array(distances, float), np.array(diams, float), l_max, nexus
    )


#: a source cell: two basal segments, an apical trunk to a nexus at 500 µm, a tuft to 1000 µm
SOURCE = geometry(
    ["basal", "basal", "apical", "apical", "apical", "apical"],
    [50, 200, 150, 450, 700, 950],
    [2.0, 1.0, 3.0, 2.0, 1.0, 0.5],
    1000,
    500,
)
#: the target is larger (trunk to 700 µm, tuft to 1400 µm) and lists its segments in another
#: order (apical first, tuft first): by row position nothing would line up
TARGET = geometry(
    ["apical", "apical", "apical", "apical", "basal", "basal", "basal"],
    [1300, 950, 620, 200, 280, 70, 150],
    [0.5, 1.0, 2.0, 3.0, 1.0, 2.0, 1.5],
    1400,
    700,
)


def test_each_target_segment_matches_the_source_segment_at_the_same_place():
    match = nearest_sources(TARGET, SOURCE)
    # distal tuft → distal tuft, proximal tuft → proximal tuft, below the nexus → the trunk's
    # points at the same fraction of the way to the nexus, basal → basal by relative distance
    assert match.tolist() == [5, 4, 3, 2, 1, 0, 0]
    assert (SOURCE.subtree()[match] == TARGET.subtree()).all()


def test_a_cell_matches_itself_and_keeps_its_order():
    assert nearest_sources(SOURCE, SOURCE).tolist() == list(range(6))
    assert segment_order_like(np.arange(6), SOURCE) == tuple(range(6))
    # the target walked in the order of its matches: basal first, then trunk, then tuft
    order = segment_order_like(nearest_sources(TARGET, SOURCE), TARGET)
    assert order == (5, 6, 4, 3, 2, 1, 0)


def test_the_record_round_trips_and_a_cell_without_a_table_is_named():
    assert CellGeometry.from_record(SOURCE.record()).record() == SOURCE.record()
    with pytest.raises(ValueError, match="segment table"):
        CellGeometry.from_record({"fingerprint": "x"})


def small_elm(n_segments: int, **changes) -> ELM:
    torch.manual_seed(0)
    config = ELMConfig(
        num_input=2 * n_segments, num_memory=3, num_branch=2, num_synapse_per_branch=8, **changes
    )
    return ELM(config)


def test_warm_start_by_geometry_gives_each_synapse_its_matched_source_weight(tmp_path):
    source = small_elm(6)
    with torch.no_grad():  # distinct weights, so that every copy can be traced
        source._proto_w_s.copy_(torch.arange(source._proto_w_s.numel(), dtype=torch.float32))
    path = tmp_path / "source.pt"
    save_checkpoint(path, source, provenance={"cell": SOURCE.record()})
    target = small_elm(7)
    record = warm_start(target, path, "by-geometry", target_cell=TARGET.record())
    assert record["synapses"] == "by-geometry" and "_proto_w_s" in record["transferred"]
    match = nearest_sources(TARGET, SOURCE)
    assert target.config.segment_order == segment_order_like(match, TARGET)
    n_t, n_s = 7, 6
    for synapse in np.flatnonzero(target.valid_indices_mask.numpy()):
        channel = int(target.input_to_synapse_indices[synapse])
        segment, excitatory = channel % n_t, channel < n_t
        weight = target._proto_w_s[synapse]
        origin = int(weight)  # the source synapse it came from
        source_channel = int(source.input_to_synapse_indices[origin])
        assert source.valid_indices_mask[origin]
        assert origin // 8 == synapse // 8, "from the same branch"
        assert (source_channel < n_s) == excitatory, "of the same kind"
        source_segments = {
            int(source.input_to_synapse_indices[k]) % n_s
            for k in range(8 * (synapse // 8), 8 * (synapse // 8 + 1))
            if source.valid_indices_mask[k]
        }
        if int(match[segment]) in source_segments:  # the branch reads the match: its weight
            assert source_channel % n_s == match[segment]


def saved_source(tmp_path, cell: CellGeometry | None = SOURCE) -> tuple[ELM, Path]:
    """A small source model of ``cell`` in a checkpoint (None: the file does not say its cell)."""
    source, path = small_elm(6), tmp_path / "source.pt"
    save_checkpoint(path, source, **({"provenance": {"cell": cell.record()}} if cell else {}))
    return source, path


def test_a_geometric_warm_start_survives_the_checkpoint_round_trip(tmp_path):
    _, path = saved_source(tmp_path)
    target = small_elm(7)
    warm_start(target, path, "by-geometry", target_cell=TARGET.record())
    save_checkpoint(tmp_path / "target.pt", target)
    again = load_model(tmp_path / "target.pt")
    assert again.config.segment_order == target.config.segment_order
    assert torch.equal(again.input_to_synapse_indices, target.input_to_synapse_indices)
    x = (torch.rand(2, 40, 14) < 0.1).float()
    with torch.no_grad():
        assert torch.equal(again(x), target.eval()(x))


def test_the_same_cell_takes_every_weight(tmp_path):
    source, path = saved_source(tmp_path)
    target = small_elm(6)
    assert warm_start(target, path, target_cell=SOURCE.record())["layout"] == "same"
    x = (torch.rand(2, 40, 12) < 0.1).float()
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_without_the_source_cell_the_error_says_what_to_give(tmp_path):
    _, path = saved_source(tmp_path, None)  # no cell recorded, as a released state dict
    with pytest.raises(ValueError, match="--init-cell"):
        warm_start(small_elm(7), path, "by-geometry", target_cell=TARGET.record())


def test_a_released_elm_warm_starts_by_geometry_from_its_cell(toy_store, tmp_path):
    """`fit --init released.pt --init-cell CELL`: the Hay cell is given as a cell record here
    (a 639-segment made-up geometry); the fit maps by geometry onto the toy store's cell."""
    from tests.test_checkpoints_export import released_state_dict

    released = tmp_path / "neuronio_best_model_state.pt"
    torch.save(released_state_dict(20), released)  # 1278 inputs, 45 branches × 100
    hay_like = tmp_path / "hay-cell.json"
    hay_like.write_text(json.dumps(toy_geometry(639, l_max=1300.0, nexus=690.0)))
    out = tmp_path / "run"
    args = ["fit", "-d", toy_store, "-o", out, "--init", released, "--init-cell", hay_like]
    args += ["--init-synapses", "by-geometry"]
    result = CliRunner().invoke(cli, [*map(str, args), "--epochs", "1", "--batches-per-epoch", "3"])
    assert result.exit_code == 0, result.output
    assert "mapped by geometry" in result.output
    provenance = read_checkpoint(out / "best.pt")["provenance"]
    assert provenance["warm_start"]["synapses"] == "by-geometry"
    assert provenance["cell"] == CellGeometry.from_record(toy_geometry(50)).record()
    assert load_model(out / "best.pt").config.segment_order is not None


def test_a_model_warm_started_by_geometry_hands_its_routing_on_within_its_cell(tmp_path):
    """Fine-tuning it again on the same cell (a second warm start) keeps its walk and weights."""
    _, first = saved_source(tmp_path)
    moved = small_elm(7)
    warm_start(moved, first, "by-geometry", target_cell=TARGET.record())
    second = tmp_path / "moved.pt"
    save_checkpoint(second, moved, provenance={"cell": TARGET.record()})
    again = small_elm(7)  # built from a plain config, as a new fit builds it
    assert warm_start(again, second, target_cell=TARGET.record())["layout"] == "same"
    assert again.config.segment_order == moved.config.segment_order
    x = (torch.rand(2, 40, 14) < 0.1).float()
    with torch.no_grad():
        assert torch.equal(again(x), moved(x))
