"""The benchmark tasks' configs that ship with elmpipe, found by name wherever a command runs.

Why package data: a path like configs/tasks/shd.yaml meant something only in a checkout, and
only when the command ran from its top folder; installed from a wheel there was no such folder.
"""

from __future__ import annotations

from pathlib import Path

from elmpipe.errors import ConfigError

SHIPPED = Path(__file__).parent


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


def shipped_task_config(name: str) -> Path | None:
    """The shipped config named like a task (its paper recipe), if there is one."""
    path = SHIPPED / f"{name}.yaml"
    return path if path.is_file() else None


def task_config(name_or_path: str | Path) -> Path:
    """A config file given by path, or by the name of a shipped one (with or without .yaml)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = SHIPPED / f"{path.name.removesuffix('.yaml')}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise ConfigError(
        f"task config not found: {name_or_path} (neither a file nor a shipped config; shipped: "
        f"{', '.join(shipped_names())})"
    )
