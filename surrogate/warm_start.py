"""Warm start: begin a fit from a trained surrogate instead of from random weights.

The source is an elmpipe checkpoint or a released ELM state dict. What is taken over depends on
whether the input layout is the same:

- **Same layout** (same model config, same number of inputs): every weight. Training continues
  from the source model.
- **Different layout** (another morphology, another channel count) of an ELM with the same
  architecture (memory units, branches, synapses per branch, MLP): the layout-independent parts —
  the memory time constants, the trace time constants, the MLP and the output head — are taken
  over; the routing is the target's own; the per-input synapse weights either start fresh
  (``fresh``) or follow the **by-position mapping** (``by-position``): synapse slot (branch j,
  slot q) keeps the source's weight of slot (j, q) — with the NeuronIO routing that slot reads,
  in both cells, the input at the same relative place of the segment order (basal sections then
  apical, by section, then along each section) — moved by one slot where needed so that every
  synapse keeps its kind (an excitatory slot takes an excitatory source weight); or the
  **by-geometry mapping** (``by-geometry``): every target segment is matched to
  the source segment at the same place in the cell (surrogate.geometry: subtree, position
  between soma, nexus and the farthest tip, path distance, diameter); the target's routing walks
  its segments in the order of their matches, so that each branch reads the segments at the
  places where the source's branch read, and each synapse takes the weight of the source
  synapse on its branch that reads its match (of its kind), or the nearest one. It needs both
  cells: the target's from the training data, the source's from its checkpoint or given
  (``source_cell``; a released ELM was trained on the Hay cell).

A source with another number of outputs (a fit with or without the auxiliary nexus output,
``nexus_weight``) is the second case too, even on the same inputs: the outputs both models have
(spike logit, soma) take the source's rows of the output head, an extra one starts fresh.

:func:`warm_start` returns a record of what was transferred; the fit stores it in its
checkpoints and ``result.json``, and the report shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from surrogate.checkpoints import CheckpointError, load_any, trained_cell
from surrogate.geometry import CellGeometry, nearest_sources, segment_order_like
from surrogate.models.elm import ELM
from surrogate.models.general_elm import REFERENCE_RATE_HZ, GeneralELM
from surrogate.models.routing import neuronio_routing

SynapseMapping = Literal["by-geometry", "by-position", "fresh"]
#: the surrogate of the built-in cell shipped with elmpipe (configs/pretrain-builtin.yaml made it)
BUILTIN = Path(__file__).parent / "pretrained" / "builtin-cell-elm-m20-b45.pt"
#: models that ship with elmpipe, named instead of a path
SHIPPED = ("builtin", "general")
#: the cell-general Branch-ELM shipped with elmpipe (configs/pretrain-general.yaml makes it)
GENERAL = Path(__file__).parent / "pretrained" / "general-elm-m20-b45.pt"
#: ELM parameters and buffers that do not depend on the input layout
LAYOUT_FREE = ("_proto_tau_m", "tau_s", "tau_b", "mlp.", "w_y.")
ROUTING = ("input_to_synapse_indices", "valid_indices_mask", "synapse_branch")
#: what must agree for a transfer (as the model resolves them: mlp_hidden None = 2·d_m)
ARCHITECTURE = (
    "num_memory", "branches", "synapses_per_branch", "mlp_layers", "hidden",
    "activation", "version", "routing",
)  # fmt: skip
HEAD = ("w_y.weight", "w_y.bias")


def _same_layout(target: nn.Module, source: nn.Module) -> bool:
    return type(target) is type(source) and target.config == source.config


def _same_places(first: dict, second: dict) -> bool:
    """Whether two cell records put their segments at the same places (one cell)."""
    try:
        a, b = CellGeometry.from_record(first), CellGeometry.from_record(second)
    except ValueError:
        return True  # not known: the layout decides
    return len(a) == len(b) and bool(
        np.array_equal(a.region, b.region) and np.allclose(a.distance, b.distance)
    )


def _kinds(model: ELM) -> torch.Tensor:
    """True where a synapse reads an excitatory input (the first half of the channels)."""
    return model.input_to_synapse_indices < model.num_input // 2


def _by_position(target: ELM, source: ELM) -> torch.Tensor:
    """Source synapse weights laid onto the target's slots, each slot keeping its kind."""
    weights = source._proto_w_s.detach()
    source_kind, target_kind = _kinds(source), _kinds(target)
    index = torch.arange(weights.numel())
    mismatched = source_kind != target_kind
    # a neighbouring slot on the same branch has the other kind (interleaved exc/inh positions)
    per_branch = source.config.synapses_per_branch
    slot = index % per_branch
    neighbour = torch.where(slot + 1 < per_branch, index + 1, index - 1)
    chosen = torch.where(mismatched, neighbour, index)
    return weights[chosen].clone()


