"""Background jobs: a worker process computes a family's stages into its bundle, one job per family at a time; a
cancelled, killed or failing job says so and leaves only complete stages; a job and a CLI precompute on one family at
the same moment end with one consistent bundle."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorer.checkpoints.family import load_family
from explorer.core.errors import BusyError
from explorer.results.bundle import Bundle, find_bundle
from explorer.results.jobs import cancel_job, job_status, start_job
from explorer.results.stages import POINT_KEYS, Settings, Stage, grid_stages, is_done, planned

ROOT = Path(__file__).resolve().parents[2]
SMOKE = Settings("smoke")
# The columns that identify a row of each table: no table may hold one twice.
ROW_KEYS = {
    "spectra": ["update", "tensor", "index"],
    "energy_curves": ["variant", "method", "subspace", "frac", "side"],
    "update_mso": ["a", "b", "group", "granularity", "energy_frac"],
    "projection": POINT_KEYS,
    "projection_outcomes": [*POINT_KEYS, "outcome", "prompt"],
    "projection_samples": [*POINT_KEYS, "kind", "index"],
    "removed_by_layer": [*POINT_KEYS, "layer"],
    "safelora": ["variant", "threshold"],
    "safelora_cosines": ["variant", "tensor", "candidate"],
}


def _gone(pid: int) -> bool:
    """Whether the process has vanished: exited and reaped (the worker is this process's child). A killed process's
    leader is a zombie before its other threads have exited and closed its files, the job's lock among them."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return not Path(f"/proc/{pid}").exists()


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still there after {timeout} s"
        time.sleep(0.2)


def _wait(name: str, timeout: float, until=lambda status: status["state"] != "running") -> dict:
    """The job's status once `until` holds (by default: once it has ended), polled every half second."""
    deadline = time.monotonic() + timeout
    while True:
        status = job_status(name)
        if status is not None and until(status):
            if status["state"] == "stopped":  # the worker may have written its last state and exited just now
                time.sleep(0.2)
                status = job_status(name)
            return status
        assert time.monotonic() < deadline, f"the job is still {status and status['state']} after {timeout} s"
        time.sleep(0.5)


def _stop(name: str) -> None:
    """Cancel the family's job if it still runs, and wait for its worker to be gone."""
    status = job_status(name)
    if status and status.get("state") == "running" and cancel_job(name):
        _wait(name, 30)
    if status and status.get("pid"):
        _wait_gone(status["pid"])


def _activations(family_path) -> list[Stage]:
    return [Stage("activations", m) for m in load_family(family_path).members]


def test_a_job_computes_its_stages_into_the_bundle(fresh_family, cache):
    """A job's worker computes its stages and says so: state done, every stage counted, the tables in the bundle."""
    try:
        started = start_job(fresh_family, [Stage("spectra"), Stage("update_mso")], SMOKE)
        assert started["state"] == "running" and started["pid"]
        status = _wait("fresh", 120)
        assert status["state"] == "done", status.get("error")
        assert status["done"] == 2 and len(status["seconds"]) == 2
        bundle = Bundle.load("fresh")
        assert bundle.has("spectra") and bundle.has("update_mso") and not bundle.has("energy_curves")
        assert [e["stage"] for e in bundle.manifest["stages"]] == ["spectra", "update_mso"]
    finally:
        _stop("fresh")


def test_one_job_per_family_and_a_cancelled_job_keeps_complete_stages_only(fresh_family, cache):
    """While a job runs, a second one is refused in one line naming the family. Cancelled in the middle of a
    member's activations (after the spectra), the job says so and the bundle holds the completed stages only (the
    spectra): the stage in progress wrote no row, and every table the bundle has reads back."""
    stages = [Stage("spectra"), *_activations(fresh_family)]
    try:
        start_job(fresh_family, stages, SMOKE)
        with pytest.raises(BusyError) as busy:
            start_job(fresh_family, [Stage("energy")], SMOKE)
        message = str(busy.value)
        assert "\n" not in message and "fresh" in message

        running = _wait("fresh", 120, until=lambda s: s["state"] != "running" or s.get("current") == 1)
        assert running["state"] == "running" and running["done"] == 1, running.get("error")
        time.sleep(2)  # well into the first member's activations
        assert cancel_job("fresh") is True
        status = _wait("fresh", 30)
        assert status["state"] == "cancelled"

        bundle = Bundle.load("fresh")
        tables = bundle.tables()  # every table reads
        recorded = [e["stage"] for e in bundle.manifest["stages"]]
        assert 1 <= len(recorded) < len(stages) and status["done"] <= len(recorded)
        assert recorded == [s.key for s in stages[:len(recorded)]]  # the stages completed, in order, and no other
        complete = [s.member for s in stages[1:len(recorded)]]  # none, unless a member's took under 2 s
        assert [s.member for s in stages[1:] if is_done(s, bundle)] == complete
        for name, frame in tables.items():
            if "member" in frame.columns:
                assert set(frame["member"]) == set(complete), name
        if not complete:
            assert set(tables) == {"spectra"}
    finally:
        _stop("fresh")


def test_a_killed_worker_is_reported_stopped_and_frees_the_family(fresh_family, cache):
    """A worker killed outright (no chance to say why) is reported as stopped, with a one-line explanation, and the
    family is free: a new job starts."""
    try:
        started = start_job(fresh_family, _activations(fresh_family), SMOKE)
        _wait("fresh", 120, until=lambda s: "current" in s)  # the worker is under way
        os.killpg(started["pid"], signal.SIGKILL)
        _wait_gone(started["pid"])

        status = job_status("fresh")
        assert status["state"] == "stopped"
        assert status["error"] and "\n" not in status["error"]
        again = start_job(fresh_family, [Stage("spectra")], SMOKE)
        assert again["state"] == "running" and again["pid"] != started["pid"]
        assert job_status("fresh")["state"] == "running"
    finally:
        _stop("fresh")


def test_a_job_cancelled_as_it_starts_is_reported_cancelled(fresh_family, cache):
    """Cancel pressed right after Start: the job is reported as cancelled, not as a job that died."""
    try:
        start_job(fresh_family, _activations(fresh_family), SMOKE)
        assert cancel_job("fresh") is True
        status = _wait("fresh", 30)
        assert status["state"] == "cancelled", status.get("error")
    finally:
        _stop("fresh")


def test_a_failing_stage_ends_the_job_with_a_one_line_error(fresh_family, cache, tmp_path):
    """A member's checkpoint is truncated: the job ends as failed, with one line saying why and no traceback."""
    copy = tmp_path / "family"
    shutil.copytree(fresh_family.parent, copy)
    weights = copy / "useful" / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 2)
    try:
        start_job(copy / "family.toml", [Stage("spectra")], SMOKE)
        status = _wait("fresh", 120)
        assert status["state"] == "failed"
        assert status["error"] and "\n" not in status["error"] and "Traceback" not in status["error"]
        assert status["done"] == 0
        assert find_bundle("fresh") is None
    finally:
        _stop("fresh")


