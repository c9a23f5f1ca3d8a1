"""What every elmpipe command shares: the help epilog, common options, the cell builder.

Commands raise elmpipe's own errors (elmpipe.errors); ``pipelines.cli`` maps them to exit codes.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel

from elmpipe.errors import EXIT_CODES_HELP, InputError
from pipelines.cluster import ClusterConfig

EPILOG = EXIT_CODES_HELP


class FiniteRange(click.FloatRange):
    """A float range that also refuses nan (click's range lets it through: every comparison
    with nan is false), which NEURON then met as an integrator error with a traceback."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:
            self.fail(f"{value!r} is not a number", param, ctx)
        return number

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()


def build_cell(morphology: Path | None, parameters: str | None, nexus: str | None = None) -> Any:
    """The cell of a command's options (``--apical-trees`` and a lab's model's options
    included, see :func:`apical_trees` and :func:`cell_model_overrides`)."""
    from pydantic import ValidationError

    from simulations.cell import CellSpec

    given: dict[str, Any] = {
        "morphology": None if morphology is None else str(morphology),
        "parameters": parameters,
        "nexus": nexus,
        "apical_trees": apical_trees(),
    }
    given |= {key.removeprefix("cell."): v for key, v in cell_model_overrides().items()}
    try:
        spec = CellSpec.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise InputError(f"the cell options: {problems}") from None
    return spec.build()


def comma_separated(text: str | None, kind: type = int, option: str = "option") -> tuple | None:
    """'1,2,5' → (1, 2, 5); None stays None."""
    if text is None:
        return None
    try:
        return tuple(kind(v.strip()) for v in text.split(","))
    except ValueError:
        raise InputError(
            f"{option}: expected comma-separated {kind.__name__}s, got {text!r}"
        ) from None


_morphology = click.option(
    "--morphology",
    "-m",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Reconstruction to use (Neurolucida .asc, .swc or Blue Brain .h5 v1/v2). Default: the "
    "built-in cell.",
)

_APICAL_TREES = "elmpipe.apical_trees"


