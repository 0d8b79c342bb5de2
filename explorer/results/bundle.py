"""Precomputed results of a family: a folder of small files under cache/families/NAME, committed for the demo.

The app and `report` read a bundle without any checkpoint. The manifest records the checkpoint fingerprints
the results were computed from, the command, the date and the timings.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from explorer.core import jsontext
from explorer.core.config import settings
from explorer.core.errors import CacheMissError


def bundle_dir(name: str) -> Path:
    return settings().bundles_dir / name


def write_bundle(name: str, manifest: dict, scores: dict, tables: dict[str, pd.DataFrame]) -> Path:
    """Write every file to a temporary folder, then swap it in: a bundle is never half-written."""
    target = bundle_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    (tmp / "manifest.json").write_text(jsontext.dumps(manifest, indent=1, sort_keys=True))
    (tmp / "scores.json").write_text(jsontext.dumps(scores, sort_keys=True))
    for table, frame in tables.items():
        frame.to_parquet(tmp / f"{table}.parquet", index=False, compression="zstd")
    os.chmod(tmp, 0o755)
    old = target.with_name(f".{name}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


@dataclass
class Bundle:
    folder: Path

    @classmethod
    def load(cls, name: str) -> "Bundle":
        folder = bundle_dir(name)
        if not (folder / "manifest.json").exists():
            raise CacheMissError(f"no precomputed results for family {name!r} in {folder.parent}; "
                                 f"run `python -m explorer precompute FAMILY.toml`")
        return cls(folder)

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.folder / "manifest.json").read_text())

    @cached_property
    def scores(self) -> dict:
        return json.loads((self.folder / "scores.json").read_text())

    def has(self, table: str) -> bool:
        return (self.folder / f"{table}.parquet").exists()

    def table(self, table: str) -> pd.DataFrame:
        path = self.folder / f"{table}.parquet"
        if not path.exists():
            raise CacheMissError(f"the precomputed results of {self.folder.name!r} have no {table} table; "
                                 "run `python -m explorer precompute` again")
        return pd.read_parquet(path)

