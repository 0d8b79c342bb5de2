"""Settings with environment overrides: where the cache lives and which device does heavy work."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from explorer.core.errors import ParameterError
from explorer.core.temp import remove_stale

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _default_cache_dir() -> Path:
    """EXPLORER_CACHE_DIR; else cache/ of a checkout (beside app.py), else the user's cache folder for an
    installed package (its site-packages is no place for checkpoints). An empty or blank variable counts as unset."""
    if os.environ.get("EXPLORER_CACHE_DIR", "").strip():
        return Path(os.environ["EXPLORER_CACHE_DIR"].strip()).expanduser()
    if (PROJECT_ROOT / "app.py").is_file():
        return PROJECT_ROOT / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "subspace-explorer"


def _default_device() -> str:
    return os.environ.get("EXPLORER_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Settings:
    cache_dir: Path = field(default_factory=_default_cache_dir)
    device: str = field(default_factory=_default_device)

    def __post_init__(self) -> None:
        for folder in (self.cache_dir, *self.cache_dir.absolute().parents):
            if folder.exists():
                if not folder.is_dir():
                    raise ParameterError(f"EXPLORER_CACHE_DIR={str(self.cache_dir)!r} cannot be the cache: "
                                         f"{folder} is a file, not a folder")
                break
        try:
            torch.device(self.device)
        except RuntimeError as exc:
            raise ParameterError(f"EXPLORER_DEVICE={self.device!r} is not a torch device: {exc}") from None
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ParameterError(f"EXPLORER_DEVICE={self.device!r} asks for CUDA, but no CUDA device is available")

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def results_dir(self) -> Path:
        return self.cache_dir / "results"

    @property
    def bases_dir(self) -> Path:
        return self.cache_dir / "bases"

    @property
    def bundles_dir(self) -> Path:
        return self.cache_dir / "families"


_opened: set[Path] = set()
_opening = threading.Lock()


def settings() -> Settings:
    """Fresh settings each call so that tests and users can change the environment at run time.

    The first time a process uses a cache folder, the temporary files of killed runs are removed from it.
    """
    current = Settings()
    with _opening:
        if current.cache_dir not in _opened:
            _opened.add(current.cache_dir)
            remove_stale(current.cache_dir)
    return current
