"""Paths built from user input: names that become file names, folders they must stay in, output files, and the
folders a server allows (EXPLORER_ALLOWED_ROOTS)."""
from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Callable

from explorer.core.errors import AccessError, ExplorerError, OutputError, ParameterError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
ROOTS_VARIABLE = "EXPLORER_ALLOWED_ROOTS"


def check_name(name: object, what: str, error: type[ExplorerError] = ParameterError) -> str:
    """A name that becomes a file or folder name. A leading '.' is refused too: such names are the cache's temporary
    entries, which are deleted when their run is gone."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise error(f"{what} {name!r} is not allowed: use 1 to 100 letters, digits, '.', '_' or '-', "
                    "starting with a letter or a digit")
    return name


def inside(folder: Path, name: str) -> Path:
    """folder / name, refused unless it lies strictly inside `folder`: '..', an absolute or an empty name would not.

    The test is on the text of the path, so that a link someone placed in the folder on purpose still works.
    """
    path = Path(os.path.normpath(folder / name))
    if Path(os.path.normpath(folder)) not in path.parents:
        raise AccessError(f"{name!r} would leave {folder}")
    return path


def expand(text: str | Path, what: str, error: type[ExplorerError] = ParameterError) -> Path:
    """A path with its leading ~ or ~user expanded; an unknown user is one line, not a RuntimeError."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise error(f"{what} {str(text)!r}: cannot expand '~', no such user's home folder") from None


def allowed_roots() -> list[Path]:
    """The folders of EXPLORER_ALLOWED_ROOTS (separated by ':'), resolved; empty when it is unset."""
    value = os.environ.get(ROOTS_VARIABLE, "")
    return [expand(part, ROOTS_VARIABLE).resolve() for part in value.split(os.pathsep) if part.strip()]


def user_path(text: str | Path, what: str) -> Path:
    """A path the user typed, expanded; with EXPLORER_ALLOWED_ROOTS set, refused unless it lies inside a root.

    The check runs before the path is looked at, and its message is the same whether or not a file is there, so
    that a visitor learns nothing about the files outside the roots.
    """
    if "\0" in str(text):
        raise ParameterError(f"{what} contains a NUL character")
    path = expand(text, what)
    roots = allowed_roots()
    if roots:
        real = Path(os.path.realpath(path))  # follows links, so a link inside a root cannot lead out of it
        if not any(real == root or root in real.parents for root in roots):
            raise AccessError(f"{what} {str(text)!r} is outside the folders this server allows "
                              f"({ROOTS_VARIABLE})")
    return path


def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")


_SPECIAL = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device",
            stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def special_kind(mode: int) -> str | None:
    """What a path's stat mode says it is, in words, when it is neither a regular file nor a folder: such a path
    is never read or written (opening a FIFO blocks until someone writes to it)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return _SPECIAL.get(stat.S_IFMT(mode), "a special file")


def check_output(text: str | Path) -> Path:
    """An output file, checked before any work: a regular file or a new path, no file on its way, and writable.

    Nothing here opens an existing path that is not a regular file: opening a FIFO blocks until someone reads it.
    """
    path = expand(text, "output file", OutputError)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    if mode is not None and special_kind(mode):
        raise OutputError(f"cannot write {path}: it is {special_kind(mode)}, not a regular file; give a file name")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {path}: {ancestor} is a file, not a folder")
    try:
        if mode is not None:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))
        else:
            with tempfile.TemporaryFile(dir=ancestor):  # a real write: the permission bits do not bind root
                pass
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def write_output(path: Path, write: Callable[[Path], None]) -> None:
    """Create the parent folders and call `write`; an OS error (a full disk, /dev/full) becomes an OutputError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
