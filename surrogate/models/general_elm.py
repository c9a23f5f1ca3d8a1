"""A cell-general Branch-ELM: one set of weights for any morphology.

A Branch-ELM's only cell-specific parts are its routing (which segment each synapse reads) and
its per-synapse weights w̃_s. Here both come from where each segment sits in its cell
(surrogate.geometry), so that the rest — memory and trace time constants, the MLP, the output
head — is shared by every cell:

- **routing**: the NeuronIO routing over the segments in a *canonical* order — basal by
  landmark position (soma to farthest tip), then apical up to the nexus, then the tuft — so that
  branch j reads the same region of every cell (the first branches the proximal basal
  dendrites, the last the distal tuft), whatever order its morphology file lists them in;
- **synapse weights**: w̃_s = f_θ(features of the synapse's segment, its kind, its slot on the
  branch) · r_ref / r_cell, a small MLP learned across cells, scaled by how hard the cell's
  data drive it (surrogate.drive: a cell that needs more input spikes to fire moves less with
  each).

:meth:`GeneralELM.for_cell` gives the surrogate of one cell as a view that trains the shared
weights (pretraining across cells); :meth:`GeneralELM.materialize` gives a plain ELM of that
cell, its weights copied out (a zero-shot surrogate, and the start of a fine-tuning).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from elmpipe.settings import StrictModel
from surrogate.geometry import SUBTREES, CellGeometry
from surrogate.models.elm import ELM, MAX_UNITS, ELMConfig
from surrogate.models.registry import FamilyOption, ModelFamily

#: the Hay cell's drive under NeuronIO's inputs (mean excitatory rate per channel at input scale
#: 1): the drive at which the synapse weights f_θ computes are taken as they are
REFERENCE_RATE_HZ = 12.2


def weight_scale(rate_hz: float | None) -> float:
    """The factor on the synapse weights of a cell driven at ``rate_hz`` (None: the reference):
    elmpipe calibrates every cell to fire like the Hay cell, so a cell that needed more input
    spikes per channel moves less with each (surrogate.drive)."""
    if rate_hz is None:
        return 1.0
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"the cell's input rate must be positive, got {rate_hz} Hz")
    return REFERENCE_RATE_HZ / rate_hz


#: per synapse: 3 geometric features, the subtree (one-hot), excitatory, slot on the branch
SYNAPSE_FEATURES = 3 + len(SUBTREES) + 2


class GeneralELMConfig(StrictModel):
    family: Literal["elm-general"] = "elm-general"
    num_output: int = Field(2, gt=0, description="spike logit, soma (and nexus)")
    num_memory: int = Field(20, gt=0, le=MAX_UNITS, description="d_m, memory units")
    num_branch: int = Field(45, gt=0, le=MAX_UNITS, description="d_tree")
    num_synapse_per_branch: int = Field(100, gt=0, le=MAX_UNITS, description="d_brch")
    synapse_hidden: int = Field(32, gt=0, le=MAX_UNITS, description="f_θ's hidden units")
    mlp_layers: int = Field(1, ge=1)
    activation: Literal["relu", "silu"] = "relu"

    def elm_config(self, num_input: int, segment_order: tuple[int, ...]) -> ELMConfig:
        """The plain Branch-ELM of one cell with this model's architecture."""
        return ELMConfig(
            num_input=num_input,
            num_output=self.num_output,
            num_memory=self.num_memory,
            num_branch=self.num_branch,
            num_synapse_per_branch=self.num_synapse_per_branch,
            mlp_layers=self.mlp_layers,
            activation=self.activation,
            segment_order=segment_order,
        )


def canonical_order(geometry: CellGeometry) -> tuple[int, ...]:
    """Basal, then apical up to the nexus, then the tuft; each from the soma outwards."""
    keys = (geometry.distance, geometry.landmark_position(), geometry.subtree())
    return tuple(int(i) for i in np.lexsort(keys))


