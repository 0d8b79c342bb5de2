"""No result is lost: concurrent writers of one bundle all keep their results, a kill at any instant of the swap
leaves the old bundle or the new one, and the committed bundles stay readable wherever the cache lives."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest

from explorer.core.errors import BusyError, CacheMissError, CorruptBundleError, OutputError
from explorer.core.locks import exclusive
from explorer.core.temp import remove_stale
from explorer.results.bundle import SHIPPED, Bundle, bundle_lock, update_bundle, write_bundle

ROOT = Path(__file__).resolve().parents[2]
KEYS = ["variant", "method", "subspace", "frac"]


def _small(created: str) -> tuple[dict, dict, dict]:
    """A bundle's three parts, small and of the right schema, told apart by `created`."""
    manifest = {"family": "small", "created": created, "command": "python -m explorer precompute small.toml",
                "profile": "smoke", "members": {}, "updates": ["alignment"], "grid": {"fracs": []}, "seed": 0}
    spectra = pd.DataFrame({"tensor": ["w"], "layer": [0], "module": ["mlp"], "index": [0], "singular_value": [1.0],
                            "update": ["alignment"]})
    return manifest, {"aligned": {"refusal_rate": 0.5}}, {"spectra": spectra}


def _python(code: str, cache: Path, *, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPLORER_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                         timeout=300)
    if check:
        assert run.returncode == 0, run.stderr
    return run


KILLED_SWAP = """
    import os
    import explorer.core.temp as temp
    from explorer.results.bundle import Bundle, write_bundle
    temp._exchange = lambda a, b: {exchange}  # False: the two-rename swap of kernels without an atomic exchange
    renames, real = [0], os.replace
    def replace(a, b):
        real(a, b)
        renames[0] += 1
        if renames[0] == {kill_after}:
            os._exit(9)  # killed as a user would, nothing cleaned up
    os.replace = replace
    old = Bundle.load("small")
    write_bundle("small", {{**old.manifest, "created": "new"}}, old.scores, old.tables())
"""


@pytest.mark.parametrize("exchange,kill_after,expected", [
    (False, 1, "old"),  # the new bundle complete but not yet in place
    (False, 2, "new"),  # the old bundle moved aside, the new one not yet in its place: the gap
    (False, 3, "new"),  # swapped, the old one not yet deleted
    (True, 1, "old"),
])
def test_a_kill_at_any_instant_of_the_swap_leaves_the_old_bundle_or_the_new(cache, exchange, kill_after, expected):
    write_bundle("small", *_small("old"))
    run = _python(KILLED_SWAP.format(exchange=exchange, kill_after=kill_after), cache, check=False)
    assert run.returncode == 9, run.stderr
    families = cache / "families"
    assert Bundle.load("small").manifest["created"] == expected  # restored on the spot if need be
    remove_stale(cache)  # what the next process does when it opens the cache
    assert sorted(p.name for p in families.iterdir()) == [".small.lock", "small"]
    assert Bundle.load("small").manifest["created"] == expected
    pd.testing.assert_frame_equal(Bundle.load("small").table("spectra"), _small("x")[2]["spectra"])


def test_an_atomic_exchange_leaves_no_moment_without_a_bundle(cache):
    write_bundle("small", *_small("old"))
    seen, stop = set(), threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(Bundle.load("small").manifest["created"])
            except CacheMissError:
                seen.add("missing")
            except CorruptBundleError:
                seen.add("deleted while read")  # the old folder removed under a reader: not what is tested here

    reader = threading.Thread(target=read)
    reader.start()
    for number in range(30):
        write_bundle("small", *_small(f"v{number}"))
    stop.set()
    reader.join()
    assert "missing" not in seen


def test_two_extend_runs_at_once_both_keep_their_points(tiny_broad, tmp_path, monkeypatch):
    """Each run reads the bundle, scores its points, then waits until the other has scored its own: without the
    lock and the merge under it, the second swap would drop the first run's points."""
    shared = Path(os.environ["EXPLORER_CACHE_DIR"])
    cache = tmp_path / "cache"
    shutil.copytree(shared / "families" / "tiny-broad", cache / "families" / "tiny-broad")
    shutil.copytree(shared / "results", cache / "results")
    before = pd.read_parquet(cache / "families" / "tiny-broad" / "projection.parquet")
    code = """
        import sys, time
        from pathlib import Path
        import explorer.results.stages as stages
        from explorer.cli import main
        me, other, frac = sys.argv[1:4]
        scored = stages.grid_tables
        def wait_for_the_other(*args, **kwargs):
            tables = scored(*args, **kwargs)
            Path(me).touch()
            for _ in range(1200):
                if Path(other).exists():
                    break
                time.sleep(0.1)
            return tables
        stages.grid_tables = wait_for_the_other
        sys.exit(main(["precompute", {family!r}, "--extend", "--grid-variants", "contaminated", "--grid-fracs", frac]))
    """.format(family=str(tiny_broad))
    env = {**os.environ, "EXPLORER_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    runs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(tmp_path / me), str(tmp_path / other),
                              frac], env=env, stderr=subprocess.PIPE, text=True)
            for me, other, frac in (("a", "b", "0.75"), ("b", "a", "0.9"))]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(cache))
    assert all("6 projection points added" in err for err in errors), errors
    bundle = Bundle.load("tiny-broad")
    grid = bundle.table("projection")
    assert len(grid) == len(before) + 12
    assert set(grid.loc[grid["variant"] == "contaminated", "frac"]) == {0.25, 0.5, 0.75, 0.9}
    assert not grid.duplicated(KEYS).any()
    assert len(bundle.manifest["extensions"]) == 2 and bundle.manifest["grid"]["points"] == len(grid)
    outcomes = bundle.table("projection_outcomes")
    assert outcomes[outcomes["method"] != "unprojected"].groupby(KEYS).ngroups == len(grid)


