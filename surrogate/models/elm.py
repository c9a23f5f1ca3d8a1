"""The Expressive Leaky Memory (ELM) neuron and Branch-ELM (Spieler et al., ICLR 2024).

One module covers vanilla ELM (one synapse per input) and Branch-ELM (synapses grouped on
branches, inputs routed to synapses), with both published memory updates (v1 gain λ(1 − κ_m),
v2 gain 1 − κ_m^λ). docs/surrogates.md gives the equations.

``forward`` is the fast formulation: one input projection for all time steps (the routing,
synapse weights and branch sums folded into one d_in × d_tree matrix; computed event by event
for sparse spike inputs, as a GEMM for dense ones), a linear scan for the
leaky branch trace, the branch half of the first MLP layer applied to all steps at once, κ_m
folded into the recurrent weights, and the readout after the loop; the only sequential work is a
d_m-sized recurrence. :func:`surrogate.models.elm_reference.plain_forward` is the per-step
version written straight from the equations; the tests prove the two agree.

Parameter and buffer names follow the released checkpoints' state-dict layout, so those load
directly (surrogate/checkpoints.py).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from elmpipe.settings import StrictModel
from surrogate.models.event_projection import project_events
from surrogate.models.recurrence import elm_recurrence
from surrogate.models.registry import FamilyOption, ModelFamily
from surrogate.models.routing import neuronio_routing, no_routing, random_routing
from surrogate.models.scan import leaky_scan

#: a bound on every layer width: far above any published surrogate (d_m ≤ 100s), far below a
#: request that would ask for terabytes and abort the process (`--num-memory 1000000`)
MAX_UNITS = 16384


class ELMConfig(StrictModel):
    """Every hyper-parameter of the ELM notation table; defaults = the released NeuronIO models."""

    family: Literal["elm"] = "elm"
    num_input: int = Field(gt=0, description="d_in, input channels")
    num_output: int = Field(2, gt=0, description="d_o (NeuronIO: spike logit, soma)")
    num_memory: int = Field(20, gt=0, le=MAX_UNITS, description="d_m, memory units")
    lambda_value: float = Field(5.0, gt=0, description="λ, memory-update scale")
    mlp_layers: int = Field(1, ge=1, description="l_mlp, hidden layers")
    mlp_hidden: int | None = Field(None, gt=0, le=MAX_UNITS, description="d_mlp; None: 2·d_m")
    activation: Literal["relu", "silu"] = "relu"
    tau_s: float = Field(5.0, gt=0, description="synapse (v1) / branch (v2) trace τ, ms")
    tau_m_min: float = Field(1.0, ge=0, description="memory τ lower bound = init start, ms")
    tau_m_max: float = Field(150.0, gt=0, description="memory τ upper bound = init end, ms")
    learn_memory_tau: bool = False
    w_s_init: float = 0.5
    num_branch: int | None = Field(
        45, gt=0, le=MAX_UNITS, description="d_tree; None: one per input"
    )
    num_synapse_per_branch: int = Field(100, gt=0, le=MAX_UNITS, description="d_brch")
    routing: Literal["none", "random", "neuronio"] = "neuronio"
    routing_seed: int = 0
    segment_order: tuple[int, ...] | None = Field(
        None,
        description="neuronio routing: the order in which branches walk the segments (a "
        "permutation of the input rows; None: the dataset's row order). A warm start by "
        "geometry sets it, so that each branch reads the segments at the places where the "
        "source model's branch read",
    )
    version: Literal["v1", "v2"] = "v1"
    dt: float = Field(1.0, gt=0, description="time step, ms")

    @model_validator(mode="after")
    def _consistent(self) -> ELMConfig:
        if self.tau_m_max <= self.tau_m_min:
            raise ValueError("tau_m_max must exceed tau_m_min")
        if self.routing == "none" and self.num_synapses != self.num_input:
            raise ValueError(
                "routing 'none' needs num_branch · num_synapse_per_branch = num_input "
                f"({self.num_synapses} ≠ {self.num_input}); use num_branch null for vanilla ELM"
            )
        if self.segment_order is not None:
            if self.routing != "neuronio":
                raise ValueError("segment_order applies to the neuronio routing only")
            if sorted(self.segment_order) != list(range(self.num_input // 2)):
                raise ValueError(
                    f"segment_order must order the {self.num_input // 2} segments 0 … "
                    f"{self.num_input // 2 - 1}, each once"
                )
        if self.routing == "neuronio":
            stride = math.ceil(self.num_input / self.branches)
            if stride > self.num_synapse_per_branch:
                raise ValueError(
                    f"neuronio routing needs ⌈num_input/num_branch⌉ = {stride} ≤ "
                    f"num_synapse_per_branch = {self.num_synapse_per_branch}"
                )
        return self

    @property
    def branches(self) -> int:
        return self.num_branch if self.num_branch is not None else self.num_input

    @property
    def synapses_per_branch(self) -> int:
        return self.num_synapse_per_branch if self.num_branch is not None else 1

    @property
    def num_synapses(self) -> int:
        return self.branches * self.synapses_per_branch

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or 2 * self.num_memory


def project_inputs(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight`` for inputs (batch, time, d_in), dense or as a sparse COO tensor of events.

    The training loader gives NeuronIO inputs as events (surrogate.data.WindowBatches), which
    :func:`project_events` projects event by event. Dense inputs (LRA tokens, whole simulations
    in evaluation) keep the GEMM: finding the events of a dense tensor costs more than the GEMM.
    """
    return project_events(x, weight) if x.is_sparse else x @ weight