def synapse_features(elm: ELM, geometry: CellGeometry) -> torch.Tensor:
    """(synapses, SYNAPSE_FEATURES): where each synapse's segment sits, its kind, its slot."""
    n = elm.num_input // 2
    channel = elm.input_to_synapse_indices.numpy()
    segment = channel % n
    subtree = np.eye(len(SUBTREES))[geometry.subtree()[segment]]
    per_branch = elm.config.synapses_per_branch
    slot = (np.arange(channel.size) % per_branch) / max(per_branch - 1, 1)
    columns = [geometry.features()[segment], subtree, (channel < n)[:, None], slot[:, None]]
    return torch.as_tensor(np.concatenate(columns, axis=1), dtype=torch.float32)


class _CellView(ELM):
    """One cell's Branch-ELM whose synapse weights the general model computes (and trains)."""

    def __init__(
        self, config: ELMConfig, general: GeneralELM, features: torch.Tensor, scale: float
    ) -> None:
        super().__init__(config)
        del self._proto_w_s  # computed, not a parameter of the view
        self.register_buffer("features", features, persistent=False)
        self.scale = scale
        self.mlp, self.w_y = general.mlp, general.w_y  # shared modules: one set of weights
        self._proto_tau_m = general.memory_logits()
        self.general = [general]  # a list: not registered twice as a submodule

    def synapse_weights(self) -> torch.Tensor:
        raw = self.general[0].synapse_function(self.features).squeeze(-1) * self.scale
        return torch.relu(raw) * self.valid_indices_mask.to(raw.dtype)


class GeneralELM(nn.Module):
    """The shared parts of a Branch-ELM and f_θ; :meth:`for_cell` makes a cell's surrogate."""

    def __init__(self, config: GeneralELMConfig) -> None:
        super().__init__()
        self.config = config
        template = ELM(config.elm_config(2 * config.num_branch, tuple(range(config.num_branch))))
        self.mlp, self.w_y = template.mlp, template.w_y
        self.register_buffer("_proto_tau_m", template._proto_tau_m.clone())
        hidden, last = config.synapse_hidden, nn.Linear(config.synapse_hidden, 1)
        nn.init.zeros_(last.weight)  # every synapse starts at the ELM's initial weight
        nn.init.constant_(last.bias, template.config.w_s_init)
        self.synapse_function = nn.Sequential(nn.Linear(SYNAPSE_FEATURES, hidden), nn.ReLU(), last)

    def memory_logits(self) -> torch.Tensor:
        logits = self._proto_tau_m
        assert isinstance(logits, torch.Tensor)
        return logits

    def for_cell(self, cell: dict[str, Any], input_rate_hz: float | None = None) -> ELM:
        """The surrogate of the cell a dataset records (``Dataset.cell``), driven at
        ``input_rate_hz`` (:func:`surrogate.drive.input_rate_hz` of its data; None: the
        reference drive), sharing this model's weights: training it trains them."""
        geometry = CellGeometry.from_record(cell)
        config = self.config.elm_config(2 * len(geometry), canonical_order(geometry))
        probe = ELM(config)  # its routing gives the synapses' segments
        features = synapse_features(probe, geometry)
        return _CellView(config, self, features, weight_scale(input_rate_hz))

    @torch.no_grad()
    def materialize(self, cell: dict[str, Any], input_rate_hz: float | None = None) -> ELM:
        """A plain Branch-ELM of the cell with this model's weights copied in: the same outputs
        as :meth:`for_cell`, saved and fine-tuned like any ELM."""
        view = self.for_cell(cell, input_rate_hz)
        assert isinstance(view, _CellView)
        plain = ELM(view.config)
        state = {k: v for k, v in view.state_dict().items() if k in plain.state_dict()}
        state["_proto_w_s"] = self.synapse_function(view.features).squeeze(-1) * view.scale
        plain.load_state_dict(state)
        return plain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError("a cell-general ELM runs on a cell: use model.for_cell(dataset.cell)")


FAMILY = ModelFamily(
    name="elm-general",
    config=GeneralELMConfig,
    module=GeneralELM,
    run_name=lambda config: f"elm-general-m{config.num_memory}-b{config.num_branch}",
    options=(FamilyOption("synapse_hidden"),),
    surrogate=False,
)
