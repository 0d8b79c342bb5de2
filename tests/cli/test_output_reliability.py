"""What the CLI writes and prints never hangs or tracebacks: outputs that are pipes or devices, a reader that
stops early, a cache that cannot be written, seeds and repeated values checked before any work."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.results.precompute import grid_values
from explorer.weights.subspaces import check_energies

ROOT = Path(__file__).resolve().parents[2]


def _one_line_error(capsys, argv: list[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("option", ["--out", "--html"])
def test_an_output_that_is_a_fifo_is_refused_without_blocking(llama_family, tmp_path, cache, option):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    argv = ["spectra", str(llama_family), "--update", "alignment", "--out", str(fifo)] if option == "--out" else \
        ["report", str(llama_family), "--html", str(fifo)]
    # In a child process with a timeout: a regression would block the test run forever otherwise.
    run = subprocess.run([sys.executable, "-m", "explorer", *argv], capture_output=True, text=True, timeout=120,
                         cwd=ROOT, env={**os.environ, "EXPLORER_CACHE_DIR": str(cache)})
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: cannot write {fifo}: it is a named pipe (FIFO), not a regular file; " \
                                 "give a file name"
    assert not (cache / "results").exists()


@pytest.mark.parametrize("device,kind", [("/dev/null", "a character device"), ("/dev/full", "a character device")])
def test_an_output_that_is_a_device_is_refused(llama_family, cache, capsys, device, kind):
    err = _one_line_error(capsys, ["spectra", str(llama_family), "--update", "alignment", "--out", device])
    assert err == f"error: cannot write {device}: it is {kind}, not a regular file; give a file name"


def test_an_output_that_is_a_link_to_a_regular_file_is_written(llama_family, tmp_path, cache, capsys):
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(["spectra", str(llama_family), "--update", "alignment", "--out", str(link)]) == 0
    assert target.read_text().startswith("tensor,layer,module,index,singular_value")
    assert stat.S_ISLNK(os.lstat(link).st_mode)


def test_a_reader_that_stops_early_is_not_a_traceback(llama_family, cache):
    command = (f"{sys.executable} -m explorer project {llama_family} --variant useful --method same orth "
               "--subspace alignment random --frac 0.1 0.5 --json | head -n 1")
    run = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300,
                         cwd=ROOT, env={**os.environ, "EXPLORER_CACHE_DIR": str(cache)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("\n") == 1 and run.stdout.startswith('{"variant": "useful"')
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr


@pytest.mark.parametrize("seed", ["-1", str(2**63), "1e3", "x"])
@pytest.mark.parametrize("command", [["project", "--variant", "useful", "--method", "same", "--subspace", "random",
                                      "--frac", "0.5"], ["precompute", "--profile", "smoke"], ["sweep"]])
def test_a_seed_that_no_table_can_hold_is_refused_before_any_work(llama_family, cache, capsys, seed, command):
    err = _one_line_error(capsys, [command[0], str(llama_family), *command[1:], "--seed", seed])
    assert f"argument --seed: {seed!r} is not an integer from 0 to 2**63 - 1" in err
    assert not cache.exists() or not (cache / "results").exists()


def test_the_largest_seed_works(llama_family, cache, capsys):
    assert main(["project", str(llama_family), "--variant", "useful", "--method", "same", "--subspace", "random",
                 "--frac", "0.5", "--seed", str(2**63 - 1), "--json"]) == 0
    assert f'"seed": {2**63 - 1}' in capsys.readouterr().out


def test_repeated_values_count_once(llama_family, cache, capsys):
    assert grid_values([0.5, 0.25, 0.5, 0.50000000001]) == (0.5, 0.25)
    assert check_energies([0.5, 0.5, 0.9]) == [0.5, 0.9]
    assert main(["project", str(llama_family), "--variant", "useful", "--method", "same", "same", "--subspace",
                 "alignment", "--frac", "0.5", "0.5", "--json"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    out = Path(cache.parent / "mso.csv")
    assert main(["mso", str(llama_family), "--a", "useful", "--b", "harmful", "--energy", "0.5", "0.5", "--out",
                 str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert not table.duplicated(["group", "energy_frac"]).any() and set(table["energy_frac"]) == {0.5}


def test_a_cache_that_cannot_be_written_is_one_line(llama_family, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EXPLORER_CACHE_DIR", "/proc/explorer-cache")  # not writable, not even by root
    err = _one_line_error(capsys, ["spectra", str(llama_family), "--update", "alignment", "--out",
                                   str(tmp_path / "s.csv")])
    assert err.startswith("error: cannot write /proc/explorer-cache")
    assert err.endswith("free some space, or set EXPLORER_CACHE_DIR to a writable folder")
