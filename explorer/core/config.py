"""Settings with environment overrides: where the cache lives and which device does heavy work."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from explorer.core.errors import ParameterError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _default_cache_dir() -> Path:
    return Path(os.environ.get("EXPLORER_CACHE_DIR", PROJECT_ROOT / "cache")).expanduser()


def _default_device() -> str:
    return os.environ.get("EXPLORER_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Settings:
    cache_dir: Path = field(default_factory=_default_cache_dir)
    device: str = field(default_factory=_default_device)

    def __post_init__(self) -> None:
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


def settings() -> Settings:
    """Fresh settings each call so that tests and users can change the environment at run time."""
    return Settings()
