"""The config tree and its one loader: every YAML file and option goes through here.

Configs are typed sections (pydantic models with ``extra="forbid"``): the data stage
(:class:`SimulateConfig`), a fit (:class:`FitFileConfig`), a benchmark task
(surrogate.tasks.classification.TaskTrainConfig) and the whole pipeline (:class:`RunConfig`,
which is made of the same sections). :func:`load_config` reads any of them; every problem —
a missing file, a YAML syntax error, a top level that is not a mapping, an unknown key, a wrong
type, an impossible value — is a :class:`ConfigError` naming the file and the dotted key (exit
code 2). Settings that depend on the data (a model's input count) are checked as soon as the data
is known and before any simulation or batch, still naming the file and key (:func:`checked`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from elmpipe.dataset import SIMS_PER_FILE
from elmpipe.errors import ConfigError
from elmpipe.settings import StrictModel
from pipelines.cluster import ClusterConfig
from pipelines.sweep import SweepConfig
from simulations.calibration import CalibrationSettings
from simulations.cell import CellSpec
from simulations.inputs import NeuronIOProtocol, ReplayProtocol
from simulations.simulator import SimulationSettings
from surrogate.models import model_section, surrogate_families
from surrogate.neuronio_fit import TrainSettings

Model = TypeVar("Model", bound=BaseModel)
OPTIONS = "command-line options"


def describe_errors(exc: ValidationError, source: str, prefix: str = "") -> str:
    lines = []
    for error in exc.errors():
        parts = [*(prefix.split(".") if prefix else []), *error["loc"]]
        where = ".".join(str(part) for part in parts)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{source}: {where or '(top level)'}: {message}")
    return "\n".join(lines)


@contextlib.contextmanager
def checked(source: str, prefix: str = "") -> Iterator[None]:
    """Turn validation errors raised inside into a ConfigError naming ``source`` and the key."""
    try:
        yield
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source, prefix)) from None
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{source}: {prefix or '(top level)'}: {exc}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (the standard loader keeps
    the last silently, so the first setting a user reads is not the one that counts)."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is given twice (lines {seen[key] + 1} and "
                f"{key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; an empty file is an error (a run of every default,
    into a default folder, is never what an empty file meant)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file not found: {path}" if not path.exists() else f"{path} is not a file"
        )
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {problem or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (YAML) file") from None
    if data is None or data == {}:
        raise ConfigError(
            f"{path} is empty: a config sets at least one section (configs/demo.yaml shows them)"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of settings (key: value) at the top level, "
            f"found a {type(data).__name__}"
        )
    return data


def load_config(path: str | Path, model: type[Model], **fixed: Any) -> Model:
    """Read a YAML file into ``model``; every problem is reported with its key and the file.

    ``fixed``: values the caller sets (e.g. the task named on the command line); a file that
    sets one of them to something else is refused, not silently overridden.
    """
    data = read_yaml(path)
    for key, value in fixed.items():
        if key in data and data[key] != value:
            raise ConfigError(f"{path}: {key}: the file says {data[key]!r}, the command {value!r}")
        data[key] = value
    with checked(str(path)):
        return model.model_validate(data)


def with_overrides(config: Model, overrides: dict[str, Any], source: str = OPTIONS) -> Model:
    """Apply dotted-key overrides (``{"simulation.duration_ms": 300}``), validated again.

    Only what the config file set is dumped and validated again with the overrides, so
    defaults and fields filled in later (a sweep's training settings) stay as they were."""
    if all(value is None for value in overrides.values()):
        return config
    data = config.model_dump(mode="json", exclude_unset=True)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    with checked(source):
        return type(config).model_validate(data)


# -- the sections ---------------------------------------------------------------------------------


class SimulateConfig(StrictModel):
    """The data stage: which cell, which inputs, how to simulate, where to run."""

    cell: CellSpec = CellSpec()
    protocol: Annotated[NeuronIOProtocol | ReplayProtocol, Field(discriminator="kind")] = (
        NeuronIOProtocol()
    )
    simulation: SimulationSettings = SimulationSettings()
    seed: int = Field(0, ge=0, description="dataset seed; simulation k = f(seed, split, k)")
    sims_per_chunk: int = Field(1, ge=1, description="simulations per storage chunk and task")
    calibration: CalibrationSettings = CalibrationSettings()
    cluster: ClusterConfig = ClusterConfig()


def _model_section(value: Any) -> Any:
    """A surrogate's ``model:`` section; the hyper-parameters are checked with the data."""
    return None if value is None else model_section(value, surrogate_families(), ("num_input",))


class FitFileConfig(TrainSettings):
    """``elmpipe fit --config``: training settings and a ``model:`` section."""

    model: dict[str, Any] = Field(
        default_factory=lambda: {"family": "elm"},
        description="family (elm, lstm, tcn) and hyper-parameters; num_input comes from the data",
    )

    _model = field_validator("model", mode="before")(_model_section)

    def settings(self) -> TrainSettings:
        return TrainSettings(**self.model_dump(exclude={"model"}))


class DataStage(StrictModel):
    protocol: NeuronIOProtocol = NeuronIOProtocol()
    simulation: SimulationSettings = SimulationSettings()
    seed: int = Field(0, ge=0)
    sims_per_chunk: int = Field(1, ge=1)
    calibration: CalibrationSettings = CalibrationSettings()
    splits: dict[str, int] = Field(
        default_factory=lambda: {"train": 64, "valid": 8, "test": 16},
        description="simulations per split; needs train, valid and test",
    )
    min_test_spikes: int | None = Field(
        None,
        ge=1,
        description="grow the evaluated split until the evaluation scores this many output "
        "spikes (an AUC on fewer is noise); None: the split as given",
    )
    max_test_simulations: int | None = Field(
        None, ge=1, description="the most it may grow to; None: 4 × its size in splits"
    )
    min_valid_spikes_per_simulation: float | None = Field(
        None,
        gt=0,
        le=100,
        description="grow the validation split until it holds this many scored output spikes "
        "per simulation on average (the kept epoch is chosen on it); None: as given",
    )
    max_valid_simulations: int | None = Field(
        None, ge=1, description="the most it may grow to; None: 4 × its size in splits"
    )

    @model_validator(mode="after")
    def _splits(self) -> DataStage:
        missing = {"train", "valid", "test"} - set(self.splits)
        if missing:
            raise ValueError(f"splits needs {', '.join(sorted(missing))}")
        if any(n <= 0 for n in self.splits.values()):
            raise ValueError("every split needs at least one simulation")
        return self


class FitStage(StrictModel):
    """One model (``model``) or a grid (``sweep``); ``train`` holds the training settings."""

    model: dict[str, Any] | None = Field(
        default_factory=lambda: {"family": "elm"},
        description="family and hyper-parameters; num_input comes from the data",
    )
    sweep: SweepConfig | None = Field(None, description="a grid of models instead of one")
    train: TrainSettings = TrainSettings()
    torch_threads: int | None = Field(None, ge=1, description="default: all cores")

    _model = field_validator("model", mode="before")(_model_section)

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep_train(cls, value: Any) -> Any:
        if isinstance(value, dict) and "train" in value:
            raise ValueError("set the training settings in fit.train, not fit.sweep.train")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> FitStage:
        if (self.model is None) == (self.sweep is None):
            raise ValueError("give exactly one of fit.model and fit.sweep")
        return self


class EvaluateStage(StrictModel):
    split: str = "test"
    sims_per_file: int = Field(SIMS_PER_FILE, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ReportStage(StrictModel):
    examples: int = Field(3, ge=1, description="test simulations shown as traces")


class RunConfig(StrictModel):
    """``elmpipe run``: every stage's section; docs/pipeline.md explains each."""

    name: str = "run"
    out: str = Field("runs/run", description="run folder (relative paths: from where you run)")
    cell: CellSpec = CellSpec()
    data: DataStage = DataStage()
    fit: FitStage = FitStage()
    evaluate: EvaluateStage = EvaluateStage()
    report: ReportStage = ReportStage()
    cluster: ClusterConfig = ClusterConfig()

    def simulate_config(self) -> SimulateConfig:
        return SimulateConfig(
            cell=self.cell,
            protocol=self.data.protocol,
            simulation=self.data.simulation,
            seed=self.data.seed,
            sims_per_chunk=self.data.sims_per_chunk,
            calibration=self.data.calibration,
            cluster=self.cluster,
        )


#: top-level keys only a run config has: a file with one of them is read as a run config
RUN_ONLY_KEYS = frozenset(RunConfig.model_fields) - frozenset(SimulateConfig.model_fields)


def load_simulate_config(path: str | Path) -> SimulateConfig:
    """A data-stage config, or a run config's data stage: ``elmpipe simulate -c run.yaml``
    grows that run's store with exactly the settings ``elmpipe run`` would use."""
    if RUN_ONLY_KEYS & read_yaml(path).keys():
        stage = load_config(path, RunConfig).simulate_config()
        # every value explicit, so command-line overrides re-validate the whole stage
        return SimulateConfig.model_validate(stage.model_dump(mode="json"))
    return load_config(path, SimulateConfig)