class MLP(nn.Module):
    """``network``: Linear, φ, (Linear, φ)·(l_mlp − 1), Linear — the released key layout."""

    def __init__(self, d_in: int, hidden: int, d_out: int, layers: int, activation: str) -> None:
        super().__init__()
        act = nn.ReLU if activation == "relu" else nn.SiLU
        modules: list[nn.Module] = [nn.Linear(d_in, hidden), act()]
        for _ in range(layers - 1):
            modules += [nn.Linear(hidden, hidden), act()]
        modules.append(nn.Linear(hidden, d_out))
        self.network = nn.Sequential(*modules)


def initial_memory_logits(num_memory: int, tau_min: float, tau_max: float) -> torch.Tensor:
    """θ_m for τ_m log-spaced over [τ_min, τ_max] (τ_m = τ_min + (τ_max − τ_min)·sigmoid(θ_m)).

    Computed in float32, as for the released models (first θ ≈ −18.87, last τ ≈ 149.99998).
    """
    low, high = tau_min + 1e-6, tau_max - 1e-6
    if num_memory == 1:
        tau = torch.tensor([low], dtype=torch.float32)
    else:
        tau = torch.logspace(math.log10(low), math.log10(high), num_memory, dtype=torch.float32)
    tau = tau.clamp(low, high)
    return torch.log((tau - tau_min) / (tau_max - tau))


