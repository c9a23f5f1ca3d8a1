"""The model families elmpipe knows: one entry per family, which every command reads.

A family declares, in its own module, a :class:`ModelFamily`: its config class, its module, the
name of its run folders, the hyper-parameters it offers on the command line (and which of them
a sweep grids over, with the sweep's default values), and what it is for — a **surrogate**
(inputs → spike logit, soma: it fits NeuronIO datasets) and/or an **encoder** of the sequence
classifiers (LRA, SHD). ``elmpipe fit --model``, ``elmpipe sweep``, ``elmpipe task train``, run
configs, checkpoints and sweep tables all ask this registry, so a new family is one module and
one :func:`register` call: elmpipe's own families register in :mod:`surrogate.models`; a
family from another package registers through the ``elmpipe.model_families`` entry point (a
``ModelFamily`` object), and is then offered by every command with no edit to elmpipe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, TypeAdapter
from torch import nn

ENTRY_POINT_GROUP = "elmpipe.model_families"


@dataclass(frozen=True)
class FamilyOption:
    """A hyper-parameter offered as a command-line option (``fit``, ``task train``) and, with
    a ``sweep_key``, as a sweep axis (``--<sweep-key>`` with comma-separated values)."""

    field: str  # the config field it sets, or a shorthand that the family's ``expand`` reads
    flag: str | None = None  # default: --field-with-dashes
    help: str | None = None  # default: the field's description
    value_type: Any = None  # default: the config field's type (needed for a shorthand)
    sweep_key: str | None = None  # the sweep config key of its values; None: not swept
    sweep_values: tuple[Any, ...] = ()  # the sweep's default values

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.field.replace("_", "-")

    @property
    def sweep_flag(self) -> str:
        return "--" + (self.sweep_key or self.field).replace("_", "-")


@dataclass(frozen=True)
class ModelFamily:
    """Everything elmpipe needs to build, name, offer and sweep one kind of model."""

    name: str
    config: type[BaseModel]  # has ``family: Literal[name]``; surrogates also ``num_input``
    module: Callable[[Any], nn.Module]  # config → module
    run_name: Callable[[Any], str]  # config → run-folder name (e.g. elm-m20-b45)
    options: tuple[FamilyOption, ...] = ()
    surrogate: bool = True  # maps inputs to (spike logit, soma): fits NeuronIO datasets
    encoder: bool = False  # may encode the sequences of the LRA/SHD classifiers
    #: turns shorthand options into config fields (e.g. a TCN shape 7x128x153 → depth, width …)
    expand: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def option_type(self, option: FamilyOption) -> Any:
        if option.value_type is not None:
            return option.value_type
        return self.config.model_fields[option.field].annotation

    def option_help(self, option: FamilyOption) -> str:
        if option.help is not None:
            return option.help
        field = self.config.model_fields[option.field]
        return (field.description or option.field.replace("_", " ")) + (
            f" (default {field.default})" if field.default is not None else ""
        )

    def make_config(self, options: dict[str, Any]) -> BaseModel:
        """A validated config from options (shorthands expanded; ``None`` values dropped)."""
        given = {k: v for k, v in options.items() if v is not None}
        if self.expand is not None:
            given = self.expand(given)
        return self.config.model_validate({**given, "family": self.name})

    def sweep_axes(self) -> tuple[FamilyOption, ...]:
        return tuple(option for option in self.options if option.sweep_key)


FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    """Add a family; a name, flag or sweep key that another family uses differently is refused
    (every command would otherwise offer one of the two silently)."""
    if family.name in FAMILIES and FAMILIES[family.name] is not family:
        raise ValueError(f"a model family named {family.name!r} is already registered")
    for option in family.options:
        family.option_type(option)  # a field the config does not have fails here
        for other in FAMILIES.values():
            for theirs in other.options:
                same_flag = theirs.cli_flag == option.cli_flag and theirs.field != option.field
                same_key = option.sweep_key is not None and theirs.sweep_key == option.sweep_key
                if other is not family and (same_flag or same_key):
                    raise ValueError(
                        f"model family {family.name!r}: {option.cli_flag} / sweep key "
                        f"{option.sweep_key} is already family {other.name!r}'s"
                    )
    FAMILIES[family.name] = family
    return family


def load_plugins() -> None:
    """Register the families that installed packages declare as ``elmpipe.model_families``
    entry points; a broken plugin is named, not skipped."""
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            family = point.load()
        except Exception as exc:
            raise ImportError(
                f"the model family plugin {point.name!r} ({point.value}) failed to load: {exc}"
            ) from exc
        if not isinstance(family, ModelFamily):
            raise TypeError(
                f"the entry point {point.name!r} ({point.value}) is a "
                f"{type(family).__name__}, not a surrogate.models.registry.ModelFamily"
            )
        register(family)


def family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r} (one of {', '.join(FAMILIES)})") from None


def surrogate_families() -> tuple[str, ...]:
    return tuple(name for name, f in FAMILIES.items() if f.surrogate)


def encoder_families() -> tuple[str, ...]:
    return tuple(name for name, f in FAMILIES.items() if f.encoder)


def options_of(families: Iterable[str]) -> dict[str, tuple[FamilyOption, list[str]]]:
    """Command-line flag → (option, the families that take it), over ``families``."""
    flags: dict[str, tuple[FamilyOption, list[str]]] = {}
    for name in families:
        for option in FAMILIES[name].options:
            flags.setdefault(option.cli_flag, (option, []))[1].append(name)
    return flags


def model_config(data: Any) -> Any:
    """A config dict (with its ``family``) validated by that family's config class, so that
    errors locate the key itself (``num_memory``); a config object is returned as it is."""
    if isinstance(data, BaseModel):
        family(getattr(data, "family", "?"))
        return data
    if not isinstance(data, dict):
        raise ValueError(f"a model config is a mapping with a family, not {data!r}")
    return family(str(data.get("family"))).config.model_validate(data)


#: a pydantic field holding any registered family's config (checkpoints, run configs)
ModelConfig = Annotated[Any, BeforeValidator(model_config)]


def check_values(family_: ModelFamily, option: FamilyOption, values: Any) -> tuple[Any, ...]:
    """A sweep axis's values, one or several, validated against the option's type."""
    items = values if isinstance(values, list | tuple) else (values,)
    one_value: Any = family_.option_type(option)
    checked: tuple[Any, ...] = TypeAdapter(tuple[one_value, ...]).validate_python(tuple(items))
    if option.field not in family_.config.model_fields and family_.expand is not None:
        for value in checked:  # a shorthand: is it one the family can read?
            family_.expand({option.field: value})
    return checked


def build_model(config: Any) -> nn.Module:
    return family(config.family).module(config)