def _walk_rank(model: ELM) -> torch.Tensor:
    """Each segment's place in the order the model's routing walks them."""
    n = model.num_input // 2
    order = model.config.segment_order
    if order is None:
        return torch.arange(n)
    return torch.argsort(torch.as_tensor(order, dtype=torch.int64))


def _reroute(model: ELM, order: tuple[int, ...] | None) -> None:
    """Give ``model`` (in place) the neuronio routing that walks its segments in ``order``
    (None: the dataset's row order)."""
    config = type(model.config).model_validate(
        {**model.config.model_dump(), "segment_order": order}
    )
    index, mask = neuronio_routing(
        config.num_input, config.branches, config.synapses_per_branch, order
    )
    model.input_to_synapse_indices.copy_(index)
    model.valid_indices_mask.copy_(mask)
    model.config = config


def _by_geometry(target: ELM, source: ELM, match: np.ndarray) -> torch.Tensor:
    """Per target synapse, the weight of the source synapse on the same branch that reads the
    target segment's match (of the same kind), else the one nearest to it in the source's walk."""
    branches, per_branch = target.config.branches, target.config.synapses_per_branch
    n_t, n_s = target.num_input // 2, source.num_input // 2
    rank_s = _walk_rank(source)
    channel_t, channel_s = target.input_to_synapse_indices, source.input_to_synapse_indices
    wanted = rank_s[torch.as_tensor(match)[channel_t % n_t]].view(branches, per_branch)
    found = rank_s[channel_s % n_s].view(branches, per_branch)
    gap = (found[:, None, :] - wanted[:, :, None]).abs().to(torch.float64)
    other_kind = (channel_s >= n_s).view(branches, 1, per_branch) != (channel_t >= n_t).view(
        branches, per_branch, 1
    )
    unusable = other_kind | ~source.valid_indices_mask.view(branches, 1, per_branch)
    choice = torch.where(unusable, gap + 1e9, gap).argmin(dim=2)  # (branches, per_branch)
    weights = source._proto_w_s.detach().view(branches, per_branch)
    return weights.gather(1, choice).reshape(-1).clone()


def _geometries(
    source_path: str | Path, target_cell: dict | None, source_cell: dict | None
) -> tuple[CellGeometry, CellGeometry]:
    source_cell = source_cell or trained_cell(source_path)
    if source_cell is None:
        raise CheckpointError(
            f"{source_path}: the synapse mapping by geometry needs the cell this model was "
            "trained on, which its file does not record (a released ELM: the Hay cell); give "
            "it with --init-cell (a dataset or morphology of that cell), or choose "
            "--init-synapses by-position"
        )
    if target_cell is None:
        raise CheckpointError("the synapse mapping by geometry needs the training data's cell")
    try:
        return CellGeometry.from_record(target_cell), CellGeometry.from_record(source_cell)
    except ValueError as exc:
        raise CheckpointError(f"{source_path}: the synapse mapping by geometry: {exc}") from None


def resolve_source(name: str) -> Path:
    """``builtin`` is the shipped surrogate of the built-in cell, ``general`` the shipped
    cell-general model; anything else is a path."""
    if name == "builtin":
        return BUILTIN
    if name == "general":
        if not GENERAL.is_file():
            raise CheckpointError(
                "this version of elmpipe ships no pretrained cell-general model yet: pretrain "
                "one (`elmpipe pretrain -d CELL1.zarr -d CELL2.zarr … -o runs/general`) and give "
                "its best.pt"
            )
        return GENERAL
    return Path(name).expanduser()


