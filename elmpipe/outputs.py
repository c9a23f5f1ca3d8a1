"""Output files: checks that output can go where it was asked to — made before any work
starts — and the one way every result file is written (:func:`atomic_write`).

A command that simulates for an hour and then cannot write its result has wasted the hour, so
every command that writes calls one of these first. Writability is tested by creating (and
removing) a temporary file where the output will go, which is the only check that sees read-only
mounts, ACLs and quotas the same way the real write will.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from elmpipe.errors import OutputPathError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _probe_writable(folder: Path, target: Path, what: str) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".elmpipe-write-test-"):
            pass
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason = "read-only" if exc.errno == errno.EROFS else "permission denied"
        else:
            reason = exc.strerror or str(exc)
        raise OutputPathError(
            f"cannot write {what} {target}: {folder} is not writable ({reason})"
        ) from None


def _refuse_dangling_link(path: Path, what: str) -> None:
    """A symbolic link that leads nowhere (a loop, a missing target) cannot be written through;
    Path.resolve() would raise a bare RuntimeError on a loop later."""
    for candidate in (path, *path.parents):
        if candidate.is_symlink() and not candidate.exists():
            raise OutputPathError(
                f"cannot write {what} {path}: {candidate} is a symbolic link that leads nowhere "
                "(a loop or a missing target)"
            )


def check_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """``path`` is, or can be created as, a writable folder; returns it absolute."""
    path = Path(path).expanduser().absolute()
    _refuse_dangling_link(path, what)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} exists and is a file, not a folder")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise OutputPathError(f"cannot create {what} {path}: {existing} is a file, not a folder")
    _probe_writable(existing, path, what)
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """``path`` can be written as a file (it is not a folder, its folder is writable)."""
    path = Path(path).expanduser().absolute()
    _refuse_dangling_link(path, what)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise OutputPathError(
            f"{what} {path} exists and is not a regular file (a device, pipe or socket); "
            "give a file name"
        )
    check_output_folder(path.parent, f"folder of the {what}")
    return path


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", newline: str | None = None) -> Iterator[IO]:
    """Write ``path`` through a hidden partial file beside it, renamed into place at the end:
    a reader (or a resumed run) sees the old file or the whole new one, never half of one, and
    a failure (a full disk, a kill) leaves the old one and no partial behind. A missing folder
    is made, as :func:`check_output_file` promises (``-o cells/variant1.swc`` in a new project)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(partial, mode, newline=newline) as handle:
            yield handle
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent))
