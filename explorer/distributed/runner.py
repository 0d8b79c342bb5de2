"""The driver's side of a run on Ray: work spread over the cluster, one aggregated progress bar, failures
reported with the tensor, member or point that failed. Installed for a run by cluster.connect."""
from __future__ import annotations

import json
import os
import time
from typing import Callable

import ray
from ray.exceptions import RayError, RayTaskError
from tqdm.auto import tqdm

from explorer.checkpoints.family import Family
from explorer.core.cache import result_path
from explorer.core.errors import ClusterError, first_line
from explorer.core.progress import Callback
from explorer.distributed.plan import (
    gpus_to_use,
    model_memory,
    plan_groups,
    task_memory,
    tensor_sizes,
    worker_env,
)
from explorer.distributed.workers import (
    Failed,
    FamilySpec,
    PointScorerActor,
    describe_point,
    run_items_remote,
)
from explorer.evaluation.scores import point_key
from explorer.weights.projection import projection_stats

MAX_RETRIES = 3  # Ray's default for tasks; actors get the same
STOP_WAIT_S = 60


class RayRunner:
    """Runs per-tensor and per-member work as Ray tasks and scores points on actors, one per worker slot."""

    def __init__(self) -> None:
        resources = ray.cluster_resources()
        self.gpus = gpus_to_use(resources.get("GPU", 0), os.environ.get("EXPLORER_DEVICE"))
        self.cpus = max(1, int(resources.get("CPU", 1)))
        self.memory = int(resources.get("memory", 0))
        # A request larger than every node would wait forever: cap it at the largest node.
        self.node_memory = max((int(node["Resources"].get("memory", 0)) for node in ray.nodes() if node["Alive"]),
                               default=0)
        self.slots = self.gpus or self.cpus
        self.tasks = 0  # submitted over the whole run, and finished: what the one progress bar shows
        self.done = 0
        self.actors = 0
        self.started = time.perf_counter()
        self._bar = tqdm(total=0, desc="ray", unit="task", disable=None)

    def close(self) -> None:
        self._bar.close()

    def _options(self, memory: int) -> dict:
        return {"num_cpus": 1, "num_gpus": 1 if self.gpus else 0,
                "memory": min(memory, self.node_memory) if self.node_memory else memory}

    def map_tensors(self, family: Family, work: Callable, args: tuple, desc: str,
                    callback: Callback | None = None) -> list:
        names, sizes = family.tensor_names, tensor_sizes(family)
        groups = plan_groups(sizes, self.slots)
        tasks = [([(i, names[i]) for i in group], [f"tensor {names[i]}" for i in group],
                  task_memory(max(sizes[i] for i in group))) for group in groups]
        return [result for group in self._run(family, work, args, tasks, desc, callback) for result in group]

    def map_members(self, family: Family, work: Callable, members: list[str], args: tuple, desc: str,
                    callback: Callback | None = None) -> list:
        memory = model_memory(family, on_gpu=bool(self.gpus))
        tasks = [([(member,)], [f"member {member}"], memory) for member in members]
        return [group[0] for group in self._run(family, work, args, tasks, desc, callback)]

    def _run(self, family: Family, work: Callable, args: tuple, tasks: list[tuple[list, list[str], int]], desc: str,
             callback: Callback | None) -> list:
        spec, env = FamilySpec.of(family), worker_env()
        pending = {}
        for number, (items, labels, memory) in enumerate(tasks):
            options = {**self._options(memory), "max_retries": MAX_RETRIES, "retry_exceptions": True,
                       "name": f"explorer: {desc} [{number + 1}/{len(tasks)}]"}
            pending[run_items_remote.options(**options).remote(spec, env, work, items, labels, args)] = (number, None)
        return self._collect(pending, [labels for _, labels, _ in tasks], desc, callback)

    def score_points(self, family: Family, points: list[tuple[str, str, str, float]], seed: int, profile: str,
                     callback: Callback | None = None) -> list[dict]:
        """Points already in the cache are read from it; the others are spread over actors that each hold one
        loaded aligned model and write every point to the cache as it completes."""
        paths = [result_path("scores", point_key(family, *point, seed, profile), ".json") for point in points]
        todo = [k for k, path in enumerate(paths) if not path.exists()]
        scored = {}
        if todo:
            for variant in dict.fromkeys(points[k][0] for k in todo):
                projection_stats(family, variant, seed, keep_bases=True)  # the bases every actor reads, once
            scored = dict(zip(todo, self._score(family, [points[k] for k in todo], seed, profile, callback)))
        return [scored[k] if k in scored else json.loads(paths[k].read_text()) for k in range(len(points))]

    def _score(self, family: Family, points: list[tuple[str, str, str, float]], seed: int, profile: str,
               callback: Callback | None) -> list[dict]:
        options = self._options(model_memory(family, on_gpu=bool(self.gpus)))
        fit = self.gpus or min(self.cpus, max(1, self.memory // options["memory"]) if self.memory else self.cpus)
        spec, env = FamilySpec.of(family), worker_env()
        actors = [PointScorerActor.options(**options, max_restarts=MAX_RETRIES,
                                           max_task_retries=MAX_RETRIES).remote(spec, env)
                  for _ in range(min(len(points), fit))]
        self.actors += len(actors)
        queue = list(range(len(points)))
        pending: dict = {}

        def submit(actor) -> None:
            if queue:
                number = queue.pop(0)
                name = f"explorer: point {describe_point(points[number])}"
                pending[actor.score.options(name=name).remote(points[number], seed, profile)] = (number, actor)

        for actor in actors:
            submit(actor)
        labels = [[f"point {describe_point(point)}"] for point in points]
        try:
            return self._collect(pending, labels, "scored points", callback, refill=submit)
        finally:
            for actor in actors:
                ray.kill(actor)

    def _collect(self, pending: dict, labels: list[list[str]], desc: str, callback: Callback | None,
                 refill: Callable | None = None) -> list:
        """Wait for every task (pending: ref -> (number, actor or None)), advancing the bar and giving each actor
        that finishes its next point; on the first failure cancel the rest and raise."""
        total = len(labels)
        self.tasks += total
        self._bar.total += total
        self._bar.set_description(f"ray: {desc}")
        results: list = [None] * total
        try:
            for done in range(1, total + 1):
                [ref], _ = ray.wait(list(pending), num_returns=1)
                number, actor = pending.pop(ref)
                results[number] = self._get(ref, labels[number], desc)
                self.done += 1
                self._bar.update(1)
                if callback:
                    callback(done / total, f"{desc} on the Ray cluster")
                if actor is not None and refill:
                    refill(actor)
        finally:
            _stop(pending)
        return results

    @staticmethod
    def _get(ref, labels: list[str], desc: str):
        try:
            value = ray.get(ref)
        except RayTaskError as exc:
            cause = exc.cause if exc.cause is not None else exc
            raise ClusterError(f"{desc}: {first_line(cause)} (failed on the Ray cluster after {MAX_RETRIES} retries)"
                               ) from None
        except RayError as exc:
            what = labels[0] if len(labels) == 1 else f"{labels[0]} … {labels[-1]}"
            raise ClusterError(f"{desc}: {what}: {type(exc).__name__}: {first_line(exc)} (failed on the Ray cluster "
                               f"after {MAX_RETRIES} retries)") from None
        if isinstance(value, Failed):
            raise value.error
        return value


def _stop(pending: dict) -> None:
    """Stop the tasks still running after a failure, and wait until they have: the caller then removes their
    temporary folders, which a task still writing would recreate. Tasks are killed at once (they write only
    atomically); actor tasks cannot be, and their actors are killed by the caller."""
    for ref, (_, actor) in pending.items():
        ray.cancel(ref, force=actor is None)
    if pending:
        ray.wait(list(pending), num_returns=len(pending), timeout=STOP_WAIT_S)