#: the ELM settings a fine-tuning takes from its start when it is given none: the start's
#: architecture (the layout — inputs and the order its branches read them — is the new cell's)
SOURCE_SETTINGS = (
    "num_memory", "lambda_value", "mlp_layers", "mlp_hidden", "activation", "tau_s",
    "tau_m_min", "tau_m_max", "learn_memory_tau", "num_branch", "num_synapse_per_branch",
    "routing", "version",
)  # fmt: skip


def source_architecture(name: str) -> dict[str, Any]:
    """The ELM settings of a warm start's source (``builtin``, ``general`` or a path), so that
    ``--init`` alone fine-tunes the model it names — the released d_m 100 ELM as it is, not a
    d_m 20 one that cannot take its weights. Empty when the source is no ELM or cannot be read
    (the warm start itself then names the problem)."""
    try:
        source = load_any(resolve_source(name))
    except (CheckpointError, OSError):
        return {}
    if isinstance(source, GeneralELM):
        general = source.config
        config = general.elm_config(2 * general.num_branch, tuple(range(general.num_branch)))
    elif isinstance(source, ELM):
        config = source.config
    else:
        return {}
    return {setting: getattr(config, setting) for setting in SOURCE_SETTINGS}


def for_the_cell(
    model: nn.Module,
    cell: dict | None,
    what: str,
    input_rate_hz: float | None = None,
) -> nn.Module:
    """A cell-general model as the plain ELM of ``cell`` (the cell record of the data it is to
    serve), driven at ``input_rate_hz`` (surrogate.drive); any other model as it is."""
    if not isinstance(model, GeneralELM):
        return model
    if cell is None:
        raise CheckpointError(f"{what} is a cell-general model: it needs the data's cell")
    try:
        return model.materialize(cell, input_rate_hz)
    except ValueError as exc:
        raise CheckpointError(
            f"{what}: the cell-general model cannot place the inputs: {exc}"
        ) from None


