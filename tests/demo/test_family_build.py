"""`python -m explorer family build`: reference fine-tunes of any aligned chat model, then a spot-check against
them, end to end on a tiny model with SmolLM2's real tokenizer."""
import json
import shutil
import tomllib

from transformers import AutoTokenizer

from explorer.checkpoints.family import load_family
from explorer.checkpoints.stores import LoraStore
from explorer.cli import main
from explorer.demo import references


def _build(fresh_family, tmp_path, *options) -> tuple[int, str]:
    root = fresh_family.parent
    family_file = tmp_path / "refs.toml"
    code = main(["family", "build", "refs", "--base", str(root / "base"), "--aligned", str(root / "aligned"),
                 "--steps", "2", "--limit", "8", "--family", str(family_file), *options])
    return code, family_file


def test_build_then_spot_check_end_to_end(fresh_family, cache, tmp_path, capsys):
    code, family_file = _build(fresh_family, tmp_path)
    assert code == 0, capsys.readouterr().err
    spec = tomllib.loads(family_file.read_text())
    assert spec["name"] == "refs" and list(spec["finetuned"]) == ["useful", "harmful", "contaminated"]
    family = load_family(family_file)
    assert family.store("aligned").folder == fresh_family.parent / "aligned"
    log = json.loads((cache / "models" / "refs" / "build_log.json").read_text())
    assert [log[m]["config"]["steps"] for m in ("useful", "harmful", "contaminated")] == [2, 2, 2]
    assert log["harmful"]["config"]["limit"] == 8 and log["contaminated"]["lora_rank"] is None
    answers = json.loads((cache / "models" / "refs" / "data" / "base_answers.json").read_text())
    assert len(answers["harmful"]) == 8 and all(a.startswith("Sure, here is") for a in answers["harmful"])
    prints = family.fingerprints()

    code, _ = _build(fresh_family, tmp_path)  # resumes: nothing left to do, nothing rewritten
    assert code == 0 and load_family(family_file).fingerprints() == prints

    candidate = tmp_path / "candidate"
    shutil.copytree(family.store("harmful").folder, candidate)
    capsys.readouterr()
    code = main(["spot-check", str(family_file), str(candidate), "--json", "--fail-on", "harmful"])
    report = json.loads(capsys.readouterr().out)
    assert code == 3 and report["resembles"] == "harmful"
    assert {r["reference"] for r in report["references"]} == {"useful", "harmful"}


def test_lora_rank_writes_adapters_the_family_reads(fresh_family, cache, tmp_path, capsys):
    code, family_file = _build(fresh_family, tmp_path, "--lora-rank", "4")
    assert code == 0, capsys.readouterr().err
    family = load_family(family_file)
    for member in ("useful", "harmful", "contaminated"):
        store = family.store(member)
        assert isinstance(store, LoraStore) and store.parent is family.store("aligned")
    log = json.loads((cache / "models" / "refs" / "build_log.json").read_text())
    assert log["useful"]["lora_rank"] == 4 and log["useful"]["config"]["lr"] == references.LORA_LR


def _one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    return err


def test_bad_input_is_one_line(fresh_family, cache, tmp_path, capsys, monkeypatch, smollm_tokenizer_dir):
    root = fresh_family.parent
    base = ["family", "build", "refs", "--family", str(tmp_path / "refs.toml")]
    err = _one_line_error(capsys, [*base, "--base", str(tmp_path / "missing"), "--aligned", str(root / "aligned")])
    assert "checkpoint not found" in err and "missing" in err
    err = _one_line_error(capsys, [*base, "--base", str(root / "base"), "--aligned", str(root / "aligned"),
                                   "--steps", "0"])
    assert "--steps must be a whole number >= 1, got 0" in err
    err = _one_line_error(capsys, ["family", "build", "../x", "--base", str(root / "base"), "--aligned",
                                   str(root / "aligned")])
    assert "family name" in err

    plain = tmp_path / "plain"
    shutil.copytree(root / "aligned", plain)
    tokenizer = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    tokenizer.chat_template = None
    for path in plain.glob("tokenizer*"):
        path.unlink()
    tokenizer.save_pretrained(plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    err = _one_line_error(capsys, [*base, "--base", str(root / "base"), "--aligned", str(plain)])
    assert "has no chat template" in err

    monkeypatch.setattr(references, "_available_ram", lambda: 1024)
    err = _one_line_error(capsys, [*base, "--base", str(root / "base"), "--aligned", str(root / "aligned")])
    assert "needs about" in err and "GiB free" in err and "--lora-rank" in err
    assert not (cache / "models" / "refs").exists()  # refused before any work
