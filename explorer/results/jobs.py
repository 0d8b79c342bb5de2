"""Background jobs: a family's stages computed by a worker process, so that the app stays responsive, and any page,
after any reload, can show how far the job has come.

One job per family at a time: the worker holds an exclusive lock on `jobs/NAME.lock` for its whole life (the kernel
releases it however the process ends), and writes its progress to `jobs/NAME.json`. Each stage writes into the
bundle only when it is complete (explorer.results.stages), so a cancelled or killed job leaves complete stages only.
A `precompute` on the same family at the same moment is safe: both merge their stages into the bundle under its lock.

The worker is `python -m explorer.results.jobs SPEC`, SPEC a JSON object: family (a family file), stages, settings.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from explorer.checkpoints.family import family_name, load_family
from explorer.core.config import PROJECT_ROOT, settings
from explorer.core.errors import BusyError, ExplorerError, one_line
from explorer.core.paths import inside
from explorer.core.temp import temp_file
from explorer.results.stages import Settings, Stage, is_done, now, current_bundle, run_stage

log = logging.getLogger("explorer")
RUNNING, DONE, FAILED, CANCELLED, STOPPED = "running", "done", "failed", "cancelled", "stopped"
WRITE_EVERY_S = 0.5


class Cancelled(BaseException):
    """Raised in the worker by SIGTERM: the stage in progress is dropped, the completed ones stay."""


def _jobs_dir() -> Path:
    return settings().cache_dir / "jobs"


def _lock_path(name: str) -> Path:
    return inside(_jobs_dir(), f"{family_name(name)}.lock")


def _cancel_path(name: str) -> Path:
    return inside(_jobs_dir(), f"{family_name(name)}.cancel")


def status_path(name: str) -> Path:
    return inside(_jobs_dir(), f"{family_name(name)}.json")


def _write_status(name: str, status: dict) -> None:
    path = status_path(name)
    tmp = temp_file(path.parent, path.name)
    tmp.write_text(json.dumps({**status, "updated": time.time()}))
    os.replace(tmp, path)


def _is_locked(name: str) -> bool:
    """Whether a worker holds the family's job lock now."""
    path = _lock_path(name)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def job_status(name: str) -> dict | None:
    """The family's latest job as its worker last wrote it, or None. A job whose worker is gone without saying
    why (killed) is reported as stopped."""
    try:
        status = json.loads(status_path(name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(status, dict):
        return None
    if status.get("state") == RUNNING and not _is_locked(name):
        try:  # the worker may have written how it ended, and exited, since the read above
            status = json.loads(status_path(name).read_text())
        except (OSError, ValueError):
            pass
        if status.get("state") == RUNNING and _cancel_path(name).exists():  # ended by SIGTERM before its handler
            status.update(state=CANCELLED)
        elif status.get("state") == RUNNING:
            status.update(state=STOPPED, error="the job's process ended before it finished (killed, or the machine "
                                               "restarted); the stages it completed are kept")
    return status


def start_job(family_path: str | Path, stages: list[Stage], job_settings: Settings) -> dict:
    """Start a worker for `stages` of the family (those its bundle lacks) and return its first status; refused,
    in one line, while another job of the family runs."""
    family = load_family(family_path)
    name = family.name
    path = _lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            running = job_status(name) or {}
            raise BusyError(f"a job is already computing {running.get('title', 'results')} for {name}; wait for it "
                            "or cancel it") from None
        _cancel_path(name).unlink(missing_ok=True)
        bundle = current_bundle(name)
        todo = [s for s in stages if not is_done(s, bundle)]
        status = {"family": name, "path": str(family_path), "state": RUNNING, "pid": None, "started": now(),
                  "stages": [s.to_json() for s in todo], "done": 0, "title": todo[0].title if todo else "",
                  "fraction": 0.0, "text": "starting", "settings": asdict(job_settings)}
        _write_status(name, status)
        spec = json.dumps({"family": str(Path(family_path).resolve()), "stages": status["stages"],
                           "settings": asdict(job_settings)})
        log_file = open(inside(_jobs_dir(), f"{family_name(name)}.log"), "w")
        # The worker inherits the locked descriptor: the lock is then held for as long as the worker lives.
        process = subprocess.Popen([sys.executable, "-m", "explorer.results.jobs", spec], cwd=PROJECT_ROOT,
                                   stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, pass_fds=(fd,),
                                   start_new_session=True)
        log_file.close()
        status["pid"] = process.pid
        _write_status(name, status)
        return status
    finally:
        os.close(fd)


def cancel_job(name: str) -> bool:
    """Ask the family's running job to stop (SIGTERM to its process group); True if there was one."""
    status = job_status(name)
    if not status or status.get("state") != RUNNING or not status.get("pid"):
        return False
    _cancel_path(name).touch()
    try:
        os.killpg(int(status["pid"]), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _cancel(signum, frame) -> None:
    raise Cancelled()


def work(spec: dict) -> int:
    """The worker: run the stages in order, writing progress; exit 0 when done, 1 when one failed."""
    from explorer.results.estimates import stage_seconds

    signal.signal(signal.SIGTERM, _cancel)
    stages = [Stage.from_json(s) for s in spec["stages"]]
    job_settings = Settings(**spec["settings"])
    family_path = spec["family"]
    status: dict = {}
    name = "?"
    try:
        family = load_family(family_path)
        name = family.name
        status = json.loads(status_path(name).read_text())
        status["pid"] = os.getpid()
        device = settings().device
        estimates = [stage_seconds(family, s, job_settings, device) for s in stages]
        status.update(device=device, estimates_s=estimates)
        command = (f"python -m explorer precompute {family_path} --profile {job_settings.profile} "
                   f"--grid-profile {job_settings.grid} --seed {job_settings.seed}")
        last_write = 0.0
        for number, stage in enumerate(stages):
            started = time.monotonic()
            status.update(current=number, title=stage.title, fraction=0.0, text="", stage_started=time.time())
            _write_status(name, status)

            def progress(fraction: float, text: str) -> None:
                nonlocal last_write
                status.update(fraction=min(max(float(fraction), 0.0), 1.0), text=text)
                if time.monotonic() - last_write > WRITE_EVERY_S:
                    last_write = time.monotonic()
                    _write_status(name, status)

            run_stage(family, stage, job_settings, command, callback=progress)
            status["done"] = number + 1
            status.setdefault("seconds", []).append(round(time.monotonic() - started, 1))
        status.update(state=DONE, fraction=1.0, text="", finished=now())
        _write_status(name, status)
        return 0
    except Cancelled:
        status.update(state=CANCELLED, finished=now())
    except ExplorerError as exc:
        status.update(state=FAILED, error=one_line(exc), finished=now())
    except Exception as exc:  # a bug or the environment: one line here, the traceback in the job's log
        log.exception("the job failed")
        status.update(state=FAILED, error=f"an unexpected {type(exc).__name__}: {one_line(exc, 200)} (the details "
                                          "are in the job's log)", finished=now())
    if status and name != "?":
        _write_status(name, status)
    return 1


def eta_seconds(status: dict) -> float | None:
    """Seconds left: the current stage's estimate scaled by how the finished stages compared with theirs, plus the
    remaining stages' estimates likewise; from the current stage's own pace once it is under way."""
    estimates = status.get("estimates_s")
    if not estimates or status.get("state") != RUNNING:
        return None
    done, current = status.get("done", 0), status.get("current", 0)
    taken = status.get("seconds", [])
    scale = sum(taken) / max(sum(estimates[:len(taken)]), 1e-9) if taken else 1.0
    elapsed = time.time() - status.get("stage_started", time.time())
    fraction = status.get("fraction", 0.0)
    if fraction > 0.1 and elapsed > 5:
        current_left = elapsed * (1 - fraction) / fraction
    else:
        current_left = max(estimates[current] * scale - elapsed, 0.0) if current < len(estimates) else 0.0
    return current_left + scale * sum(estimates[max(done, current) + 1:])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(work(json.loads(sys.argv[1])))
