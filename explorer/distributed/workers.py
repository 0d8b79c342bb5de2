"""What runs on the workers of a Ray cluster: families reopened from their sources, tasks over groups of tensors
or members, and the actors that score projection points. The driver's side is runner.py."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import ray

from explorer.checkpoints.family import Family
from explorer.checkpoints.stores import Source
from explorer.core.errors import ExplorerError
from explorer.evaluation.scores import PointScorer


@dataclass(frozen=True)
class FamilySpec:
    """What a worker needs to open a family itself: small, picklable and hashable."""

    name: str
    sources: tuple[tuple[str, Source], ...]
    path: Path | None

    @classmethod
    def of(cls, family: Family) -> FamilySpec:
        return cls(family.name, tuple(family.sources.items()), family.path)


_families: dict[FamilySpec, Family] = {}


def open_family(spec: FamilySpec) -> Family:
    """One Family per worker process and spec, so that its stores stay open from one task to the next."""
    if spec not in _families:
        _families[spec] = Family(spec.name, dict(spec.sources), spec.path)
    return _families[spec]


@dataclass(frozen=True)
class Failed:
    """An ExplorerError (bad input) returned instead of raised: it would fail the same way on every retry."""

    error: ExplorerError


class TaskFailed(RuntimeError):
    """An unexpected error in a task, naming its tensor, member or point; Ray retries the task."""


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_items(spec: FamilySpec, env: dict[str, str], work: Callable, items: list[tuple], labels: list[str],
              args: tuple) -> list | Failed:
    """[work(family, *item, *args) for each item], or the first ExplorerError as a Failed."""
    with environment(env):
        family = open_family(spec)
        results = []
        for item, label in zip(items, labels):
            try:
                results.append(work(family, *item, *args))
            except ExplorerError as exc:
                return Failed(exc)
            except Exception as exc:
                raise TaskFailed(f"{label}: {type(exc).__name__}: {exc}") from exc
        return results


run_items_remote = ray.remote(run_items)


@ray.remote
class PointScorerActor:
    """Holds one loaded aligned model (in a PointScorer) and scores points by projecting it in place."""

    def __init__(self, spec: FamilySpec, env: dict[str, str]):
        os.environ.update(env)  # this process serves one run only
        self.scorer = PointScorer(open_family(spec))

    @ray.method(retry_exceptions=True)
    def score(self, point: tuple[str, str, str, float], seed: int, profile: str) -> dict | Failed:
        try:
            return self.scorer.score(*point, seed, profile)
        except ExplorerError as exc:
            return Failed(exc)
        except Exception as exc:
            raise TaskFailed(f"point {describe_point(point)}: {type(exc).__name__}: {exc}") from exc


def describe_point(point: tuple[str, str, str, float]) -> str:
    variant, method, subspace, frac = point
    return f"{variant} {method} {subspace} rho={frac:g}"
