"""Checkpoints (ours and the released ELM layout), safe loading, TorchScript export."""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from surrogate.checkpoints import (
    CheckpointError,
    load_model,
    load_published_elm,
    save_checkpoint,
)
from surrogate.export import export_torchscript
from surrogate.models import ELMConfig, LSTMConfig, TCNConfig, build_model, count_parameters
from surrogate.models.elm import initial_memory_logits
from surrogate.models.routing import neuronio_routing
from tests.precision import assert_float32_close


def released_state_dict(d_m: int, seed: int = 0, silu: bool = False) -> OrderedDict:
    """A state dict laid out like neuronio_best_model_state.pt (keys, order, shapes, dtypes)."""
    g = torch.Generator().manual_seed(seed)
    index, mask = neuronio_routing(1278, 45, 100)
    w_s = torch.full((4500,), 0.5)
    w_s[mask] = 0.37 + 0.3 * torch.randn(int(mask.sum()), generator=g)
    return OrderedDict(
        [
            ("_proto_w_s", w_s),
            ("tau_s", torch.full((4500,), 5.0)),
            ("_proto_tau_m", initial_memory_logits(d_m, 1.0, 150.0)),
            ("input_to_synapse_indices", index),
            ("valid_indices_mask", mask),
            ("mlp.network.0.weight", 0.2 * torch.randn(2 * d_m, 45 + d_m, generator=g)),
            ("mlp.network.0.bias", 0.1 * torch.randn(2 * d_m, generator=g)),
            ("mlp.network.2.weight", 0.2 * torch.randn(d_m, 2 * d_m, generator=g)),
            ("mlp.network.2.bias", 0.1 * torch.randn(d_m, generator=g)),
            ("w_y.weight", 0.3 * torch.randn(2, d_m, generator=g)),
            ("w_y.bias", torch.tensor([-1.2, 0.1])),
        ]
    )


def released_v1_outputs(sd: dict, x: np.ndarray, silu: bool = False) -> np.ndarray:
    """ELM v1 computed in numpy straight from the state dict (docs: equations of §3)."""
    p = {k: v.double().numpy() if v.is_floating_point() else v.numpy() for k, v in sd.items()}
    idx, mask = p["input_to_synapse_indices"], p["valid_indices_mask"]
    w_s = np.maximum(p["_proto_w_s"], 0.0)
    kappa_s = np.exp(-1.0 / p["tau_s"])
    tau_m = 1.0 + 149.0 / (1.0 + np.exp(-p["_proto_tau_m"]))
    kappa_m = np.exp(-1.0 / tau_m)
    w1, c1 = p["mlp.network.0.weight"], p["mlp.network.0.bias"]
    w2, c2 = p["mlp.network.2.weight"], p["mlp.network.2.bias"]
    wy, cy = p["w_y.weight"], p["w_y.bias"]
    batch, steps, _ = x.shape
    s = np.zeros((batch, 4500))
    m = np.zeros((batch, len(tau_m)))
    out = np.zeros((batch, steps, 2))
    for t in range(steps):
        s = kappa_s * s + w_s * x[:, t, idx] * mask
        b = s.reshape(batch, 45, 100).sum(-1)
        a = np.concatenate([b, kappa_m * m], axis=1) @ w1.T + c1
        h = a / (1 + np.exp(-a)) if silu else np.maximum(a, 0)
        delta = 1.7159 * np.tanh((2 / 3) * (h @ w2.T + c2))
        m = kappa_m * m + 5.0 * (1 - kappa_m) * delta
        out[:, t] = m @ wy.T + cy
    return out


@pytest.mark.parametrize(("d_m", "silu"), [(20, False), (7, False), (100, True)])
def test_released_checkpoint_loads_with_the_same_outputs(tmp_path, d_m, silu):
    sd = released_state_dict(d_m, seed=d_m, silu=silu)
    folder = tmp_path / f"num_memory_{d_m}"
    folder.mkdir()
    torch.save(sd, folder / "neuronio_best_model_state.pt")
    config = {
        "num_input": 1278,
        "num_memory": d_m,
        "num_branch": 45,
        "num_output": 2,
        "num_synapse_per_branch": 100,
        "memory_tau_min": 1.0,
        "memory_tau_max": 150.0,
        "input_to_synapse_routing": "neuronio_routing",
        "learn_memory_tau": False,
    }
    if silu:
        config["mlp_activation"] = "silu"
    (folder / "model_config.json").write_text(json.dumps(config))
    model = load_published_elm(folder / "neuronio_best_model_state.pt")
    assert model.routing_matches_neuronio
    assert count_parameters(model) == 4 * d_m**2 + 95 * d_m + 4502
    assert model.config.activation == ("silu" if silu else "relu")
    x = torch.randint(-1, 2, (2, 80, 1278), generator=torch.Generator().manual_seed(2)).float()
    expected = released_v1_outputs(sd, x.double().numpy(), silu)
    with torch.no_grad():
        single = model(x).double().numpy()
        double = model.double()(x.double()).numpy()
    np.testing.assert_allclose(double, expected, rtol=1e-9, atol=1e-9)  # same equations
    # float32 rounding only: 80 recurrent steps over sums of 4500 synapses and 45 branches
    assert_float32_close(single, expected, eps_units=2000)


def test_crafted_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"_proto_w_s": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_published_elm(path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_model(path)
    assert not marker.exists()


def test_wrong_or_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an elmpipe checkpoint"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an ELM state dict"):
        load_published_elm(tmp_path / "other.pt")


MODELS = {
    "elm": ELMConfig(num_input=40, num_memory=5, num_branch=4, num_synapse_per_branch=12),
    "elm-v2-2layers": ELMConfig(
        num_input=40,
        num_memory=5,
        num_branch=4,
        num_synapse_per_branch=12,
        version="v2",
        mlp_layers=2,
        activation="silu",
    ),
    "tcn": TCNConfig(num_input=40, depth=3, width=16, first_kernel=9, kernel=5),
    "lstm": LSTMConfig(num_input=40, hidden=12),
}


@pytest.mark.parametrize("name", MODELS)
def test_our_checkpoints_round_trip(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(MODELS[name]).eval()
    save_checkpoint(tmp_path / "m.pt", model, note="hello")
    loaded = load_model(tmp_path / "m.pt")
    x = torch.randint(-1, 2, (2, 60, 40)).float()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_export_gives_the_same_outputs(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(MODELS[name]).eval()
    path = export_torchscript(model, tmp_path / f"{name}.ts")
    scripted = torch.jit.load(str(path))
    x = torch.randint(-1, 2, (3, 70, 40)).float()
    with torch.no_grad():
        assert_float32_close(scripted(x), model(x), eps_units=256)  # a reordered graph


def test_exported_elm_steps_like_a_neuron(tmp_path):
    torch.manual_seed(1)
    model = build_model(MODELS["elm"]).eval()
    scripted = torch.jit.load(str(export_torchscript(model, tmp_path / "elm.ts")))
    x = torch.randint(-1, 2, (1, 30, 40)).float()
    branch, memory = scripted.initial_state(1)
    outputs = []
    for t in range(30):
        y, branch, memory = scripted.step(x[:, t], branch, memory)
        outputs.append(y)
    with torch.no_grad():
        assert_float32_close(torch.stack(outputs, 1), model(x), eps_units=256)
