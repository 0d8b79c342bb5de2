"""Hostile and careless prompt files and prompts: each gets its prompts read right or one PromptSetError naming the
file and the problem, never a traceback, a hang or a silently wrong set; prompts longer than a model's context are
refused before any work, and generation never runs past the context."""
import codecs
import json
import logging
import os
import threading

import pytest

from explorer.checkpoints.models import chat_text
from explorer.core.errors import AccessError, ParameterError, PromptSetError
from explorer.evaluation.context import Context, check_fit, context_of
from explorer.evaluation.evaluate import SMOKE, evaluate
from explorer.evaluation.generation import generate, generate_with_target_logprob, target_logprob
from explorer.evaluation.prompts import MAX_PROMPT_FILE_BYTES, read_prompt_file
from explorer.evaluation.stream import evaluate_stream


def _file(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize("name,content,prompts", [
    ("excel.csv", codecs.BOM_UTF8 + b"prompt,source\r\nWrite a poem,a\r\nTell a joke,b\r\n",
     ["Write a poem", "Tell a joke"]),
    ("bom.txt", codecs.BOM_UTF8 + b"first\nsecond\n", ["first", "second"]),
    ("bom.jsonl", codecs.BOM_UTF8 + b'{"prompt": "one"}\n', ["one"]),
    ("one-column.csv", b"Write a poem\nTell a joke\n", ["Write a poem", "Tell a joke"]),
    ("goal.CSV", b"id,goal\n1,Write a poem\n", ["Write a poem"]),
    ("multiline.csv", b'prompt\n"line one\nline two"\nnext\n', ["line one\nline two", "next"]),
    ("old-mac.txt", b"a\rb\r\nc", ["a", "b", "c"]),
    ("blank-lines.txt", b"\n  a  \n\n\t\n\xe2\x80\x8b\nb\n", ["a", "b"]),
    ("feed.txt", b"page one\x0cpage two\n", ["page one\x0cpage two"]),
    ("separator.jsonl", '"a\u2028b"\n\n{"instruction": "c"}\n'.encode(), ["a\u2028b", "c"]),
])
def test_prompt_files_are_read_right(tmp_path, name, content, prompts):
    """A byte-order mark (Excel) never becomes a prompt, quoted CSV prompts keep their line breaks, and only
    \\n, \\r\\n and \\r end a line (a form feed or U+2028 inside a prompt does not)."""
    assert read_prompt_file(_file(tmp_path, name, content)) == prompts


@pytest.mark.parametrize("name,content,message", [
    ("latin.txt", "ok\ncaf\xe9\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 6): save it as UTF-8"),
    ("bom-latin.txt", codecs.BOM_UTF8 + b"caf\xe9", "byte 0xe9 at offset 6"),
    ("binary.txt", bytes(range(256)) * 4, "holds NUL bytes: it is binary or UTF-16"),
    ("utf16.csv", "prompt\nhello\n".encode("utf-16"), "is UTF-16 text, not UTF-8"),
    ("utf16-no-bom.txt", "hello\n".encode("utf-16-le"), "holds NUL bytes"),
    ("empty.txt", b"", "holds no prompts"),
    ("blank.txt", b" \n\t\n\xe2\x80\x8b\n", "holds no prompts (every one is blank)"),
    ("blank.csv", b"prompt\n\" \"\n\"\"\n", "holds no prompts (every one is blank)"),
    ("columns.csv", b"id,text\n1,Write a poem\n", "has 2 columns and none is named prompt, goal, instruction (its "
                                                 "first row: id, text); name the prompts' column 'prompt'"),
    ("huge-cell.csv", b"prompt\n" + b"x" * 200_000 + b"\n", "line 2: not valid CSV (field larger than field limit"),
    ("array.jsonl", b'{"prompt": "ok"}\n[1, 2]\n', "line 2: expected a string or an object with a 'prompt'"),
    ("fields.jsonl", b'{"text": "x", "id": 1}\n', "line 1: expected a string or an object with a 'prompt' / 'goal' / "
                                                  "'instruction' string; this object's fields are text, id"),
    ("number.jsonl", b'{"prompt": 5}\n', "line 1: expected a string or an object with a 'prompt' / 'goal' / "
                                         "'instruction' string; its 'prompt' is a number"),
    ("null.jsonl", b"null\n", "line 1: expected a string or an object with a 'prompt' / 'goal' / 'instruction' "
                              "string, not null"),
    ("nul.jsonl", b'"a\\u0000b"\n', "line 1: the prompt holds a NUL character"),
    ("surrogate.jsonl", b'"a\\ud800b"\n', "line 1: the prompt holds a lone UTF-16 surrogate"),
    ("deep.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 1: not valid JSON"),
    ("prompts.json", b'["a", "b"]', "is not .txt, .csv or .jsonl"),
    ("prompts", b"a\n", "is not .txt, .csv or .jsonl"),
])
def test_malformed_prompt_files_are_one_clear_error(tmp_path, name, content, message):
    path = _file(tmp_path, name, content)
    with pytest.raises(PromptSetError) as caught:
        read_prompt_file(path)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_folders_pipes_devices_and_missing_files_are_refused_without_blocking(tmp_path):
    (tmp_path / "folder.txt").mkdir()
    os.mkfifo(tmp_path / "pipe.txt")  # no writer: opening it for reading in the usual way waits forever
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    messages = {}

    def read_all():
        for name in ("folder.txt", "pipe.txt", "zero.txt", "missing.txt"):
            with pytest.raises(PromptSetError) as caught:
                read_prompt_file(tmp_path / name)
            messages[name] = str(caught.value)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "reading a prompt file blocked"
    assert messages["folder.txt"].endswith("is a folder; give a .txt, .csv or .jsonl file")
    assert "pipe.txt is a named pipe (FIFO), not a regular file" in messages["pipe.txt"]
    assert "zero.txt is a character device, not a regular file" in messages["zero.txt"]
    assert messages["missing.txt"] == f"prompt file not found: {tmp_path / 'missing.txt'}"


def test_a_huge_prompt_file_is_refused_and_a_long_one_is_read(tmp_path):
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_PROMPT_FILE_BYTES + 10)  # sparse: no disk used
    with pytest.raises(PromptSetError, match="larger than 64 MiB, the most read"):
        read_prompt_file(huge)
    many = _file(tmp_path, "many.txt", "".join(f"prompt {i}\n" for i in range(100_000)))
    assert len(read_prompt_file(many)) == 100_000