def test_a_job_and_a_cli_precompute_at_once_end_with_one_consistent_bundle(fresh_family, cache):
    """The app's job (some weight stages, a member's scores and the grid's blocks) and a CLI precompute of the whole
    family (no activations) start at the same moment. Both succeed, and the bundle they leave holds every stage of
    the precompute, each row once: whichever computed a stage first, the other kept it or replaced it with equal
    rows."""
    family = load_family(fresh_family)
    grid = grid_stages(["contaminated"], (0.5,))
    job_stages = [Stage("spectra"), Stage("energy"), Stage("update_mso"), Stage("scores", "aligned"), *grid]
    env = {**os.environ, "EXPLORER_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    cli = subprocess.Popen([sys.executable, "-m", "explorer", "precompute", str(fresh_family), "--profile", "smoke",
                            "--grid-fracs", "0.5", "--grid-variants", "contaminated", "--no-activations"],
                           cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        start_job(fresh_family, job_stages, SMOKE)
        _, stderr = cli.communicate(timeout=400)
        status = _wait("fresh", 200)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
        _stop("fresh")
    assert cli.returncode == 0, stderr[-3000:]
    assert status["state"] == "done", status.get("error")
    assert status["done"] == len(status["stages"])

    bundle = Bundle.load("fresh")
    tables = bundle.tables()
    for name, keys in ROW_KEYS.items():
        assert not tables[name].duplicated(keys).any(), name
    assert set(bundle.scores) == set(family.members)
    assert all(is_done(s, bundle) for s in planned(family.members, (0.5,), ["contaminated"], activations=False))
    assert bundle.manifest["grid"]["points"] == len(tables["projection"]) == 6
    assert bundle.manifest["grid"]["fracs"] == [0.5] and bundle.manifest["grid"]["variants"] == ["contaminated"]
    assert bundle.manifest["profile"] == "smoke" and bundle.manifest["grid_profile"] == "smoke"
    recorded = {e["stage"] for e in bundle.manifest["stages"]}
    assert {s.key for s in planned(family.members, (0.5,), ["contaminated"], activations=False)} <= recorded
