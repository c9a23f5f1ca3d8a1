"""Typed configs loaded from YAML: unknown keys and wrong types are errors naming key and file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.cluster import ClusterConfig
from simulations.cell import CellSpec
from simulations.inputs import NeuronIOProtocol, ReplayProtocol
from simulations.simulate import SimulationSettings

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(ValueError):
    """A config file is missing or invalid."""


class SimulateConfig(BaseModel):
    """The data stage: which cell, which inputs, how to simulate, where to run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cell: CellSpec = CellSpec()
    protocol: Annotated[NeuronIOProtocol | ReplayProtocol, Field(discriminator="kind")] = (
        NeuronIOProtocol()
    )
    simulation: SimulationSettings = SimulationSettings()
    seed: int = Field(0, ge=0, description="dataset seed; simulation k = f(seed, split, k)")
    sims_per_chunk: int = Field(1, ge=1, description="simulations per storage chunk and task")
    cluster: ClusterConfig = ClusterConfig()


def describe_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{source}: {where}: {message}")
    return "\n".join(lines)


def load_config(path: str | Path, model: type[Model]) -> Model:
    """Read a YAML file into ``model``; every problem is reported with its key and the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, str(path))) from exc


def with_overrides(config: Model, overrides: dict) -> Model:
    """Apply dotted-key overrides (``{"simulation.duration_ms": 300}``), validated again."""
    data = config.model_dump(mode="json")
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    try:
        return type(config).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, "command-line options")) from exc
