"""elmpipe mechanisms: compile the NMODL mechanisms."""

from __future__ import annotations

import click

from pipelines.commands.common import EPILOG

# -- mechanisms -------------------------------------------------------------------------------


@click.group(epilog=EPILOG)
def mechanisms() -> None:
    """Compile elmpipe's NMODL channel and synapse mechanisms (done automatically on first use)."""


VARIANT_CHOICE = click.Choice(["all", "neuron", "coreneuron"])


def _variants(variant: str) -> list[str]:
    return ["neuron", "coreneuron"] if variant == "all" else [variant]


@mechanisms.command("build", epilog=EPILOG)
@click.option("--force", is_flag=True, help="Rebuild even when the cache is current.")
@click.option(
    "--variant",
    type=VARIANT_CHOICE,
    default="all",
    show_default=True,
    help="neuron (every engine loads it) and/or coreneuron (the default engine's, for this CPU).",
)
def mechanisms_build(force: bool, variant: str) -> None:
    """Compile the mechanisms with nrnivmodl into the cache and print where they are.

    The cache lives in $ELMPIPE_CACHE_DIR (default ~/.cache/elmpipe) and is keyed by the .mod
    contents and the NEURON version (the CoreNEURON build also by compile flags and CPU), so it
    is rebuilt only when one of them changes. On a cluster, run it once per node type.

    \b
    Examples:
      elmpipe mechanisms build
      elmpipe mechanisms build --variant neuron --force
    """
    from simulations.mechanisms import build_info, build_mechanisms

    for name in _variants(variant):
        library = build_mechanisms(force=force, variant=name)
        info = build_info(variant=name)
        click.echo(f"{name} mechanisms ready: {library}")
        click.echo(f"cache key {info['key']} · built in {info['build_seconds']} s")


@mechanisms.command("info", epilog=EPILOG)
def mechanisms_info() -> None:
    """Show the cache keys and whether the current mechanisms are built.

    \b
    Examples:
      elmpipe mechanisms info
    """
    from simulations.mechanisms import cache_key, cache_root, compiled_library

    click.echo(f"cache      {cache_root() / 'mechanisms'}")
    for name in _variants("all"):
        library = compiled_library(variant=name)
        click.echo(f"{name:<10} key {cache_key(variant=name)}")
        click.echo(f"{'':<10} built {library if library else 'no (run: elmpipe mechanisms build)'}")