def warm_start(
    model: nn.Module,
    source_path: str | Path,
    synapses: SynapseMapping = "by-position",
    *,
    target_cell: dict | None = None,
    source_cell: dict | None = None,
    target_rate: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Load what ``source_path`` can give into ``model`` (in place); returns what was done.

    ``target_cell``: the cell record of the training data; ``source_cell``: the source model's,
    when its checkpoint does not record it (both needed by the mapping by geometry);
    ``target_rate``: the training data's drive (surrogate.drive), asked of a cell-general
    source only."""
    source = load_any(source_path)
    record: dict[str, Any] = {"source": str(source_path), "synapses": None}
    if isinstance(source, GeneralELM):
        return _from_general(model, source, target_cell, target_rate, record)
    known = source_cell or trained_cell(source_path)
    same_cell = known is None or target_cell is None or _same_places(known, target_cell)
    if same_cell:
        _follow_the_walk(model, source)
    if _same_layout(model, source) and same_cell:
        model.load_state_dict(source.state_dict())
        record.update(layout="same", transferred="all weights", fresh=[])
        return record
    _require_transferable(model, source, source_path)
    assert isinstance(model, ELM) and isinstance(source, ELM)
    own = model.state_dict()
    given = source.state_dict()
    taken = {
        name: value
        for name, value in given.items()
        if name.startswith(LAYOUT_FREE) and name in own and own[name].shape == value.shape
    }
    if synapses == "by-position" or (
        synapses == "by-geometry" and same_cell and model.num_input == source.num_input
    ):  # on the same cell, row i is the same segment in both
        taken["_proto_w_s"] = _by_position(model, source)
    elif synapses == "by-geometry":
        target_geometry, source_geometry = _geometries(source_path, target_cell, source_cell)
        match = nearest_sources(target_geometry, source_geometry)
        source_order = source.config.segment_order
        _reroute(model, segment_order_like(match, target_geometry, source_order))
        taken["_proto_w_s"] = _by_geometry(model, source, match)
        record["matched_segments"] = len(set(match.tolist()))
    shared = min(source.config.num_output, model.config.num_output)
    for name in HEAD:  # outputs both have: the source's rows; an extra output starts fresh
        if name not in taken:
            taken[name] = own[name].clone()
            taken[name][:shared] = given[name][:shared]
    model.load_state_dict(taken, strict=False)
    fresh = sorted(name for name in own if name not in taken and not name.startswith(ROUTING))
    if source.config.num_output != model.config.num_output:
        extra = ", ".join(str(k) for k in range(shared, model.config.num_output))
        fresh.append(f"w_y rows {extra} (outputs the source does not have)")
    record.update(
        layout=_layout_change(source.config, model.config),
        transferred=sorted(taken),
        fresh=fresh,
        synapses=synapses,
    )
    return record


def _follow_the_walk(model: nn.Module, source: nn.Module) -> None:
    """On the source's own cell, walk its segments as it does (a source warm-started by
    geometry walks them in another order than the dataset's rows)."""
    if not (isinstance(model, ELM) and isinstance(source, ELM)):
        return
    order = source.config.segment_order
    same_rule = model.config.routing == source.config.routing == "neuronio"
    if same_rule and model.num_input == source.num_input and order != model.config.segment_order:
        _reroute(model, order)


def _from_general(
    model: nn.Module,
    general: GeneralELM,
    cell: dict | None,
    rate: Callable[[], float] | None,
    record: dict[str, Any],
) -> dict[str, Any]:
    """Every weight of the cell-general model's ELM of this cell at its drive (its routing
    included)."""
    source_path = record["source"]
    record["input_rate_hz"] = rate() if rate else REFERENCE_RATE_HZ
    cell_model = for_the_cell(general, cell, source_path, record["input_rate_hz"])
    _require_transferable(model, cell_model, source_path)
    assert isinstance(model, ELM) and isinstance(cell_model, ELM)
    assert cell_model.config.segment_order is not None
    _reroute(model, cell_model.config.segment_order)
    model.load_state_dict(cell_model.state_dict())
    record.update(
        layout="the cell-general model's ELM of this cell",
        transferred="all weights",
        fresh=[],
        synapses="by-geometry",
    )
    return record


def _require_transferable(model: nn.Module, source: nn.Module, source_path: str | Path) -> None:
    """Across layouts, only between ELMs of the same architecture."""
    if not (isinstance(model, ELM) and isinstance(source, ELM)):
        raise CheckpointError(
            f"{source_path}: a warm start across input layouts needs ELM models on both sides "
            f"(source {type(source).__name__}, target {type(model).__name__}); with another "
            "family, give a source trained on the same layout"
        )
    differences = [
        f"{name} {getattr(source.config, name)!r} vs {getattr(model.config, name)!r}"
        for name in ARCHITECTURE
        if getattr(source.config, name) != getattr(model.config, name)
    ]
    if differences:
        raise CheckpointError(
            f"{source_path}: the warm start needs the same architecture; differs in "
            + ", ".join(differences)
        )


def _layout_change(source: Any, target: Any) -> str:
    inputs, outputs = (source.num_input, target.num_input), (source.num_output, target.num_output)
    layout = "same inputs" if inputs[0] == inputs[1] else "{} → {} inputs".format(*inputs)
    if outputs[0] != outputs[1]:
        layout += ", {} → {} outputs".format(*outputs)
    return f"different ({layout})"


def describe(record: dict[str, Any]) -> str:
    """One line saying what a warm start took over (for the command line and the report)."""
    if record["layout"] == "same":
        return f"warm start from {record['source']}: every weight (same input layout)"
    if record["transferred"] == "all weights":
        drive = record.get("input_rate_hz")
        at = f" (synapse weights for its drive, {drive:.1f} Hz per input)" if drive else ""
        return f"warm start from {record['source']}: {record['layout']}, every weight{at}"
    synapses = {
        "by-geometry": "mapped by geometry (each to the source synapse at the same place)",
        "by-position": "mapped by position",
        "fresh": "started fresh",
    }[record["synapses"]]
    new_outputs = [entry for entry in record["fresh"] if entry.startswith("w_y rows")]
    return (
        f"warm start from {record['source']}, input layout {record['layout']}: took over "
        f"{', '.join(record['transferred'])}; synapse weights {synapses}"
        + "".join(f"; fresh: {entry}" for entry in new_outputs)
    )
