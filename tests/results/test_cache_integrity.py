"""Cache entries are verified on read: a truncated one is removed with a warning and computed again, and the
temporary files of killed runs are removed when the cache is next opened."""
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from explorer.checkpoints.family import load_family
from explorer.core.cache import cached_json, result_path
from explorer.core.config import settings
from explorer.weights.mso import update_mso
from explorer.weights.projection import apply_projection, projection_stats
from explorer.weights.spectra import spectra


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _only(folder: Path, pattern: str) -> Path:
    [path] = sorted(folder.glob(pattern))
    return path


def _removed_warning(caplog, path: Path) -> bool:
    return any(r.levelno == logging.WARNING and f"removed unreadable cache entry {path}" in r.getMessage()
               for r in caplog.records)


def test_truncated_spectra_and_mso_are_recomputed(llama_family, cache, caplog):
    family = load_family(llama_family)
    first = spectra(family, "useful")
    first_mso = update_mso(family, [("useful", "harmful")])[("useful", "harmful")]
    for kind, again in (("spectra", lambda: spectra(family, "useful")),
                        ("update-mso", lambda: update_mso(family, [("useful", "harmful")])[("useful", "harmful")])):
        path = _only(cache / "results" / kind, "*.parquet")
        _truncate(path)
        result = again()
        pd.testing.assert_frame_equal(result, first if kind == "spectra" else first_mso)
        assert _removed_warning(caplog, path)
        pd.testing.assert_frame_equal(pd.read_parquet(path), result)  # written again, whole


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_truncated_projection_stats_are_recomputed(llama_family, cache, caplog, suffix):
    family = load_family(llama_family)
    before = projection_stats(family, "useful").point("same", "alignment", 0.3)
    path = _only(cache / "results" / "projection", f"*{suffix}")
    _truncate(path)
    assert projection_stats(family, "useful").point("same", "alignment", 0.3) == before
    assert _removed_warning(caplog, path)


@pytest.mark.parametrize("array", ["U", "perm", "C"])
def test_truncated_bases_are_rebuilt_and_projection_still_works(llama_family, cache, caplog, array):
    from transformers import AutoModelForCausalLM

    family = load_family(llama_family)
    stats = projection_stats(family, "harmful", keep_bases=True)
    [folder] = [p for p in (cache / "bases").iterdir() if (p / f"00003.{array}.npy").exists()]
    _truncate(folder / f"00003.{array}.npy")
    model = AutoModelForCausalLM.from_pretrained(family.store("aligned").folder)
    metrics = apply_projection(model, family, "harmful", "same", "alignment", 0.99)
    assert any(f"removed damaged SVD bases {folder}" in r.getMessage() for r in caplog.records)
    assert metrics["energy_kept_ratio"] == stats.point("same", "alignment", 0.99)["energy_kept_ratio"]
    # k = round(0.99 * 32) keeps the whole update of a 32 x 32 matrix: the weights become the fine-tune's.
    name = "model.layers.0.self_attn.q_proj.weight"
    projected = dict(model.named_parameters())[name].detach()
    assert torch.allclose(projected, family.store("harmful").tensor(name), atol=1e-5)


def test_truncated_json_and_npy_entries_are_recomputed(cache, caplog):
    calls = []
    assert cached_json("scores", "k" * 24, lambda: calls.append(1) or {"a": 1}) == {"a": 1}
    path = result_path("scores", "k" * 24, ".json")
    _truncate(path)
    assert cached_json("scores", "k" * 24, lambda: calls.append(1) or {"a": 1}) == {"a": 1}
    assert len(calls) == 2 and _removed_warning(caplog, path)

    from explorer.core.cache import read_verified

    npy = result_path("activations", "a" * 24, ".npy")
    npy.parent.mkdir(parents=True)
    np.save(npy, np.arange(1000.0))
    _truncate(npy)
    assert read_verified(npy, np.load) is None and not npy.exists() and _removed_warning(caplog, npy)


def _killed_writer(cache: Path, code: str) -> None:
    """Run `code` in a process that makes temporary entries in the cache, then kill it as a user would."""
    proc = subprocess.Popen([sys.executable, "-c", f"{code}\nprint('ready', flush=True)\nimport time\ntime.sleep(600)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait(10)


def test_temporary_entries_of_killed_runs_are_removed_when_the_cache_is_next_opened(cache, caplog):
    _killed_writer(cache, "from pathlib import Path\nfrom explorer.core.temp import temp_dir, temp_file\n"
                          f"bases = Path({str(cache)!r}) / 'bases'\n"
                          "(temp_dir(bases, 'align') / '00000.U.npy').write_bytes(b'x')\ntemp_dir(bases, 'task')\n"
                          f"temp_file(Path({str(cache)!r}) / 'results' / 'spectra', 'abc.parquet', '.parquet')\n"
                          f"temp_dir(Path({str(cache)!r}) / 'families', 'demo')")
    # What versions without tagged names left behind, and entries that are not temporary.
    (cache / "bases" / ".align.k2j4h5g6").mkdir()
    (cache / "bases" / ".task.a1b2c3d4").mkdir()
    (cache / "bases" / "0123456789abcdef01234567").mkdir()
    (cache / "families" / "demo").mkdir(parents=True)
    (cache / ".hidden-notes").write_text("not ours")
    from explorer.core.temp import temp_dir

    live = temp_dir(cache / "bases", "align")  # this process's own work in progress
    assert len([p for p in cache.rglob(".*") if p != live and p.name != ".hidden-notes"]) == 6
    settings()  # opens the cache
    left = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*"))
    assert left == sorted(["bases", "bases/0123456789abcdef01234567", live.relative_to(cache).as_posix(), "families",
                           "families/demo", ".hidden-notes", "results", "results/spectra"])
    assert any("removed 6 temporary file(s) left" in r.getMessage() for r in caplog.records)
