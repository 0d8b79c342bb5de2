"""Hostile and careless input on the CLI: unsafe family names, output paths, prompt files, counts, a cache
folder that is a file, the hub out of reach. Each gets exit 2 and one line, before any work is done."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.core.errors import FamilyError
from explorer.results.bundle import bundle_dir, write_bundle
from explorer.results.html_report import render
from explorer.results.report import bundle_for

ROOT = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = ROOT / "cache" / "families" / "demo"
BAD_NAMES = ["", ".", "..", "../outside", "a/b", ".hidden", "with space", "x" * 101]


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") or ": error: " in err
    assert "\n" not in err and "Traceback" not in err, err
    return err


def _family_named(llama_family: Path, tmp_path: Path, name: str) -> Path:
    """A copy of the tiny family's file under another name; its members still point at the tiny checkpoints."""
    text = llama_family.read_text().replace('name = "tiny"', f"name = {name!r}".replace("'", '"'))
    text = text.replace('"base"', f'"{llama_family.parent / "base"}"')
    for member in ("aligned", "useful", "harmful", "contaminated"):
        text = text.replace(f'"{member}"', f'"{llama_family.parent / member}"')
    path = tmp_path / "named.toml"
    path.write_text(text)
    return path


COMMANDS = {
    "spectra": ["spectra", "{fam}", "--update", "alignment", "--out", "{out}"],
    "mso": ["mso", "{fam}", "--a", "useful", "--b", "harmful", "--out", "{out}"],
    "project": ["project", "{fam}", "--variant", "useful", "--method", "same", "--subspace", "alignment", "--frac",
                "0.5"],
    "sweep": ["sweep", "{fam}"],
    "activations": ["activations", "{fam}", "--member", "aligned", "--count", "2"],
    "activation-mso": ["activation-mso", "{fam}", "--member", "aligned", "--a", "useful", "--b", "harmful", "--out",
                       "{out}"],
    "precompute": ["precompute", "{fam}", "--profile", "smoke", "--no-activations"],
    "report": ["report", "{fam}", "--json"],
    "report-html": ["report", "{fam}", "--html", "{html}"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_an_unsafe_family_name(llama_family, tmp_path, cache, capsys, command):
    for name in ("..", "a/b"):
        fam = _family_named(llama_family, tmp_path, name)
        argv = [a.format(fam=fam, out=tmp_path / "o.csv", html=tmp_path / "r.html") for a in COMMANDS[command]]
        err = _one_line_error(capsys, argv)
        assert f"family name {name!r} is not allowed" in err
    assert not (cache / "results").exists() and not (cache / "families").exists()  # refused before any work


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_and_never_touch_other_bundles(llama_family, tmp_path, cache, capsys, name):
    keep = write_bundle("keep", {"family": "keep"}, {}, {})
    fam = _family_named(llama_family, tmp_path, name)
    err = _one_line_error(capsys, ["report", str(fam), "--json"])
    assert "is not allowed" in err
    with pytest.raises(FamilyError, match="is not allowed"):
        write_bundle(name, {"family": name}, {}, {})
    with pytest.raises(FamilyError):
        bundle_dir(name)
    assert (keep / "manifest.json").exists()
    assert sorted(p.name for p in keep.parent.iterdir()) == [".keep.lock", "keep"]  # keep's writers' lock


def test_a_safe_name_with_dots_and_dashes_is_accepted(llama_family, tmp_path, cache):
    fam = _family_named(llama_family, tmp_path, "Tiny-v1.2_b")
    assert bundle_dir("Tiny-v1.2_b").parent == cache / "families"
    assert main(["spectra", str(fam), "--update", "alignment", "--out", str(tmp_path / "s.csv")]) == 0


def test_a_folder_given_as_the_family_is_named_as_a_folder(llama_family, capsys):
    err = _one_line_error(capsys, ["sweep", str(llama_family.parent)])
    assert "is a folder; give the family's .toml file" in err and "not found" not in err


@pytest.mark.parametrize("where", ["folder", "under a file", "unwritable", "report folder"])
def test_output_paths_are_checked_before_any_work(llama_family, tmp_path, cache, capsys, where):
    (tmp_path / "a-file").write_text("x")
    out = {"folder": tmp_path, "under a file": tmp_path / "a-file" / "o.csv", "unwritable": Path("/proc/o.csv"),
           "report folder": tmp_path}[where]
    if where == "report folder":
        argv = ["report", str(llama_family), "--html", str(out)]
    else:
        argv = ["spectra", str(llama_family), "--update", "alignment", "--out", str(out)]
    err = _one_line_error(capsys, argv)
    assert err.startswith(f"error: cannot write {out}")
    assert not (cache / "results").exists()  # nothing was computed


def test_a_full_disk_is_one_line(llama_family, cache, capsys, tmp_path, monkeypatch):
    import pandas as pd

    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    out = tmp_path / "spectra.csv"
    err = _one_line_error(capsys, ["spectra", str(llama_family), "--update", "alignment", "--out", str(out)])
    assert err == f"error: cannot write {out}: No space left on device"


def test_demo_build_checks_its_family_file_before_building(tmp_path, cache, capsys):
    err = _one_line_error(capsys, ["demo", "build", "--family", str(tmp_path)])
    assert "it is a folder" in err
    err = _one_line_error(capsys, ["demo", "build", "--family", str(tmp_path / "two words.toml")])
    assert "family name 'two words' is not allowed" in err
    assert not (cache / "models").exists()


@pytest.mark.parametrize("layout", ["is a file", "is under a file"])
def test_a_cache_folder_that_is_a_file_is_one_line(llama_family, tmp_path, monkeypatch, capsys, layout):
    (tmp_path / "cache-file").write_text("x")
    target = tmp_path / "cache-file" if layout == "is a file" else tmp_path / "cache-file" / "cache"
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(target))
    err = _one_line_error(capsys, ["spectra", str(llama_family), "--update", "alignment", "--out",
                                   str(tmp_path / "o.csv")])
    assert f"{tmp_path / 'cache-file'} is a file, not a folder" in err


@pytest.mark.parametrize("content,message", [
    ("source,prompt\nx,Write a poem\nTell me a joke\n", "line 3: 1 field(s) where line 1 has 2"),
    ("Write a poem, please\nTell me a joke\n", "line 2: 1 field(s) where line 1 has 2"),
])
def test_a_ragged_csv_row_is_one_line(llama_family, tmp_path, capsys, content, message):
    (tmp_path / "p.csv").write_text(content)
    err = _one_line_error(capsys, ["activations", str(llama_family), "--member", "aligned", "--sets",
                                   f"mine={tmp_path / 'p.csv'}"])
    assert message in err


@pytest.mark.parametrize("count", ["-5", "0"])
def test_a_count_below_one_is_refused(llama_family, tmp_path, capsys, count):
    (tmp_path / "p.txt").write_text("one\ntwo\nthree\n")
    err = _one_line_error(capsys, ["activation-mso", str(llama_family), "--member", "aligned", "--a",
                                   f"mine={tmp_path / 'p.txt'}", "--b", "harmful", "--count", count, "--out",
                                   str(tmp_path / "o.csv")])
    assert f"must be at least 1, got {count}" in err


def test_grid_fractions_are_checked_before_precomputing(llama_family, cache, capsys):
    err = _one_line_error(capsys, ["precompute", str(llama_family), "--grid-fracs", "0.5", "1.5"])
    assert "rank fraction 1.5 is outside (0, 1)" in err
    assert not (cache / "results").exists()


def test_an_unreachable_hub_is_one_line(tmp_path):
    family = tmp_path / "hub.toml"
    family.write_text('name = "hub"\nbase = "nobody/nothing"\naligned = "nobody/else"\n[finetuned]\nx = "nobody/x"\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf"),
           "EXPLORER_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "explorer", "spectra", str(family), "--update", "alignment",
                           "--out", str(tmp_path / "o.csv")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot fetch nobody/nothing from the Hugging Face hub" in lines[0], proc.stderr


def test_report_html_is_the_overviews_report(tmp_path, cache, capsys):
    shutil.copytree(DEMO_BUNDLE, cache / "families" / "demo")
    family = tmp_path / "demo.toml"
    family.write_text('name = "demo"\nbase = "b"\naligned = "a"\n[finetuned]\nuseful = "u"\n')
    out = tmp_path / "reports" / "demo.html"
    assert main(["report", str(family), "--html", str(out)]) == 0
    assert f"wrote the HTML report to {out}" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == render(bundle_for(family))


def test_allowed_roots_confine_family_files_and_reveal_nothing_outside(llama_family, tmp_path, monkeypatch, capsys):
    allowed = tmp_path / "allowed"
    shutil.copytree(llama_family.parent, allowed / "tiny")
    (tmp_path / "secret.toml").write_text('name = "secret"\n')
    (tmp_path / "folder").mkdir()
    (allowed / "link.toml").symlink_to(tmp_path / "secret.toml")
    monkeypatch.setenv("EXPLORER_ALLOWED_ROOTS", f"{tmp_path / 'elsewhere'}:{allowed}")
    outside = [tmp_path / "missing.toml", tmp_path / "secret.toml", tmp_path / "folder", allowed / "link.toml",
               allowed / ".." / "secret.toml"]
    messages = {_one_line_error(capsys, ["report", str(path), "--json"]).replace(str(path), "PATH")
                for path in outside}
    assert messages == {"error: family file 'PATH' is outside the folders this server allows "
                        "(EXPLORER_ALLOWED_ROOTS)"}
    assert main(["spectra", str(allowed / "tiny" / "family.toml"), "--update", "alignment", "--out",
                 str(tmp_path / "s.csv")]) == 0


def test_allowed_roots_confine_the_spot_check(llama_family, tmp_path, monkeypatch):
    from explorer.checkpoints.family import load_family, with_member
    from explorer.core.errors import AccessError

    allowed = tmp_path / "allowed"
    shutil.copytree(llama_family.parent / "useful", allowed / "candidate")
    family = load_family(llama_family)
    monkeypatch.setenv("EXPLORER_ALLOWED_ROOTS", str(allowed))
    for spec in (str(llama_family.parent / "harmful"), str(tmp_path / "nothing-here"), "org/model"):
        with pytest.raises(AccessError, match="server"):
            with_member(family, "candidate", spec)
    assert with_member(family, "candidate", str(allowed / "candidate")).sources["candidate"].kind == "checkpoint"
