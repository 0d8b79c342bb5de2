"""How work is cut for a cluster, without Ray: tensors grouped into tasks of bounded size, the memory a task or
an actor asks for, and the environment a worker needs to find the cache."""
from __future__ import annotations

import math
import os

from explorer.checkpoints.family import BASE, Family
from explorer.core.config import settings

TASK_ELEMENTS = 1 << 26  # at most 64M weights (256 MB per float32 tensor read) per task, unless one tensor is larger
TASKS_PER_SLOT = 4  # several tasks per worker, so that none idles while another finishes a long task
# Peak memory of one tensor's work, measured on the demo (benchmarks/results/weights.json): the interpreter with
# torch, then about 10 float32 copies of the largest tensor (two members, the update, its transpose, the SVD).
TASK_BASE_BYTES = 600 << 20
TASK_BYTES_PER_ELEMENT = 40
PASSED_ENV = ("EXPLORER_DEVICE", "HF_HUB_OFFLINE")


def gpus_to_use(cluster_gpus: float, device: str | None) -> int:
    """Every task and actor takes a GPU when the cluster has GPUs, unless EXPLORER_DEVICE asks for the CPU."""
    return 0 if (device or "").startswith("cpu") else int(cluster_gpus)


def tensor_sizes(family: Family) -> list[int]:
    base = family.store(BASE)
    return [math.prod(base.shape(name)) for name in family.tensor_names]


def plan_groups(sizes: list[int], slots: int, limit: int = TASK_ELEMENTS) -> list[list[int]]:
    """Consecutive tensor indices in groups of at most `limit` elements (a larger tensor alone), and small enough
    that each of `slots` workers gets about TASKS_PER_SLOT tasks."""
    budget = max(1, min(limit, math.ceil(sum(sizes) / (TASKS_PER_SLOT * max(1, slots)))))
    groups: list[list[int]] = []
    current: list[int] = []
    held = 0
    for index, size in enumerate(sizes):
        if current and held + size > budget:
            groups.append(current)
            current, held = [], 0
        current.append(index)
        held += size
    if current:
        groups.append(current)
    return groups


def task_memory(largest: int) -> int:
    """Bytes a weight task asks the scheduler for, from the element count of its largest tensor."""
    return TASK_BASE_BYTES + TASK_BYTES_PER_ELEMENT * largest


def model_memory(family: Family, on_gpu: bool) -> int:
    """Bytes an actor or member task holding one float32 model asks for (twice that on a CPU, where it also runs)."""
    weights = 4 * sum(tensor_sizes(family))
    return (1 << 30) + (weights if on_gpu else 2 * weights)


def worker_env() -> dict[str, str]:
    """The variables a worker needs to reach the same cache (by absolute path, so on a shared filesystem)."""
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env["EXPLORER_CACHE_DIR"] = str(settings().cache_dir.resolve())
    return env