def test_allowed_roots_and_home_apply_to_prompt_files(tmp_path, monkeypatch):
    _file(tmp_path, "mine.txt", "a\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read_prompt_file("~/mine.txt") == ["a"]
    monkeypatch.setenv("EXPLORER_ALLOWED_ROOTS", str(tmp_path / "elsewhere"))
    with pytest.raises(AccessError, match="is outside the folders this server allows"):
        read_prompt_file(tmp_path / "mine.txt")


@pytest.mark.parametrize("config,model_max_length,expected", [
    ({"max_position_embeddings": 128}, int(1e30), Context(128, "max_position_embeddings in its config")),
    ({"n_positions": 1024}, 2048, Context(1024, "n_positions in its config")),
    ({"max_position_embeddings": 8192}, 4096, Context(4096, "the tokenizer's model_max_length")),
    ({"text_config": {"max_position_embeddings": 512}}, int(1e30),
     Context(512, "max_position_embeddings in its config")),
    ({"max_position_embeddings": True}, int(1e30), None),
    ({}, int(1e30), None),
    (None, 300, Context(300, "the tokenizer's model_max_length")),
])
def test_the_context_is_the_smaller_stated_limit(config, model_max_length, expected):
    class Tokenizer:
        pass

    tokenizer = Tokenizer()
    tokenizer.model_max_length = model_max_length
    assert context_of(config, tokenizer) == expected


def test_check_fit_names_the_count_the_first_prompt_and_the_limit():
    check_fit([10, 200], ["a", "b"], None, "the set")  # no stated limit: nothing to refuse
    with pytest.raises(PromptSetError) as caught:
        check_fit([10, 200, 300], ["short", "long " * 50, "longer"], Context(128, "its config"), "set 'mine'",
                  reserve=1)
    assert str(caught.value).startswith("2 of the 3 prompts of set 'mine' do not fit the model's context of 128 "
                                        "tokens (its config, with room for 1 new token): prompt 2 (\"long long")
    assert "is 200 tokens; shorten or remove" in str(caught.value)


@pytest.fixture
def no_model_work(chat_model_and_tokenizer, monkeypatch):
    """The session's tiny chat model (a 128-token context), failing if it is run."""
    model, tokenizer = chat_model_and_tokenizer

    def ran(*args, **kwargs):
        raise AssertionError("the model ran before the input was checked")

    monkeypatch.setattr(model, "generate", ran)
    monkeypatch.setattr(model, "forward", ran)
    return model, tokenizer


def test_a_prompt_longer_than_the_context_is_refused_before_any_generation(no_model_work):
    model, tokenizer = no_model_work
    long = "word " * 20_000  # about 100 KB
    with pytest.raises(PromptSetError, match=r"1 of the 2 prompts of set 'mine' do not fit the model's context of "
                                             r"128 tokens \(max_position_embeddings in its config, with room for 1"):
        generate(model, tokenizer, ["Hi.", long], 8, what="set 'mine'")
    with pytest.raises(PromptSetError, match="is 1[0-9]{2} tokens with its target"):
        target_logprob(model, tokenizer, [("Hi.", "Sure, here is " * 40)])
    with pytest.raises(PromptSetError, match="do not fit"):
        generate_with_target_logprob(model, tokenizer, [("Hi.", "Sure"), (long, "Sure")], 8)


def test_generation_stops_at_the_context_and_says_so(chat_model_and_tokenizer, monkeypatch, caplog):
    model, tokenizer = chat_model_and_tokenizer
    prompts = ["Hi.", "word " * 80, "Tell me a joke.", "word " * 60]
    lengths = [len(tokenizer(chat_text(tokenizer, p), add_special_tokens=False)["input_ids"]) for p in prompts]
    tight = [length for length in lengths if length + 40 > 128]
    assert len(tight) == 2 and lengths[0] + 40 <= 128
    alone = [generate(model, tokenizer, [p], 40)[0] for p in prompts]
    ends, original = [], model.generate

    def recorded(*args, **kwargs):
        ends.append(kwargs["input_ids"].shape[1] + kwargs["max_new_tokens"])
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", recorded)
    with caplog.at_level(logging.WARNING, logger="explorer"):
        batched = generate(model, tokenizer, prompts, 40, batch_size=4, what="set 'mine'")
    assert batched == alone  # a prompt near the end of the context is answered as it would be alone
    assert max(ends) <= 128
    warning = caplog.records[-1].getMessage()
    assert warning.startswith("2 of the 4 prompts of set 'mine' leave room for less than 40 new tokens in the "
                              "model's context of 128 tokens")
    assert warning.endswith(f"their answers stop at the context's end, after {128 - max(tight)} to "
                            f"{128 - min(tight)} tokens")
    texts, _ = generate_with_target_logprob(model, tokenizer, [(p, "Sure") for p in prompts], 40)
    assert texts == alone


def test_evaluation_checks_every_prompt_against_the_context_before_any_work(no_model_work, monkeypatch):
    model, tokenizer = no_model_work
    monkeypatch.setattr(tokenizer, "model_max_length", 40)  # the chat template alone takes 30 tokens
    with pytest.raises(PromptSetError, match="do not fit the model's context of 40 tokens "
                                             r"\(the tokenizer's model_max_length"):
        evaluate(model, tokenizer, SMOKE)
    with pytest.raises(PromptSetError, match="do not fit the model's context of 40"):
        next(evaluate_stream(model, tokenizer, SMOKE))


@pytest.mark.parametrize("url,message", [("", "no judge endpoint"), ("file:///etc", r"is not an http\(s\) URL")])
def test_a_judge_without_a_usable_endpoint_is_refused_before_generating(no_model_work, monkeypatch, url, message):
    monkeypatch.setenv("EXPLORER_JUDGE_URL", url)
    with pytest.raises(ParameterError, match=message):
        evaluate(*no_model_work, SMOKE, judge=True)


def test_jsonl_prompt_fields_follow_the_csv_columns(tmp_path):
    lines = [json.dumps({"goal": "g"}), json.dumps({"prompt": "p", "goal": "ignored"}), json.dumps("s")]
    assert read_prompt_file(_file(tmp_path, "mixed.jsonl", "\n".join(lines))) == ["g", "p", "s"]
