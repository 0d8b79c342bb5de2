"""Hostile and careless prompt sets for activation analyses: set specs, counts, a set given twice, prompts longer
than the model's context. Each is refused with one line before any file is read or model loaded where it can be,
and before any activation is computed always; on the CLI, exit 2 and one `error:` line."""
import logging
import os
import threading

import pytest
from builders import TINY, random_family
from transformers import AutoTokenizer, LlamaConfig

from explorer.activations import extract as extract_module
from explorer.activations.extract import MAX_COUNT, builtin_prompts, extract, last_token_states, prompt_sets
from explorer.checkpoints.family import load_family
from explorer.checkpoints.models import load_model, load_tokenizer
from explorer.cli import main
from explorer.core.errors import PromptSetError


@pytest.fixture(scope="module")
def chat_family(tmp_path_factory, smollm_tokenizer_dir):
    """A tiny Llama family (128-token context) with SmolLM2's tokenizer and chat template."""
    tokenizer = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    root = tmp_path_factory.mktemp("chat-family")
    path = random_family(root, LlamaConfig(**{**TINY, "vocab_size": len(tokenizer)}), finetuned=("useful",))
    tokenizer.save_pretrained(root / "aligned")
    return path


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: the input must be refused before."""
    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(extract_module, "load_model", loaded)


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("count,message", [
    (0, "must be at least 1, got 0"), (-3, "must be at least 1, got -3"), (True, "must be a whole number, got True"),
    (2.5, "must be a whole number, got 2.5"), ("8", "must be a whole number, got '8'"),
    (MAX_COUNT + 1, f"must be at most {MAX_COUNT}, got {MAX_COUNT + 1}: every prompt keeps a hidden state"),
    (10**12, "must be at most"),
])
def test_counts_are_whole_numbers_from_one_to_the_maximum(count, message):
    with pytest.raises(PromptSetError, match=message):
        prompt_sets(["useful"], count)
    with pytest.raises(PromptSetError, match=message):
        builtin_prompts("useful", count)


def test_a_count_above_a_builtin_set_is_refused_and_above_a_file_uses_the_file_with_a_note(tmp_path, caplog):
    with pytest.raises(PromptSetError, match="the built-in harmful set has 260 prompts, fewer than the 300 asked"):
        prompt_sets(["harmful"], 300)
    (tmp_path / "p.txt").write_text("one\ntwo\n")
    with caplog.at_level(logging.WARNING, logger="explorer"):
        assert prompt_sets([f"mine={tmp_path / 'p.txt'}"], 5) == {"mine": ["one", "two"]}
    assert caplog.records[-1].getMessage() == "prompt set 'mine' has 2 prompts, fewer than the 5 asked for: using all 2"
    (tmp_path / "many.txt").write_text("".join(f"prompt {i}\n" for i in range(50_000)))
    assert prompt_sets([f"many={tmp_path / 'many.txt'}"], 3)["many"] == ["prompt 0", "prompt 1", "prompt 2"]
    assert len(prompt_sets(["useful"], MAX_COUNT)["useful"]) == MAX_COUNT


@pytest.mark.parametrize("specs,message", [
    (["useful", "useful"], "prompt set 'useful' is given twice; give two different sets"),
    (["a={p}", "a={q}"], "prompt set 'a' is given twice"),
    (["a={p}", "b={p}"], "prompt sets 'a' and 'b' hold the same prompts; give two different sets"),
    (["x="], "prompt set 'x' names no file: give it as x=FILE"),
    (["={p}"], "prompt set name '' is not allowed"),
    (["my set={p}"], "prompt set name 'my set' is not allowed"),
    (["prompts.txt"], "unknown prompt set 'prompts.txt'; built-in sets are useful, harmful, benign (give others as "
                      "NAME=FILE, e.g. mine=prompts.txt)"),
    ([], "no prompt sets given"),
    ([None], "a prompt set is a built-in name or NAME=FILE, got None"),
])
def test_set_specs_are_checked_before_any_file_is_read(tmp_path, specs, message):
    (tmp_path / "p.txt").write_text("one\n")
    (tmp_path / "q.txt").write_text("two\n")
    specs = [s.format(p=tmp_path / "p.txt", q=tmp_path / "q.txt") if isinstance(s, str) else s for s in specs]
    with pytest.raises(PromptSetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prompt_sets(specs, 4)


def test_one_spec_as_a_string_is_one_set():
    assert list(prompt_sets("benign", 2)) == ["benign"]


@pytest.mark.parametrize("a,b", [("useful", "useful"), ("mine={p}", "mine={q}")])
def test_activation_mso_of_a_set_with_itself_is_refused_before_any_work(llama_family, tmp_path, cache, capsys, a, b):
    """llama_family has no tokenizer: any work would fail with another message."""
    (tmp_path / "p.txt").write_text("one\n")
    (tmp_path / "q.txt").write_text("two\n")
    name = a.partition("=")[0]
    err = _one_line_error(capsys, ["activation-mso", str(llama_family), "--member", "aligned", "--a",
                                   a.format(p=tmp_path / "p.txt"), "--b", b.format(q=tmp_path / "q.txt"),
                                   "--count", "2", "--out", str(tmp_path / "o.csv")])
    assert err == f"error: prompt set {name!r} is given twice; give two different sets (a file of your own as " \
                  "NAME=FILE, with a name of its own)"
    assert not (cache / "results").exists()


def test_a_pipe_given_as_a_prompt_file_is_one_line_on_the_cli(llama_family, tmp_path, cache, capsys):
    os.mkfifo(tmp_path / "pipe.txt")
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("err", _one_line_error(
        capsys, ["activations", str(llama_family), "--member", "aligned", "--sets", f"p={tmp_path / 'pipe.txt'}"])),
        daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the CLI blocked on a named pipe"
    assert "is a named pipe (FIFO), not a regular file" in result["err"]


def test_prompts_longer_than_the_context_are_refused_before_any_model_is_loaded(chat_family, tmp_path, cache,
                                                                                no_model, capsys):
    (tmp_path / "long.txt").write_text("How tall is a giraffe?\n" + "word " * 20_000 + "\n")  # a 100 KB prompt
    family = load_family(chat_family)
    with pytest.raises(PromptSetError) as caught:
        extract(family, "aligned", prompt_sets([f"long={tmp_path / 'long.txt'}", "harmful"], 4))
    message = str(caught.value)
    assert message.startswith("1 of the 2 prompts of set 'long' (for aligned) do not fit the model's context of 128 "
                              "tokens (max_position_embeddings in its config): prompt 2 (\"word word")
    assert "shorten or remove the prompts that long" in message
    err = _one_line_error(capsys, ["activation-mso", str(chat_family), "--member", "aligned", "--a",
                                   f"long={tmp_path / 'long.txt'}", "--b", "harmful", "--count", "4", "--out",
                                   str(tmp_path / "o.csv")])
    assert err == f"error: {message}"
    assert not (cache / "results").exists()


def test_last_token_states_refuses_a_prompt_longer_than_the_context(chat_family):
    family = load_family(chat_family)
    model, tokenizer = load_model(family, "aligned"), load_tokenizer(family, "aligned")
    with pytest.raises(PromptSetError, match="1 of the 2 prompts of set 'x' do not fit the model's context of 128"):
        last_token_states(model, tokenizer, ["Hi.", "word " * 200], what="set 'x'")
    fits = ["word " * 85]  # about 115 tokens with the chat template: read whole
    assert last_token_states(model, tokenizer, fits).shape == (1, TINY["num_hidden_layers"] + 1, TINY["hidden_size"])


def test_a_bom_csv_from_excel_reaches_the_activations_without_its_header(chat_family, tmp_path, cache, capsys):
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbfprompt\r\nHow tall is a giraffe?\r\nName a colour.\r\n")
    sets = prompt_sets([f"mine={tmp_path / 'excel.csv'}", "harmful"], 2)
    assert sets["mine"] == ["How tall is a giraffe?", "Name a colour."]
    out = tmp_path / "o.csv"
    assert main(["activation-mso", str(chat_family), "--member", "aligned", "--a", f"mine={tmp_path / 'excel.csv'}",
                 "--b", "harmful", "--count", "2", "--out", str(out)]) == 0
    assert out.exists()


def test_a_count_above_the_maximum_is_one_line_on_the_cli(llama_family, cache, capsys):
    err = _one_line_error(capsys, ["activations", str(llama_family), "--member", "aligned", "--count", "100000000"])
    assert err == f"error: the number of prompts per set must be at most {MAX_COUNT}, got 100000000: every prompt " \
                  "keeps a hidden state per layer in memory"


def test_activation_tables_check_every_member_before_any_work(chat_family, tmp_path, cache, no_model, monkeypatch):
    from explorer.activations import tables

    monkeypatch.setattr(tables, "load_model", extract_module.load_model)  # fails the test too
    (tmp_path / "long.txt").write_text("word " * 300 + "\n")
    with pytest.raises(PromptSetError, match=r"prompts of set 'long' \(for base\) do not fit"):
        tables.activation_tables(load_family(chat_family), (f"long={tmp_path / 'long.txt'}", "harmful"), 2)
    assert not (cache / "results").exists()