class ELM(nn.Module):
    """ELM / Branch-ELM: (batch, time, d_in) → (batch, time, d_o), state reset every call."""

    # registered in __init__ (buffers, or a parameter where said), declared for type checkers
    input_to_synapse_indices: torch.Tensor
    valid_indices_mask: torch.Tensor
    synapse_branch: torch.Tensor
    tau_s: torch.Tensor  # v1
    tau_b: torch.Tensor  # v2
    _proto_tau_m: torch.Tensor  # a parameter when learned (learn_memory_tau)
    #: set by surrogate.checkpoints on a loaded model: is its routing NeuronIO's?
    routing_matches_neuronio: bool

    def __init__(self, config: ELMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        d_tree, d_brch, d_s = c.branches, c.synapses_per_branch, c.num_synapses
        self.num_input = c.num_input
        self.num_branch = d_tree
        self.num_memory = c.num_memory
        self.lambda_value = c.lambda_value
        self.tau_m_min = c.tau_m_min
        self.tau_m_max = c.tau_m_max
        self.dt = c.dt
        self.v2 = c.version == "v2"
        self.silu = c.activation == "silu"
        self._proto_w_s = nn.Parameter(torch.full((d_s,), c.w_s_init))
        if self.v2:
            self.register_buffer("tau_b", torch.full((d_tree,), c.tau_s))
        else:
            self.register_buffer("tau_s", torch.full((d_s,), c.tau_s))
        logits = initial_memory_logits(c.num_memory, c.tau_m_min, c.tau_m_max)
        if c.learn_memory_tau:
            self._proto_tau_m = nn.Parameter(logits)
        else:
            self.register_buffer("_proto_tau_m", logits)
        if c.routing == "neuronio":
            index, mask = neuronio_routing(c.num_input, d_tree, d_brch, c.segment_order)
        elif c.routing == "random":
            index, mask = random_routing(c.num_input, d_s, c.routing_seed)
        else:
            index, mask = no_routing(c.num_input, d_s)
        self.register_buffer("input_to_synapse_indices", index)
        self.register_buffer("valid_indices_mask", mask)
        self.register_buffer(
            "synapse_branch", torch.arange(d_tree).repeat_interleave(d_brch), persistent=False
        )
        # vanilla ELM: synapse k is input k on its own branch, so the projection is diagonal
        self.identity_routing = c.routing == "none" and d_brch == 1
        self.mlp = MLP(d_tree + c.num_memory, c.hidden, c.num_memory, c.mlp_layers, c.activation)
        self.w_y = nn.Linear(c.num_memory, c.num_output)

    # -- derived quantities --------------------------------------------------------------------

    def synapse_weights(self) -> torch.Tensor:
        """Effective synapse weights ReLU(w̃_s), zero on masked synapses."""
        return torch.relu(self._proto_w_s) * self.valid_indices_mask.to(self._proto_w_s.dtype)

    def memory_tau(self) -> torch.Tensor:
        return self.tau_m_min + (self.tau_m_max - self.tau_m_min) * torch.sigmoid(self._proto_tau_m)

    def memory_kappa(self) -> torch.Tensor:
        return torch.exp(-self.dt / self.memory_tau().clamp(min=1e-6))

    def memory_gain(self, kappa_m: torch.Tensor) -> torch.Tensor:
        """v1: λ(1 − κ_m); v2: 1 − κ_m^λ."""
        if self.v2:
            return 1.0 - kappa_m.pow(self.lambda_value)
        return self.lambda_value * (1.0 - kappa_m)

    def trace_tau(self) -> torch.Tensor:
        return self.tau_b if self.v2 else self.tau_s

    def input_projection(self) -> torch.Tensor:
        """W_eff (d_in × d_tree): routing, synapse weights and branch sums in one matrix."""
        w = self.synapse_weights()
        weights = torch.zeros(self.num_input, self.num_branch, dtype=w.dtype, device=w.device)
        return weights.index_put(
            (self.input_to_synapse_indices, self.synapse_branch), w, accumulate=True
        )

    # -- the fast formulation --------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tau = self.trace_tau()
        if not bool(torch.all(tau == tau[0])):
            raise ValueError("the fast ELM needs one trace time constant for all synapses")
        kappa_s = math.exp(-self.dt / max(float(tau[0]), 1e-6))
        if self.identity_routing:
            x = x.to_dense() if x.is_sparse else x
            projected = x * self.synapse_weights()  # a diagonal W_eff, without the GEMM
        else:
            projected = project_inputs(x, self.input_projection())
        branch = leaky_scan(projected, kappa_s)  # (B, T, d_tree)
        layers = [m for m in self.mlp.network if isinstance(m, nn.Linear)]
        first = layers[0]
        pre = nn.functional.linear(branch, first.weight[:, : self.num_branch], first.bias)
        kappa_m = self.memory_kappa()
        recurrent = first.weight[:, self.num_branch :] * kappa_m  # κ_m folded into W1's memory half
        hidden: list[tuple[torch.Tensor, torch.Tensor]] = [
            (layer.weight, layer.bias) for layer in layers[1:-1]
        ]
        memory = elm_recurrence(
            pre,
            recurrent,
            hidden,
            layers[-1].weight,
            layers[-1].bias,
            kappa_m,
            self.memory_gain(kappa_m),
            self.silu,
        )
        return self.w_y(memory)

    def count_parameters(self) -> int:
        """Trainable parameters (the ELM papers' P)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


FAMILY = ModelFamily(
    name="elm",
    config=ELMConfig,
    module=ELM,
    run_name=lambda config: f"elm-m{config.num_memory}-b{config.branches}",
    options=(
        FamilyOption("num_memory", sweep_key="num_memory", sweep_values=(1, 2, 5, 10, 20, 50)),
        FamilyOption("num_branch", sweep_key="num_branch", sweep_values=(45,)),
        FamilyOption(
            "num_synapse_per_branch",
            flag="--synapses-per-branch",
            sweep_key="synapses_per_branch",
            sweep_values=(100,),
        ),
        FamilyOption("version", help="memory update rule (default v1)"),
        FamilyOption("activation", help="MLP activation (default relu)"),
    ),
    encoder=True,
)