def _remember_apical_trees(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    trees = comma_separated(value, int, "--apical-trees")
    ctx.meta[_APICAL_TREES] = None if trees is None else list(trees)


_apical_trees = click.option(
    "--apical-trees",
    default=None,
    metavar="K[,K…]",
    expose_value=False,
    callback=_remember_apical_trees,
    help="The dendrite trees (numbered 0, 1, … in file order) that are apical, for a file whose "
    "tags do not say; every other dendrite tree is then basal. Default: the file's tags.",
)


def apical_trees() -> list[int] | None:
    """``--apical-trees`` of the running command (None: not given, or no command running).

    The option travels with ``--morphology`` and is read here rather than passed as an argument,
    so that every command taking a morphology takes it too; commands that build a config put it
    under ``cell.apical_trees``."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is None else ctx.meta.get(_APICAL_TREES)


_CELL_MODEL = "elmpipe.cell_model"


def _remember_model_option(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    assert param.name is not None
    ctx.meta.setdefault(_CELL_MODEL, {})[param.name] = value


def _model_option(*names: str, **kwargs: Any) -> Callable:
    return click.option(*names, expose_value=False, callback=_remember_model_option, **kwargs)


_cell_model_options = [
    _model_option(
        "--template",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="A lab's own cell model instead of a morphology with elmpipe's biophysics: a NEURON "
        "template file (.hoc, or .py defining a class). A template is code, and it runs "
        "(docs/own-model.md).",
    ),
    _model_option("--template-name", metavar="NAME", default=None, help="The template's name."),
    _model_option(
        "--template-arg",
        "template_args",
        multiple=True,
        metavar="VALUE",
        help="An argument of the template, in order; repeat for each (numbers pass as numbers).",
    ),
    _model_option(
        "--preload",
        multiple=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="A hoc file the template expects loaded first; repeatable.",
    ),
    _model_option(
        "--mechanisms",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="The model's folder of .mod files: they replace elmpipe's channels (elmpipe's "
        "synapses are added). Default: elmpipe's mechanisms.",
    ),
]


def _number_or_text(value: str) -> str | int | float:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def cell_model_overrides() -> dict[str, Any]:
    """The running command's template options as config overrides (``cell.template`` …);
    empty without ``--template``, whose companions are refused without it."""
    ctx = click.get_current_context(silent=True)
    given = {} if ctx is None else ctx.meta.get(_CELL_MODEL, {})
    if not given.get("template"):
        flags = {"template_args": "--template-arg"}
        stray = [flags.get(k, f"--{k.replace('_', '-')}") for k, v in given.items() if v]
        if stray:
            raise InputError(f"{', '.join(stray)}: only with --template")
        return {}
    return {
        "cell.template": str(given["template"]),
        "cell.name": given.get("template_name"),
        "cell.args": [_number_or_text(a) for a in given.get("template_args", ())],
        "cell.preload": [str(p) for p in given.get("preload", ())],
        "cell.mechanisms": None if given.get("mechanisms") is None else str(given["mechanisms"]),
    }


def morphology_option(command):
    """``--morphology/-m``, ``--apical-trees``, and a lab's template model's options."""
    return _morphology(_apical_trees(with_options(_cell_model_options)(command)))


parameters_option = click.option(
    "--parameters",
    "-p",
    default=None,
    metavar="NAME|FILE",
    help="Biophysical parameter set: a bundled name (hay-5b) or a YAML file. Default: hay-5b.",
)
nexus_option = click.option(
    "--nexus",
    default=None,
    metavar="SITE",
    help="Nexus recording site such as 'apic[50](0.9)'. Default: found on the main apical path.",
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
data_option = click.option(
    "--data", "-d", required=True, type=click.Path(path_type=Path), help="Zarr dataset."
)


def out_option(help: str, required: bool = True):
    """``--out/-o``: where the command writes (checked before any work starts)."""
    return click.option(
        "--out", "-o", required=required, type=click.Path(path_type=Path), help=help
    )


def config_option(help: str):
    """``--config/-c``: a YAML file, read by the one config loader."""
    return click.option(
        "--config", "-c", "config_path", type=click.Path(path_type=Path, dir_okay=False), help=help
    )


def with_options(options):
    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


# -- options derived from the config models: one place says a setting's type, bounds, choices
# and default, and the command line asks it


def _plain_type(annotation: Any) -> Any:
    """``int | None`` → int; other unions and containers stay as they are."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kinds[0] if len(kinds) == 1 else annotation
    return annotation


#: bounds this large are the number type's, not a setting's: not shown (pydantic still checks)
_SHOWN_BOUND = 2**31


def _bounds(metadata: Iterable[Any]) -> dict[str, Any]:
    """A pydantic field's ge/gt/le/lt constraints as click range arguments."""
    bounds: dict[str, Any] = {}
    for item in metadata:
        for name, key, is_open in (
            ("ge", "min", False),
            ("gt", "min", True),
            ("le", "max", False),
            ("lt", "max", True),
        ):
            value = getattr(item, name, None)
            if value is not None and abs(value) < _SHOWN_BOUND:
                bounds.update({key: value, f"{key}_open": is_open})
    return bounds


def field_type(model: type[BaseModel], field: str) -> Any:
    """The click type of ``model.field``, with the field's bounds as a range (shown in help)."""
    info = model.model_fields[field]
    kind = param_type(info.annotation)
    bounds = _bounds(info.metadata)
    if isinstance(kind, FiniteRange):
        return FiniteRange(**bounds)
    if kind is int and bounds:
        if bounds.get("min_open"):
            bounds["min"] += 1
        if bounds.get("max_open"):
            bounds["max"] -= 1
        return click.IntRange(bounds.get("min"), bounds.get("max"))
    return kind


def param_type(annotation: Any) -> Any:
    """The click type of a config field's annotation: a Literal's values become a Choice, a
    float refuses nan and inf (pydantic checks the bounds again, naming the key)."""
    annotation = _plain_type(annotation)
    if typing.get_origin(annotation) is tuple:  # a repeated option: the type of one value
        return param_type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is Literal:
        return click.Choice([str(value) for value in typing.get_args(annotation)])
    if annotation is float:
        return FiniteRange()
    if annotation in (int, str, bool):
        return annotation
    return str


def described(
    model: type[BaseModel], field: str, text: str | None = None, default: str | None = None
) -> str:
    """Help text: ``text`` (default: the field's description) and the model's default (or
    ``default``, where it depends on other options)."""
    info = model.model_fields[field]
    text = text or info.description or field.replace("_", " ")
    text = text[:1].upper() + text[1:]
    if default is not None:
        return f"{text} (default {default})."
    value = info.get_default(call_default_factory=True)
    if value is None or value == ():
        return text + "."
    shown = str(value).lower() if isinstance(value, bool) else value
    return f"{text} (default {shown})."


def field_option(
    model: type[BaseModel],
    field: str,
    *flags: str,
    help: str | None = None,
    dest: str | None = None,
    default_text: str | None = None,
    **kwargs: Any,
) -> Callable:
    """An option that sets ``model.field`` (its value arrives as keyword ``dest``, default the
    field's name; None when not given, so a config file's value stands): type, choices and
    default from the model (``default_text`` tells a default that depends on other options)."""
    flags = flags or ("--" + field.replace("_", "-"),)
    kwargs.setdefault("type", field_type(model, field))
    help_text = described(model, field, help, default_text)
    return click.option(*flags, dest or field, default=None, help=help_text, **kwargs)


def given(options: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The options among ``fields`` that were given on the command line."""
    return {k: options[k] for k in fields if options.get(k) is not None and options[k] != ()}


cluster_options = [
    field_option(
        ClusterConfig,
        "kind",
        "--cluster",
        dest="cluster",
        help="Where tasks run: in this process, local worker processes (one per core by "
        "default), a running scheduler (--address) or SLURM/PBS jobs",
    ),
    field_option(ClusterConfig, "workers", help="Worker processes (local) or jobs (slurm/pbs)"),
    field_option(ClusterConfig, "address", help="Scheduler address for --cluster address"),
    click.option(
        "--cluster-config",
        type=click.Path(path_type=Path, dir_okay=False),
        help="A YAML file whose `cluster:` section sets SLURM/PBS details (queue, walltime, "
        "cores and memory per job…; e.g. configs/hay-study.yaml); the options above override it.",
    ),
]


def cluster_settings(
    kind: str | None,
    workers: int | None,
    address: str | None,
    cluster_config: Path | None,
    base: BaseModel | None = None,
) -> Any:
    """The ClusterConfig of a command: ``base`` (a config file's section), then
    ``--cluster-config``'s ``cluster:`` section, then the options; each checked, naming its
    source."""
    from pipelines.config import OPTIONS, checked, read_yaml

    section: dict[str, Any] = base.model_dump(exclude_unset=True) if base is not None else {}
    if cluster_config is not None:
        from_file = read_yaml(cluster_config).get("cluster") or {}
        with checked(str(cluster_config), "cluster"):
            ClusterConfig.model_validate(from_file)
        section.update(from_file)
    with checked(OPTIONS):
        options = {"kind": kind, "workers": workers, "address": address}
        return ClusterConfig.model_validate({**section, **given(options, options)})


def _input_scale(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a number, got {value!r}") from None


input_scale_option = click.option(
    "--input-scale",
    default=None,
    metavar="auto|NUMBER",
    callback=_input_scale,
    help="× the NeuronIO protocol's input counts. 'auto' (the default): calibrated so that the "
    "cell fires as the Hay cell does (kept by an existing store; the Hay cell gets exactly 1, "
    "NeuronIO's protocol); a number: used as given. See docs/own-cell.md.",
)


# -- model families' options (surrogate.models.registry): every family's hyper-parameters, named
# as the family declares them

MODEL_PREFIX = "model_"
AXIS_PREFIX = "axis_"


def model_options(families: Iterable[str]) -> list[Callable]:
    """One option per hyper-parameter flag of ``families`` (values arrive as ``model_<field>``),
    its help naming the families that take it."""
    from surrogate.models.registry import FAMILIES, options_of

    made = []
    for flag, (option, names) in options_of(families).items():
        owner = FAMILIES[names[0]]
        made.append(
            click.option(
                flag,
                MODEL_PREFIX + option.field,
                type=param_type(owner.option_type(option)),
                default=None,
                help=f"{'/'.join(n.upper() for n in names)}: {owner.option_help(option)}.",
            )
        )
    return made


def family_options(families: Iterable[str], what: str) -> list[Callable]:
    """``--model`` (one of ``families``; the value arrives as ``family``) and every option of
    those families."""
    families = tuple(families)
    choose = click.option(
        "--model",
        "family",
        type=click.Choice(families),
        help=f"{what} (default: the config's, else elm).",
    )
    return [choose, *model_options(families)]


def model_options_given(options: dict[str, Any], family: str) -> dict[str, Any]:
    """Pop the ``model_*`` options; those given, as the family's fields. A flag of another
    family is refused, naming the families that take it."""
    from surrogate.models.registry import FAMILIES

    values = {
        k[len(MODEL_PREFIX) :]: options.pop(k) for k in list(options) if k.startswith(MODEL_PREFIX)
    }
    mine = {option.field for option in FAMILIES[family].options}
    chosen = {}
    for field, value in values.items():
        if value is None:
            continue
        if field not in mine:
            owners = [n for n, f in FAMILIES.items() if field in {o.field for o in f.options}]
            flag = next(o.cli_flag for o in FAMILIES[owners[0]].options if o.field == field)
            raise InputError(f"{flag} is an option of {', '.join(owners)}, not of {family}")
        chosen[field] = value
    return chosen


def sweep_axis_options() -> list[Callable]:
    """One option per sweep axis of every surrogate family, each taking comma-separated values
    (they arrive as ``axis_<sweep key>``)."""
    from surrogate.models.registry import FAMILIES, surrogate_families

    made = []
    for name in surrogate_families():
        for option in FAMILIES[name].sweep_axes():
            defaults = ",".join(str(value) for value in option.sweep_values)
            what = FAMILIES[name].option_help(option).split(" (default")[0]
            made.append(
                click.option(
                    option.sweep_flag,
                    AXIS_PREFIX + str(option.sweep_key),
                    default=None,
                    metavar="V[,V…]",
                    help=f"{name.upper()}: {what}, comma-separated (default {defaults}).",
                )
            )
    return made


def sweep_axes_given(options: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Pop the ``axis_*`` options; those given, as sweep key → values (checked by the sweep)."""
    axes = {}
    for key in [k for k in options if k.startswith(AXIS_PREFIX)]:
        text = options.pop(key)
        if text is not None:
            axis = key[len(AXIS_PREFIX) :]
            axes[axis] = comma_separated(text, str, "--" + axis.replace("_", "-")) or ()
    return axes
