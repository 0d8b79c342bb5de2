"""`--ray ADDRESS|auto|local`: join a running cluster or start one in this process, and send the run's work to it."""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from explorer.core.errors import ClusterError, first_line
from explorer.core.runners import running_on

PACKAGE = Path(__file__).resolve().parents[1]  # explorer/, shipped to every node of a cluster that is joined
PROBE_TIMEOUT_S = 5


def _check_reachable(address: str) -> None:
    """Fail at once where nothing listens: Ray itself retries an unreachable address for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise ClusterError(f"--ray {address!r} is not HOST:PORT, auto or local")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one there with "
                           f"`ray start --head --port={port}`") from None


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def connect(address: str, num_cpus: int | None = None) -> Iterator:
    """`local` starts Ray in this process with `num_cpus` (default: this machine's cores) and stops it at the end;
    `auto` or HOST:PORT joins a running cluster (`ray start --head`) and leaves it running. A process that is
    already connected to Ray keeps its connection."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray, which is not installed: run `make ray` "
                           "(pip install -r requirements-ray.txt)") from None
    started = not ray.is_initialized()
    if started and address not in ("local", "auto"):
        _check_reachable(address)
    if started:
        options = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if address == "local":
                ray.init(address="local", num_cpus=num_cpus or _cpus(), **options)
            else:
                # Shipped, so that nodes need the same Python packages but not a copy of this project.
                ray.init(address=address, runtime_env={"py_modules": [str(PACKAGE)], "excludes": ["__pycache__"]},
                         **options)
        except Exception as exc:  # Ray raises ConnectionError, ValueError, RuntimeError and more here
            hint = "" if address == "local" or os.environ.get("RAY_AUTH_MODE") else (
                "; if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token with its token "
                "in ~/.ray/auth_token or RAY_AUTH_TOKEN")
            raise ClusterError(f"cannot connect to the Ray cluster at {address!r}: {first_line(exc)}{hint}") from None
    from explorer.distributed.runner import RayRunner

    runner = RayRunner()
    try:
        with running_on(runner):
            yield runner
    finally:
        runner.close()
        if runner.tasks:
            actors = f" ({runner.actors} scoring actors)" if runner.actors else ""
            print(f"ray: {runner.done} of {runner.tasks} tasks{actors} on {runner.gpus or runner.cpus} "
                  f"{'GPUs' if runner.gpus else 'CPUs'} in {time.perf_counter() - runner.started:.1f} s", file=sys.stderr)
        if started:
            ray.shutdown()
