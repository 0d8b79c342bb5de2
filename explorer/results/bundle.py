"""Precomputed results of a family: a folder of small files under cache/families/NAME, committed for the demo.

The app and `report` read a bundle without any checkpoint. The manifest records the checkpoint fingerprints
the results were computed from, the command, the date and the timings.

Writers hold the bundle's lock while they read, change and swap it in, so that concurrent writers (two
`precompute --extend` runs, the app and the CLI) all keep their results; the swap leaves the old bundle or the new
one at any instant (core/temp.replace_dir).
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pandas as pd

from explorer.checkpoints.family import Family, family_name
from explorer.core import jsontext
from explorer.core.cache import UNREADABLE
from explorer.core.config import PROJECT_ROOT, settings
from explorer.core.errors import CacheMissError, CorruptBundleError, ParameterError, one_line, unwritable
from explorer.core.locks import exclusive
from explorer.core.paths import inside
from explorer.core.temp import recover_swaps, replace_dir, temp_dir
from explorer.results.schema import manifest_problem, scores_problem, table_problem

T = TypeVar("T")
PRECOMPUTE = "python -m explorer precompute FAMILY.toml"
# The results committed with the project (the demo families), read wherever EXPLORER_CACHE_DIR points.
SHIPPED = PROJECT_ROOT / "cache" / "families"


def bundle_dir(name: str) -> Path:
    """Where the bundle of a family is written; the name is checked, so that a bundle can only ever be a folder of
    its own."""
    return inside(settings().bundles_dir, family_name(name))


def find_bundle(name: str) -> Path | None:
    """The folder of a family's bundle: in the cache, else among the results shipped with the project; None if
    neither has one. A bundle a killed writer left half swapped is restored first."""
    written = bundle_dir(name)
    for folder in dict.fromkeys([written, inside(SHIPPED, family_name(name))]):
        if not (folder / "manifest.json").exists():
            recover_swaps(folder.parent)
        if (folder / "manifest.json").exists():
            return folder
    return None


@contextmanager
def bundle_lock(name: str) -> Iterator[None]:
    """Held by every writer of a family's bundle while it reads, changes and swaps it in."""
    folder = settings().bundles_dir
    with exclusive(folder / f".{family_name(name)}.lock", f"the results of {name} in {folder}"):
        yield


def _swap_in(name: str, manifest: dict, scores: dict, tables: dict[str, pd.DataFrame]) -> Path:
    """Every file to a temporary folder, the manifest last, then swapped in: a bundle is never half-written."""
    target = bundle_dir(name)
    tmp = None
    try:
        tmp = temp_dir(target.parent, name)
        for table, frame in tables.items():
            frame.to_parquet(tmp / f"{table}.parquet", index=False, compression="zstd")
        (tmp / "scores.json").write_text(jsontext.dumps(scores, sort_keys=True))
        (tmp / "manifest.json").write_text(jsontext.dumps(manifest, indent=1, sort_keys=True))
        os.chmod(tmp, 0o755)
        replace_dir(tmp, target)
    except OSError as exc:
        raise unwritable(target, exc) from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_bundle(name: str, manifest: dict, scores: dict, tables: dict[str, pd.DataFrame]) -> Path:
    """Write a family's bundle whole, replacing any earlier one."""
    with bundle_lock(name):
        return _swap_in(name, manifest, scores, tables)


def update_bundle(name: str, change: Callable[["Bundle | None"], tuple[dict, dict, dict[str, pd.DataFrame]]],
                  replace: bool = False) -> Path:
    """Read the family's bundle as it is now (None if it has none, or with `replace`: one being started anew may be
    damaged), under its lock, and write what `change` makes of it (its manifest, scores and tables): what another
    writer added in the meantime is kept."""
    with bundle_lock(name):
        return _swap_in(name, *change(Bundle.load(name) if find_bundle(name) and not replace else None))


def _json(path: Path) -> object:
    return json.loads(path.read_text())


@dataclass
class Bundle:
    folder: Path
    # What analyses derive from this object's tables (grid outcomes, say), kept for its lifetime: the findings
    # read the same outcomes several times.
    derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, name: str) -> "Bundle":
        """The bundle of a family, with its manifest and scores read and checked (its tables are read on demand)."""
        folder = find_bundle(name)
        if folder is None:
            raise CacheMissError(f"no precomputed results for family {name!r} in {bundle_dir(name).parent}; "
                                 f"run `{PRECOMPUTE}`")
        bundle = cls(folder)
        bundle.manifest, bundle.scores  # read now, so that a damaged file is reported here
        return bundle

    @property
    def regenerate(self) -> str:
        """The command that rewrites this bundle: the one that made it, if the manifest can say."""
        try:
            command = self.manifest.get("command")
        except CorruptBundleError:
            command = None
        return command if isinstance(command, str) and command.startswith("python -m explorer precompute") \
            else PRECOMPUTE

    def _read(self, filename: str, read: Callable[[Path], T], problem: Callable[[T], str | None]) -> T:
        path = self.folder / filename
        try:
            data = read(path)
        except UNREADABLE as exc:
            self._damaged(path, f"it is truncated or corrupt ({one_line(exc, 120)})")
        wrong = problem(data)
        if wrong:
            self._damaged(path, f"{wrong}, so it is not a file of these results")
        return data

    def _damaged(self, path: Path, why: str) -> None:
        regenerate = PRECOMPUTE if path.name == "manifest.json" else self.regenerate
        # Whole, so that it can be run: a chain of --extend runs is longer than most messages.
        raise CorruptBundleError(f"{path} cannot be read: {why}; regenerate the results with "
                                 f"`{one_line(regenerate, 1000)}`")

    @cached_property
    def manifest(self) -> dict:
        return self._read("manifest.json", _json, manifest_problem)

    @cached_property
    def scores(self) -> dict:
        return self._read("scores.json", _json, scores_problem)

    def changed_members(self, family: Family) -> list[str]:
        """The family's members whose checkpoint is not the one these results were computed from (its fingerprint
        differs from the manifest's, or the manifest has none): nothing computed on them compares like with like."""
        recorded = {m: entry.get("fingerprint") for m, entry in self.manifest.get("members", {}).items()
                    if isinstance(entry, dict)}
        return [m for m in family.sources if recorded.get(m) != family.store(m).fingerprint()]

    def require_checkpoints_of(self, family: Family, action: str) -> None:
        """Refuse `action` (what would be added to these results) on checkpoints they were not computed from."""
        changed = self.changed_members(family)
        if changed:
            raise ParameterError(f"{action}: the precomputed results of {family.name} were computed from another "
                                 f"{changed[0]!r} checkpoint (its fingerprint differs), so what it adds would not "
                                 "compare like with like; run a whole precompute instead")

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table of the bundle by name, to rewrite it with some of them changed."""
        return {path.stem: self.table(path.stem) for path in sorted(self.folder.glob("*.parquet"))}

    def column_values(self, table: str, column: str) -> set:
        """The distinct values of one column of a table, read without the rest of it."""
        if not self.has(table):
            return set()
        return set(self._read(f"{table}.parquet", lambda p: pd.read_parquet(p, columns=[column]),
                              lambda frame: None)[column])

    def has(self, table: str) -> bool:
        return (self.folder / f"{table}.parquet").exists()

    def table(self, table: str) -> pd.DataFrame:
        if not self.has(table):
            raise CacheMissError(f"the precomputed results of {self.folder.name!r} have no {table} table; "
                                 f"run `{self.regenerate}` again")
        return self._read(f"{table}.parquet", pd.read_parquet, lambda frame: table_problem(table, frame))
