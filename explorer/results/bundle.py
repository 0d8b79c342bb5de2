"""Precomputed results of a family: a folder of small files under cache/families/NAME, committed for the demo.

The app and `report` read a bundle without any checkpoint. The manifest records the checkpoint fingerprints
the results were computed from, the command, the date and the timings.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, TypeVar

import pandas as pd

from explorer.checkpoints.family import Family, family_name
from explorer.core import jsontext
from explorer.core.cache import UNREADABLE
from explorer.core.config import settings
from explorer.core.errors import CacheMissError, CorruptBundleError, ParameterError, one_line
from explorer.core.paths import inside
from explorer.core.temp import temp_dir

T = TypeVar("T")
PRECOMPUTE = "python -m explorer precompute FAMILY.toml"


def bundle_dir(name: str) -> Path:
    """The bundle's folder; the name is checked, so that a bundle can only ever be a folder of its own."""
    return inside(settings().bundles_dir, family_name(name))


def write_bundle(name: str, manifest: dict, scores: dict, tables: dict[str, pd.DataFrame]) -> Path:
    """Write every file to a temporary folder, then swap it in: a bundle is never half-written."""
    target = bundle_dir(name)
    tmp = temp_dir(target.parent, name)
    (tmp / "manifest.json").write_text(jsontext.dumps(manifest, indent=1, sort_keys=True))
    (tmp / "scores.json").write_text(jsontext.dumps(scores, sort_keys=True))
    for table, frame in tables.items():
        frame.to_parquet(tmp / f"{table}.parquet", index=False, compression="zstd")
    os.chmod(tmp, 0o755)
    old = temp_dir(target.parent, f"{name}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _json_object(path: Path) -> dict:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, found {type(data).__name__}")
    return data


@dataclass
class Bundle:
    folder: Path
    # What analyses derive from this object's tables (grid outcomes, say), kept for its lifetime: the findings
    # read the same outcomes several times.
    derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, name: str) -> "Bundle":
        """The bundle of a family, with its manifest and scores read and checked (its tables are read on demand)."""
        folder = bundle_dir(name)
        if not (folder / "manifest.json").exists():
            raise CacheMissError(f"no precomputed results for family {name!r} in {folder.parent}; "
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

    def _read(self, filename: str, read: Callable[[Path], T]) -> T:
        path = self.folder / filename
        try:
            return read(path)
        except UNREADABLE as exc:
            regenerate = PRECOMPUTE if filename == "manifest.json" else self.regenerate
            raise CorruptBundleError(f"{path} cannot be read: it is truncated or corrupt ({one_line(exc, 120)}); "
                                     f"regenerate the results with `{one_line(regenerate, 200)}`") from None

    @cached_property
    def manifest(self) -> dict:
        return self._read("manifest.json", _json_object)

    @cached_property
    def scores(self) -> dict:
        return self._read("scores.json", _json_object)

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

    def has(self, table: str) -> bool:
        return (self.folder / f"{table}.parquet").exists()

    def table(self, table: str) -> pd.DataFrame:
        if not self.has(table):
            raise CacheMissError(f"the precomputed results of {self.folder.name!r} have no {table} table; "
                                 f"run `{self.regenerate}` again")
        return self._read(f"{table}.parquet", pd.read_parquet)
