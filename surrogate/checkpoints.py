"""Checkpoints: our own format, and the state dicts released with the ELM paper.

Every file is read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
containers only: a crafted file cannot run code, it gets a :class:`CheckpointError` instead.
Files are written to a temporary name and renamed, so a killed run never leaves a torn checkpoint.
"""

from __future__ import annotations

import errno
import json
import pickle
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, cast

import torch
from pydantic import BaseModel
from torch import nn

from elmpipe.errors import InputError
from elmpipe.outputs import atomic_write
from surrogate.models import ELMConfig, build_model, model_config
from surrogate.models.elm import ELM
from surrogate.models.routing import neuronio_routing

FORMAT = "elmpipe-surrogate"
VERSION = 1


class CheckpointError(InputError):
    """A checkpoint is missing, unsafe, or not what it should be."""


def _load(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "global" in text:
            names = [line.strip() for line in text.splitlines() if "GLOBAL" in line][:1]
            raise CheckpointError(
                f"{path} is not a plain weights file (it names Python objects other than "
                f"tensors, which could run code); refusing to load it. {' '.join(names)}"
            ) from exc
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc


def require_finite(state_dict: dict[str, Any], path: str | Path) -> None:
    """Refuse weights that are not finite numbers: they come from a diverged training or a
    damaged file, and would surface later as an unrelated error or as NaN metrics."""
    bad = [
        name
        for name, value in state_dict.items()
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all()
    ]
    if bad:
        raise CheckpointError(
            f"{path} holds weights that are not finite numbers (nan or inf) in "
            f"{', '.join(bad[:4])}{' …' if len(bad) > 4 else ''}: it comes from a diverged "
            "training or was damaged; use another checkpoint"
        )


def is_elmpipe_checkpoint(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def save_atomic(payload: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(path, "wb") as handle:
            torch.save(payload, handle)
    except (RuntimeError, OSError) as exc:
        # torch's writer reports a full disk as "unexpected pos …": say what it is
        if shutil.disk_usage(path.parent).free < 64 * 2**20:
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from exc
        raise


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> None:
    """Model config + weights (+ anything JSON-like or tensors in ``extra``, e.g. optimiser)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        # every family's module keeps its pydantic config as ``config``
        "model": cast(BaseModel, model.config).model_dump(mode="json"),
        "state_dict": OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items()),
        **extra,
    }
    save_atomic(payload, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    payload = _load(path)
    if not is_elmpipe_checkpoint(payload):
        raise CheckpointError(
            f"{path} is not an elmpipe checkpoint (a released ELM state dict is read by "
            "`elmpipe evaluate -k FILE`, with --published-config or its model_config.json beside "
            "it, and by load_published_elm)"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} unsupported")
    return payload


def load_model(path: str | Path) -> nn.Module:
    """Rebuild the model of one of our checkpoints, weights loaded, in eval mode."""
    payload = read_checkpoint(path)
    if isinstance(payload.get("state_dict"), dict):
        require_finite(payload["state_dict"], path)
    try:
        model = build_model(model_config(payload["model"]))
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored model config: {exc}") from exc
    return model.eval()


# -- the released ELM checkpoints ---------------------------------------------------------------


def published_elm_config(
    state_dict: dict[str, torch.Tensor], config_json: dict[str, Any] | None = None
) -> ELMConfig:
    """Infer the ELMConfig of a released state dict (``model_config.json`` values win)."""
    cfg = dict(config_json or {})
    try:
        n_memory = state_dict["_proto_tau_m"].shape[0]
        first = state_dict["mlp.network.0.weight"]
        n_synapse = state_dict["_proto_w_s"].shape[0]
    except KeyError as exc:
        raise CheckpointError(f"not an ELM state dict: missing {exc}") from exc
    linear = sorted(k for k in state_dict if k.startswith("mlp.network.") and k.endswith(".weight"))
    n_branch = first.shape[1] - n_memory
    version = "v2" if "tau_b" in state_dict else "v1"
    trace = state_dict["tau_b" if version == "v2" else "tau_s"]
    if not torch.all(trace == trace[0]):
        raise CheckpointError("the state dict has unequal synapse time constants (unsupported)")
    indices = state_dict["input_to_synapse_indices"]
    num_input = int(cfg.get("num_input", int(indices.max()) + 1))
    return ELMConfig(
        num_input=num_input,
        num_output=int(cfg.get("num_output", state_dict["w_y.weight"].shape[0])),
        num_memory=n_memory,
        mlp_layers=len(linear) - 1,
        mlp_hidden=first.shape[0],
        activation=cfg.get("mlp_activation", "relu"),
        tau_s=float(trace[0]),
        tau_m_min=float(cfg.get("memory_tau_min", 1.0)),
        tau_m_max=float(cfg.get("memory_tau_max", 150.0)),
        learn_memory_tau=bool(cfg.get("learn_memory_tau", False)),
        num_branch=n_branch,
        num_synapse_per_branch=n_synapse // n_branch,
        routing="neuronio",
        version=version,
        lambda_value=float(cfg.get("lambda_value", 5.0)),
    )


def _read_model_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"model config not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object of model settings")
    return data


def load_published_elm(path: str | Path, config_json: str | Path | None = None) -> ELM:
    """Load a released ``neuronio_best_model_state.pt`` (optionally with its model_config.json).

    The stored routing indices and mask are loaded as they are (and checked against our
    NeuronIO routing, which reproduces them for the released models).
    """
    state_dict = _load(path)
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    require_finite(state_dict, path)
    if config_json is None and (sibling := Path(path).with_name("model_config.json")).exists():
        config_json = sibling
    extra = _read_model_config(Path(config_json)) if config_json else None
    try:
        config = published_elm_config(state_dict, extra)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: not a usable ELM configuration: {exc}") from exc
    model = ELM(config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: state dict does not match an ELM: {exc}") from exc
    index, mask = neuronio_routing(config.num_input, config.branches, config.synapses_per_branch)
    model.routing_matches_neuronio = bool(
        torch.equal(index, model.input_to_synapse_indices)
        and torch.equal(mask, model.valid_indices_mask)
    )
    return model.eval()


def trained_cell(path: str | Path) -> dict[str, Any] | None:
    """The cell record (segment places, landmarks) of the data a checkpoint was trained on, if
    it says (elmpipe checkpoints from fits that record it; not released state dicts)."""
    payload = _load(path)
    if not is_elmpipe_checkpoint(payload):
        return None
    cell = (payload.get("provenance") or {}).get("cell")
    return cell if isinstance(cell, dict) else None


def load_any(path: str | Path, published_config: str | Path | None = None) -> nn.Module:
    """Our checkpoint, or a released ELM state dict, in eval mode."""
    if not is_elmpipe_checkpoint(_load(path)):
        return load_published_elm(path, published_config)
    return load_model(path)
