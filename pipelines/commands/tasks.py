"""elmpipe task: the secondary benchmarks (LRA, SHD)."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.commands.common import (
    EPILOG,
    family_options,
    field_option,
    given,
    model_options_given,
    out_option,
    quiet_option,
    with_options,
)
from surrogate.models import encoder_families
from surrogate.tasks import TASK_NAMES
from surrogate.tasks.classification import TaskTrainConfig

# -- secondary benchmarks -----------------------------------------------------------------------


@click.group(epilog=EPILOG)
def task() -> None:
    """Secondary benchmarks: Long Range Arena and SHD / SHD-Adding (from your data files)."""


@task.command("train", epilog=EPILOG)
@click.argument(
    "task_name",
    metavar="TASK",
    type=click.Choice(TASK_NAMES),
)
@click.option(
    "--data",
    "-d",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder with the task's standard files.",
)
@out_option("Run folder (default: runs/TASK).", False)
@click.option(
    "--config",
    "-c",
    "config_path",
    help="Task config: a YAML file, or the name of one that ships with elmpipe (e.g. "
    "shd-adding-cpu; `elmpipe task configs` lists them). Default: the shipped TASK.yaml when "
    "there is one.",
)
@with_options(family_options(encoder_families(), "Encoder family"))
@field_option(TaskTrainConfig, "bin_ms")
@field_option(TaskTrainConfig, "epochs")
@field_option(TaskTrainConfig, "batches_per_epoch")
@field_option(TaskTrainConfig, "batch_size")
@field_option(TaskTrainConfig, "learning_rate", "--lr")
@field_option(TaskTrainConfig, "eval_batches")
@field_option(TaskTrainConfig, "device")
@click.option("--resume", is_flag=True, help="Continue the run in --out.")
@quiet_option
def task_train(
    task_name,
    data,
    out,
    config_path,
    family,
    resume,
    quiet,
    **options,
) -> None:
    """Train an ELM (or LSTM) classifier on a task; print test accuracy against chance.

    \b
    Examples:
      elmpipe task generate shd --out data/shd-synthetic
      elmpipe task train shd-adding -d data/shd-synthetic -c shd-adding \\
          --bin-ms 2 --epochs 3 --batches-per-epoch 300
      elmpipe task train listops -d data/listops -c listops
    """
    from elmpipe.errors import ConfigError
    from elmpipe.outputs import check_output_folder
    from pipelines.config import OPTIONS, checked, load_config, with_overrides
    from surrogate.tasks.classification import SequenceClassification
    from surrogate.tasks.configs import shipped_task_config, task_config
    from surrogate.train import train

    out = check_output_folder(out or Path("runs") / task_name, "run folder")
    path = task_config(config_path) if config_path else shipped_task_config(task_name)
    if path:
        config = load_config(path, TaskTrainConfig, task=task_name)
    else:
        config = TaskTrainConfig(task=task_name)
    model = dict(config.model)
    if family and family != model["family"]:
        if "model" in config.model_fields_set:
            raise ConfigError(
                f"{path}: model.family: the file says {model['family']!r}, --model says {family!r}"
            )
        model = {"family": family}
    model.update(model_options_given(options, model["family"]))
    config = with_overrides(
        config, {"model": model, **given(options, TaskTrainConfig.model_fields)}
    )
    with checked(" and ".join([str(path), OPTIONS] if path else [OPTIONS]), "model"):
        task = SequenceClassification(config, data)
    result = train(task, out, resume=resume, progress=not quiet).summary
    click.echo(
        f"{task_name}: {result['family']} with {result['parameters']:,} parameters, "
        f"{result['epochs']} epochs in {result['seconds']:.0f} s — test accuracy "
        f"{result['test_accuracy']:.4f} (valid {result['last']['valid_accuracy']:.4f}; chance "
        f"{result['chance_uniform']:.4f}, majority class {result['majority_class']:.4f})"
    )


@task.command("configs", epilog=EPILOG)
def configs() -> None:
    """List the task configs that ship with elmpipe (give one to `task train -c NAME`).

    \b
    Examples:
      elmpipe task configs
      elmpipe task train shd-adding -d data/shd -c shd-adding-cpu
    """
    from surrogate.tasks.configs import SHIPPED, shipped_names

    for name in shipped_names():
        lines = (SHIPPED / f"{name}.yaml").read_text().splitlines()
        first = next((line.lstrip("# ").strip() for line in lines if line.startswith("#")), "")
        click.echo(f"{name:<24} {first}")


@task.command("generate", epilog=EPILOG)
@click.argument("kind", type=click.Choice(["listops", "pathfinder", "shd"]))
@out_option("Folder for the generated files.")
@click.option(
    "--n",
    "count",
    type=click.IntRange(min=1),
    help="Samples (listops: train; pathfinder: images; shd: train digits).",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--difficulty",
    type=click.Choice(["curv_baseline", "curv_contour_length_9", "curv_contour_length_14"]),
    default="curv_contour_length_14",
    show_default=True,
    help="Pathfinder contour length.",
)
@click.option(
    "--size",
    type=click.Choice(["32", "128"]),
    default="32",
    show_default=True,
    help="Pathfinder image size (128 = Path-X).",
)
@click.option("--max-length", type=int, help="ListOps: longest expression (LRA: 2000).")
@click.option("--min-length", type=int, help="ListOps: shortest expression (LRA: 500).")
def task_generate(kind, out, count, seed, difficulty, size, max_length, min_length) -> None:
    """Write task files in the standard formats, offline and seeded.

    \b
    listops     basic_{train,val,test}.tsv from LRA's generation rules (train : val : test = 48:1:1)
    pathfinder  curved dashed contours with two markers and distractors, in the LRA layout
    shd         synthetic spiking "digits" in the SHD HDF5 layout (class-specific bursts)
    \b
    Examples:
      elmpipe task generate shd -o data/shd-synthetic --n 2000
      elmpipe task generate listops -o data/listops --n 9600 --max-length 500
      elmpipe task generate pathfinder -o data/pathfinder --size 32 --n 2000
    """
    from elmpipe.outputs import check_output_folder

    out = check_output_folder(out, "task data folder")
    if kind == "listops":
        folder = _generate_listops(out, count or 96_000, seed, max_length, min_length)
    elif kind == "pathfinder":
        from surrogate.tasks.pathfinder import PathfinderStyle
        from surrogate.tasks.pathfinder import write_dataset as write_pathfinder

        style = PathfinderStyle() if size == "32" else PathfinderStyle.path_x()
        folder = write_pathfinder(out, count or 10_000, seed, difficulty, style)
    else:
        from surrogate.tasks.shd import write_synthetic_shd

        n = count or 2000
        folder = write_synthetic_shd(out, n_train=n, n_test=max(1, n // 4), seed=seed)
    click.echo(f"{kind} written to {folder}")


def _generate_listops(
    out: Path, n: int, seed: int, max_length: int | None, min_length: int | None
) -> Path:
    """ListOps with LRA's split proportions (train : val : test = 48 : 1 : 1)."""
    from surrogate.tasks.listops import write_dataset as write_listops

    options = {}
    if max_length:
        options["max_length"] = max_length
    if min_length is not None:
        options["min_length"] = min_length
    held_out = max(1, n // 48)
    return write_listops(out, {"train": n, "valid": held_out, "test": held_out}, seed, **options)