def test_a_writer_waits_for_the_lock_and_one_that_waits_too_long_is_refused(cache, caplog):
    write_bundle("small", *_small("old"))
    with bundle_lock("small"):
        with pytest.raises(BusyError, match="another run has been writing the results of small"):
            with exclusive(cache / "families" / ".small.lock", "the results of small", timeout_s=0.5):
                pass
    assert any("waiting for another run that is writing the results of small" in r.getMessage()
               for r in caplog.records)
    holder = threading.Thread(target=lambda: update_bundle("small", lambda b: _small("first")))
    with bundle_lock("small"):
        holder.start()
        holder.join(0.5)
        assert holder.is_alive()  # it waits
        write_bundle_in_lock = Bundle.load("small").manifest["created"]
    holder.join(30)
    assert write_bundle_in_lock == "old" and Bundle.load("small").manifest["created"] == "first"


def test_update_bundle_applies_its_change_to_the_bundle_as_it_is_now(cache):
    write_bundle("small", *_small("old"))
    stale = Bundle.load("small")
    write_bundle("small", *_small("meanwhile"))
    update_bundle("small", lambda now: ({**now.manifest, "note": "added"}, now.scores, now.tables()))
    manifest = Bundle.load("small").manifest
    assert stale.manifest["created"] == "old"
    assert manifest["created"] == "meanwhile" and manifest["note"] == "added"


def test_a_full_or_read_only_disk_is_one_clear_error_and_the_old_bundle_stays(cache, monkeypatch):
    write_bundle("small", *_small("old"))

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(OutputError, match="No space left on device; free some space, or set EXPLORER_CACHE_DIR"):
        write_bundle("small", *_small("new"))
    assert Bundle.load("small").manifest["created"] == "old"
    assert sorted(p.name for p in (cache / "families").iterdir()) == [".small.lock", "small"]


def test_the_committed_bundles_are_read_wherever_the_cache_lives(cache):
    assert (SHIPPED / "demo" / "manifest.json").exists()
    bundle = Bundle.load("demo")
    assert bundle.folder == SHIPPED / "demo"
    assert not (cache / "families" / "demo").exists()
    write_bundle("demo", {**bundle.manifest, "created": "mine"}, bundle.scores, {})  # a write goes to the cache
    assert Bundle.load("demo").folder == cache / "families" / "demo"
    assert json.loads((SHIPPED / "demo" / "manifest.json").read_text())["created"] != "mine"


BAD_PARTS = {
    "manifest.json": [([], "it holds a JSON list, not an object"), ({"family": "small"}, "its 'created' is missing or not a str"),
                      ({**_small("x")[0], "seed": "zero"}, "its 'seed' is not an integer"),
                      ({**_small("x")[0], "grid": {"fracs": ["a"]}}, "its grid's 'fracs' are not a list of numbers")],
    "scores.json": [([], "it holds a JSON list, not an object"), ({"aligned": 3}, "the scores of 'aligned' are not an object"),
                    ({"aligned": {"refusal_rate": "high"}}, "'aligned''s refusal_rate is not a number"),
                    ({"aligned": {"refusal_rate_ci": [0.1]}}, "'aligned''s refusal_rate_ci is not a pair of numbers")],
}


@pytest.mark.parametrize("part,content,problem", [(p, c, m) for p, cases in BAD_PARTS.items() for c, m in cases])
def test_a_bundle_file_of_the_wrong_schema_is_named_as_damaged(cache, part, content, problem):
    folder = write_bundle("small", *_small("old"))
    (folder / part).write_text(json.dumps(content))
    with pytest.raises(CorruptBundleError) as raised:
        Bundle.load("small")
    assert str(raised.value).startswith(f"{folder / part} cannot be read: {problem}")


@pytest.mark.parametrize("frame,problem", [
    (pd.DataFrame({"tensor": ["w"]}), "it has no 'layer' column"),
    (_small("x")[2]["spectra"].assign(singular_value="big"), "its 'singular_value' column holds"),
])
def test_a_table_of_the_wrong_schema_is_named_as_damaged(cache, frame, problem):
    folder = write_bundle("small", *_small("old"))
    frame.to_parquet(folder / "spectra.parquet")
    with pytest.raises(CorruptBundleError, match=f"spectra.parquet cannot be read: {problem}"):
        Bundle.load("small").table("spectra")
