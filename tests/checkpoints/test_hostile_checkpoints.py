"""Every file handed over as a checkpoint gives a correct result or one line naming the file and the problem:
weight files read exactly as transformers reads them, indexes that must match their shards, a config.json that
must describe its weights, OS errors on paths, JSON of the wrong type, LoRA adapters, tokenizer files, the
fingerprint memo, and updates that overflow float32."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from explorer.checkpoints import stores
from explorer.checkpoints.family import load_family
from explorer.checkpoints.models import load_model, load_tokenizer
from explorer.cli import main
from explorer.core.errors import CheckpointError, FamilyError, NonFiniteError
from explorer.weights.spectra import spectra
from explorer.weights.updates import update_tensor

MEMBERS = ("base", "aligned", "useful", "harmful", "contaminated")
Q = "model.layers.0.self_attn.q_proj.weight"
UP = "model.layers.0.mlp.up_proj.weight"


@pytest.fixture
def root(llama_family, tmp_path) -> Path:
    """A private copy of the tiny Llama family, free to break."""
    target = tmp_path / "fam"
    shutil.copytree(llama_family.parent, target)
    return target


def _one_line_error(capsys, root: Path, family: Path | None = None) -> str:
    argv = ["spectra", str(family or root / "family.toml"), "--update", "alignment", "--out", str(root / "o.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _edit_state(folder: Path, edit) -> None:
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


def _edit_json(path: Path, edit) -> None:
    value = json.loads(path.read_text())
    edit(value)
    path.write_text(json.dumps(value))


def _set_member(root: Path, member: str, spec: str) -> None:
    toml = root / "family.toml"
    toml.write_text(toml.read_text().replace(f'{member} = "{member}"', f"{member} = {json.dumps(spec)}"))


def _shard(folder: Path, names_per_shard: int = 8) -> list[str]:
    """Split folder/model.safetensors into shards with the index save_pretrained writes; the shards' names."""
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    groups = [names[i:i + names_per_shard] for i in range(0, len(names), names_per_shard)]
    shards, weight_map = [], {}
    for number, group in enumerate(groups, 1):
        shard = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        save_file({k: state[k].contiguous() for k in group}, folder / shard)
        weight_map.update(dict.fromkeys(group, shard))
        shards.append(shard)
    index = {"metadata": {"total_size": sum(v.numel() * 4 for v in state.values())}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return shards


# 1, 2 and 9: the weight files are those transformers reads, and an index must describe its shards.

def _stale_copy(root):
    state = load_file(root / "useful" / "model.safetensors")
    save_file({k: v * 2 for k, v in state.items()}, root / "useful" / "old.safetensors")


def _single_and_index(root):
    shutil.copy(root / "useful" / "model.safetensors", root / "keep.safetensors")
    _shard(root / "useful")
    shutil.copy(root / "keep.safetensors", root / "useful" / "model.safetensors")


def _shards_without_index(root):
    _shard(root / "useful")
    (root / "useful" / "model.safetensors.index.json").unlink()


def _missing_shard(root):
    shards = _shard(root / "useful")
    (root / "useful" / shards[-1]).unlink()


def _index_names_absent_tensor(root):
    _shard(root / "useful")
    absent = {"model.layers.9.mlp.up_proj.weight": "model-00001-of-00003.safetensors"}
    _edit_json(root / "useful" / "model.safetensors.index.json", lambda i: i["weight_map"].update(absent))


def _shard_holds_unlisted_tensor(root):
    _shard(root / "useful")
    _edit_json(root / "useful" / "model.safetensors.index.json", lambda i: i["weight_map"].pop(UP))


def _index_points_outside(root):
    _shard(root / "useful")
    _edit_json(root / "useful" / "model.safetensors.index.json",
               lambda i: i["weight_map"].update({UP: "../base/model.safetensors"}))


def _index_is_a_list(root):
    _shard(root / "useful")
    (root / "useful" / "model.safetensors.index.json").write_text("[]")


def _index_without_metadata(root):
    _shard(root / "useful")
    _edit_json(root / "useful" / "model.safetensors.index.json", lambda i: i.pop("metadata"))


def _tensor_in_two_shards(root):
    shards = _shard(root / "useful")
    extra = load_file(root / "useful" / shards[0])
    save_file({**load_file(root / "useful" / shards[1]), **extra}, root / "useful" / shards[1])


def _truncated_weights(root):
    path = root / "useful" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:5000])


def _not_safetensors(root):
    (root / "useful" / "model.safetensors").write_bytes(b"PK\x03\x04 this is a zip file, not safetensors")


def _int8_weight(root):
    for member in MEMBERS:
        _edit_state(root / member, lambda s: s.update({UP: s[UP].to(torch.int8)}))


def _quantised_config(root):
    _edit_json(root / "useful" / "config.json", lambda c: c.update(quantization_config={"quant_method": "gptq"}))


def _bin_holding_a_list(root):
    (root / "useful" / "model.safetensors").unlink()
    torch.save([torch.zeros(2)], root / "useful" / "pytorch_model.bin")


def _bin_holding_a_training_checkpoint(root):
    state = load_file(root / "useful" / "model.safetensors")
    (root / "useful" / "model.safetensors").unlink()
    torch.save({"state_dict": state, "epoch": torch.tensor(3)}, root / "useful" / "pytorch_model.bin")


def _explicit_weights_outside(root):
    _edit_json(root / "useful" / "config.json", lambda c: c.update(transformers_weights="../base/model.safetensors"))


WEIGHT_FILES = {
    "stale second file": (_stale_copy, "holds old.safetensors beside model.safetensors, which transformers reads"),
    "file and index": (_single_and_index, "holds both model.safetensors and model.safetensors.index.json"),
    "shards, no index": (_shards_without_index, "but no model.safetensors or model.safetensors.index.json"),
    "missing shard": (_missing_shard, "shard model-00003-of-00003.safetensors named in "
                                      "model.safetensors.index.json is missing"),
    "index names a tensor no shard has": (_index_names_absent_tensor, "places tensor model.layers.9.mlp.up_proj"
                                                                      ".weight in model-00001-of-00003.safetensors, "
                                                                      "but no shard holds it"),
    "shard holds an unlisted tensor": (_shard_holds_unlisted_tensor, f"holds tensor {UP}, which its index does not "
                                                                     "list"),
    "index points outside": (_index_points_outside, "names shard '../base/model.safetensors', which is not a file "
                                                    "name inside"),
    "index is a list": (_index_is_a_list, "model.safetensors.index.json must hold a JSON object, not an array"),
    "index without metadata": (_index_without_metadata, "has no \"metadata\" object, which transformers needs"),
    "tensor in two shards": (_tensor_in_two_shards, "is stored twice"),
    "truncated": (_truncated_weights, "model.safetensors is not a readable safetensors file"),
    "not safetensors": (_not_safetensors, "model.safetensors is not a readable safetensors file"),
    "int8 weight": (_int8_weight, f"tensor {UP} in model.safetensors is stored as I8, not as floats"),
    "quantised config": (_quantised_config, "describes a quantised model (quant_method 'gptq')"),
    "bin holding a list": (_bin_holding_a_list, "pytorch_model.bin holds list, not a state dict of tensors"),
    "bin holding a training checkpoint": (_bin_holding_a_training_checkpoint,
                                          "holds dict under 'state_dict', not a tensor"),
    "transformers_weights outside": (_explicit_weights_outside, "transformers_weights must be a file name inside"),
}


@pytest.mark.parametrize("case", WEIGHT_FILES)
def test_weight_files_that_transformers_would_read_otherwise_are_one_line(root, capsys, case):
    breaker, message = WEIGHT_FILES[case]
    breaker(root)
    assert message in _one_line_error(capsys, root)


def test_a_sharded_member_reads_every_shard_as_transformers_does(root, tmp_path):
    """save_pretrained's own shards and index: the same tensors as the single file, and the same model."""
    from transformers import AutoModelForCausalLM

    expected = spectra(load_family(root / "family.toml"), "useful")
    model = AutoModelForCausalLM.from_pretrained(root / "useful")
    shutil.rmtree(root / "useful")
    model.save_pretrained(root / "useful", max_shard_size="20KB")
    assert len(list((root / "useful").glob("model-*.safetensors"))) > 2
    family = load_family(root / "family.toml")
    assert spectra(family, "useful").equals(expected)
    loaded = dict(load_model(family, "useful", device="cpu").named_parameters())
    for name in family.tensor_names:
        assert torch.equal(loaded[name].detach(), family.store("useful").tensor(name)), name


def test_integer_buffers_are_not_weights(root):
    """An int64 buffer (position ids) beside float weights is skipped; it is no weight to analyse."""
    for member in MEMBERS:
        _edit_state(root / member, lambda s: s.update({"model.position_ids": torch.arange(8)}))
    family = load_family(root / "family.toml")
    assert "model.position_ids" not in family.tensor_names and UP in family.tensor_names


def test_a_published_companion_file_is_ignored_like_transformers_does(root):
    shutil.copy(root / "useful" / "model.safetensors", root / "useful" / "consolidated.safetensors")
    assert UP in load_family(root / "family.toml").tensor_names


# 3: config.json must describe its weights.

CONFIGS = {
    "more layers": ({"num_hidden_layers": 3}, "config.json (num_hidden_layers=3) describes model.layers.2, but the "
                                              "weights in"),
    "fewer layers": ({"num_hidden_layers": 1}, "the weights hold model.layers.1."),
    "hidden size": ({"hidden_size": 64}, "is (96, 32) in the weights, but a llama built from config.json has "
                                         "(96, 64)"),
    "vocabulary": ({"vocab_size": 100}, "is (96, 32) in the weights, but a llama built from config.json has "
                                        "(100, 32)"),
    "layers as text": ({"num_hidden_layers": "two"}, "transformers cannot build a llama model from config.json"),
    "model_type a list": ({"model_type": ["llama"]}, "model_type must be a string, not an array"),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_a_config_that_does_not_describe_its_weights_is_one_line(root, capsys, case):
    edit, message = CONFIGS[case]
    if case == "model_type a list":
        for member in MEMBERS:  # else it is an architecture mismatch between members, refused already
            _edit_json(root / member / "config.json", lambda c: c.update(edit))
    else:
        _edit_json(root / "useful" / "config.json", lambda c: c.update(edit))
    err = _one_line_error(capsys, root)
    assert err.startswith("error: useful: ") or case == "model_type a list"
    assert message in err


CHECK_IN_A_FRESH_PROCESS = """
import sys
from explorer.checkpoints import stores
from explorer.checkpoints.family import load_family
from explorer.core.errors import CheckpointError
try:
    load_family(sys.argv[1]).tensor_names
    print("valid")
except CheckpointError as exc:
    print(exc)
print("transformers held:", "transformers" in sys.modules)
"""


@pytest.mark.parametrize("case", ["more layers", "hidden size", "valid"])
def test_a_weight_only_process_checks_the_config_without_holding_transformers(root, case):
    """A fresh process (a command) builds the model from config.json in a forked child, so it never holds
    transformers' modules; the child's verdict is the same as the in-process one above."""
    if case != "valid":
        _edit_json(root / "useful" / "config.json", lambda c: c.update(CONFIGS[case][0]))
    out = subprocess.run([sys.executable, "-c", CHECK_IN_A_FRESH_PROCESS, str(root / "family.toml")],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    verdict, held = out.stdout.strip().splitlines()
    assert held == "transformers held: False"
    assert verdict == "valid" if case == "valid" else CONFIGS[case][1] in verdict


def test_partial_weights_serve_the_weight_analyses_but_never_load_as_a_model(root):
    """A tensor no member holds is left out of the analyses (the paper-shape tests rely on it); transformers
    would fill it at random, so load_model refuses it."""
    for member in MEMBERS:
        _edit_state(root / member, lambda s: s.pop("model.norm.weight"))
    family = load_family(root / "family.toml")
    assert "model.norm.weight" not in family.tensor_names
    assert len(spectra(family, "useful")) > 0
    with pytest.raises(CheckpointError, match=r"useful: the weights in .* lack 1 tensor\(s\) the model needs "
                                              r"\(first: model.norm.weight\)"):
        load_model(family, "useful", device="cpu")


def test_load_model_names_a_config_that_does_not_fit_in_one_line(root):
    _edit_json(root / "useful" / "config.json", lambda c: c.update(hidden_size=64))
    family = load_family(root / "family.toml")  # not validated: load_model's own refusal
    with pytest.raises(CheckpointError, match="useful: cannot load a causal language model from") as info:
        load_model(family, "useful", device="cpu")
    assert "\n" not in str(info.value)


# 4 and 9: OS errors and odd kinds of file on the paths.

def _fifo(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    os.mkfifo(path)


PATHS = {
    "member name too long": (lambda r: _set_member(r, "useful", "x" * 300), "its name is too long for the file system"),
    "member is a FIFO": (lambda r: _fifo(r / "useful"), "useful is a named pipe (FIFO), not a file or a folder"),
    "member is a device": (lambda r: _set_member(r, "useful", "/dev/null"), "/dev/null is a character device, not a file or a "
                                                                            "folder"),
    "member is a link loop": (lambda r: (shutil.rmtree(r / "useful"), (r / "useful").symlink_to(r / "useful")),
                              "useful: it is a loop of symbolic links"),
    "member with a NUL": (lambda r: _set_member(r, "useful", "use\0ful"), "contains a NUL character"),
    "member under an unknown user": (lambda r: _set_member(r, "useful", "~no-such-user-here/model"),
                                     "cannot expand '~', no such user's home folder"),
    "config.json is a folder": (lambda r: ((r / "useful" / "config.json").unlink(),
                                           (r / "useful" / "config.json").mkdir()),
                                "useful/config.json is a folder, not a file"),
    "config.json is a FIFO": (lambda r: _fifo(r / "useful" / "config.json"), "config.json is a named pipe (FIFO)"),
    "weights are a FIFO": (lambda r: _fifo(r / "useful" / "model.safetensors"), "model.safetensors is a named pipe (FIFO)"),
    "weights are a link loop": (lambda r: ((r / "useful" / "model.safetensors").unlink(),
                                           (r / "useful" / "model.safetensors").symlink_to("model.safetensors")),
                                "model.safetensors: it is a loop of symbolic links"),
    "config.json is a list": (lambda r: (r / "useful" / "config.json").write_text("[1, 2]"),
                              "config.json must hold a JSON object, not an array"),
    "config.json nested too deeply": (lambda r: (r / "useful" / "config.json").write_text("[" * 100_000),
                                      "config.json is not valid JSON (nested too deeply)"),
    "config.json not UTF-8": (lambda r: (r / "useful" / "config.json").write_bytes(b'{"a": "\xff"}'),
                              "config.json is not UTF-8 text"),
    "empty folder": (lambda r: (shutil.rmtree(r / "useful"), (r / "useful").mkdir()),
                     "useful holds no *.safetensors or pytorch_model*.bin weights"),
    "gguf that is not GGUF": (lambda r: ((r / "x.gguf").write_text("hello"), _set_member(r, "useful", "x.gguf")),
                              "does not start with the GGUF magic bytes"),
}


@pytest.mark.parametrize("case", PATHS)
def test_odd_paths_are_one_line(root, capsys, case):
    breaker, message = PATHS[case]
    breaker(root)
    assert message in _one_line_error(capsys, root)


def test_odd_family_files_are_one_line(root, capsys, monkeypatch):
    assert "its name is too long for the file system" in _one_line_error(capsys, root, root / ("f" * 300 + ".toml"))
    os.mkfifo(root / "fifo.toml")
    assert "fifo.toml is a named pipe (FIFO)" in _one_line_error(capsys, root, root / "fifo.toml")
    (root / "deep.toml").write_text("a = " + "[" * 100_000)
    assert "deep.toml is not valid TOML: nested too deeply" in _one_line_error(capsys, root, root / "deep.toml")
    err = _one_line_error(capsys, root, Path("~no-such-user-here/f.toml"))
    assert "cannot expand '~'" in err
    real = Path.read_bytes

    def unreadable(path: Path) -> bytes:  # the tests run as root, where permission bits do not refuse a read
        if path.name == "family.toml":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(FamilyError, match=r"cannot read family file: .*family.toml: permission denied"):
        load_family(root / "family.toml")


# 5 and 9: LoRA adapters, their JSON and their factors.

def _adapter(root: Path, rank: int = 4, **config) -> Path:
    """A PEFT-format adapter written by hand over the aligned member, as fine-tuned member 'adapter'."""
    gen = torch.Generator().manual_seed(0)
    folder = root / "adapter"
    folder.mkdir()
    weights = {}
    targets = {"model.layers.0.self_attn.q_proj": (32, 32), "model.layers.1.mlp.up_proj": (48, 32)}
    for module, (out, inp) in targets.items():
        weights[f"base_model.model.{module}.lora_A.weight"] = torch.randn(rank, inp, generator=gen) * 0.1
        weights[f"base_model.model.{module}.lora_B.weight"] = torch.randn(out, rank, generator=gen) * 0.1
    save_file(weights, folder / "adapter_model.safetensors")
    settings = {"peft_type": "LORA", "r": rank, "lora_alpha": 8, "target_modules": ["q_proj", "up_proj"], **config}
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    toml = root / "family.toml"
    toml.write_text(toml.read_text() + 'adapter = "adapter"\n')
    return folder


def _edit_adapter(folder: Path, edit) -> None:
    weights = load_file(folder / "adapter_model.safetensors")
    edit(weights)
    save_file(weights, folder / "adapter_model.safetensors")


A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
ADAPTERS = {
    "config a list": ({}, lambda f: (f / "adapter_config.json").write_text("[]"),
                      "adapter_config.json must hold a JSON object, not an array"),
    "alpha as text": ({"lora_alpha": "16"}, None, "lora_alpha must be a number, not '16'"),
    "alpha not a number": ({"lora_alpha": "abc"}, None, "lora_alpha must be a number, not 'abc'"),
    "alpha true": ({"lora_alpha": True}, None, "lora_alpha must be a number, not True"),
    "r zero": ({"r": 0}, None, "r must be a positive whole number, not 0"),
    "r negative": ({"r": -4}, None, "r must be a positive whole number, not -4"),
    "r as text": ({"r": "4"}, None, "r must be a positive whole number, not '4'"),
    "r not the factors' rank": ({"r": 8}, None, "have rank 4, but adapter_config.json gives rank 8"),
    "rank_pattern not an object": ({"rank_pattern": [4]}, None, "rank_pattern must be an object, not an array"),
    "alpha_pattern value as text": ({"alpha_pattern": {"q_proj": "x"}}, None, "alpha_pattern['q_proj'] must be a "
                                                                              "number"),
    "target_modules a number": ({"target_modules": 7}, None, "target_modules must be a list of module names or a "
                                                             "regular expression, not 7"),
    "target_modules of numbers": ({"target_modules": [1, 2]}, None, "target_modules must be a list"),
    "target_modules a bad regex": ({"target_modules": "(["}, None, "is not a valid regular expression"),
    "target_modules missing a factor's module": ({"target_modules": ["q_proj"]}, None,
                                                 "which adapter_config.json's target_modules does not name"),
    "use_rslora as text": ({"use_rslora": "yes"}, None, "use_rslora must be true or false, not 'yes'"),
    "not LoRA": ({"peft_type": "IA3"}, None, "holds a 'IA3' adapter; only LoRA adapters are supported"),
    "A without B": ({}, lambda f: _edit_adapter(f, lambda w: w.pop(B)),
                    "has lora_A for model.layers.0.self_attn.q_proj but no lora_B"),
    "B without A": ({}, lambda f: _edit_adapter(f, lambda w: w.pop(A)),
                    "has lora_B for model.layers.0.self_attn.q_proj but no lora_A"),
    "factors that do not fit the base": ({}, lambda f: _edit_adapter(f, lambda w: w.update({B: torch.zeros(48, 4)})),
                                         f"update of {Q} has shape (48, 32), but its base model (aligned) has "
                                         "(32, 32)"),
    "factors of two ranks": ({}, lambda f: _edit_adapter(f, lambda w: w.update({B: torch.zeros(32, 3)})),
                             "are not two matrices of one rank"),
    "a 1-D factor": ({}, lambda f: _edit_adapter(f, lambda w: w.update({A: torch.zeros(4)})),
                     "are not two matrices of one rank"),
    "integer factor": ({}, lambda f: _edit_adapter(f, lambda w: w.update({A: w[A].to(torch.int8)})),
                       "is torch.int8, not floats"),
    "NaN in a factor": ({}, lambda f: _edit_adapter(f, lambda w: w[A].__setitem__((0, 0), float("nan"))),
                        "contains NaN or Inf values"),
    "a second adapter file": ({}, lambda f: shutil.copy(f / "adapter_model.safetensors",
                                                        f / "adapter_model_old.safetensors"),
                              "holds adapter_model_old.safetensors beside adapter_model.safetensors"),
    "bin adapter holding a list": ({}, lambda f: ((f / "adapter_model.safetensors").unlink(),
                                                  torch.save([1], f / "adapter_model.bin")),
                                   "adapter_model.bin holds list, not a state dict"),
}


@pytest.mark.parametrize("case", ADAPTERS)
def test_bad_adapters_are_one_line(root, capsys, case):
    config, breaker, message = ADAPTERS[case]
    folder = _adapter(root, **config)
    if breaker:
        breaker(folder)
    err = _one_line_error(capsys, root)
    assert err.startswith("error: adapter: ") and message in err, err


def test_a_valid_adapter_with_patterns_gives_peft_s_update(root):
    """Numbers of the right type are taken (no over-refusal): update = alpha / r * B @ A per module."""
    folder = _adapter(root, r=4, lora_alpha=8, alpha_pattern={"q_proj": 16})
    weights = load_file(folder / "adapter_model.safetensors")
    family = load_family(root / "family.toml")
    assert Q in family.tensor_names  # validated, adapter included
    torch.testing.assert_close(update_tensor(family, "adapter", Q), 16 / 4 * (weights[B] @ weights[A]))
    up = "base_model.model.model.layers.1.mlp.up_proj.lora_"
    torch.testing.assert_close(update_tensor(family, "adapter", "model.layers.1.mlp.up_proj.weight"),
                               8 / 4 * (weights[up + "B.weight"] @ weights[up + "A.weight"]))


# 6: tokenizer files.

def _tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "</s>": 1, "hello": 2, "world": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="</s>").save_pretrained(folder)


TOKENIZERS = {
    "truncated tokenizer.json": (lambda p: p.write_text(p.read_text()[:40]), "tokenizer.json is not valid JSON"),
    "tokenizer.json a list": (lambda p: p.write_text("[]"), "tokenizer.json must hold a JSON object, not an array"),
    "tokenizer.json not a tokenizer": (lambda p: p.write_text('{"model": 3}'),
                                       "tokenizer.json is not a tokenizer the tokenizers library can read"),
    "tokenizer_config.json a string": (lambda p: (p.parent / "tokenizer_config.json").write_text('"x"'),
                                       "tokenizer_config.json must hold a JSON object, not a string"),
}


@pytest.mark.parametrize("case", TOKENIZERS)
def test_corrupt_tokenizer_files_are_named_at_validation(root, capsys, case):
    _tokenizer(root / "useful")
    assert load_tokenizer(load_family(root / "family.toml"), "useful")("hello world")["input_ids"] == [2, 3]
    breaker, message = TOKENIZERS[case]
    breaker(root / "useful" / "tokenizer.json")
    err = _one_line_error(capsys, root)
    assert err.startswith("error: useful: ") and message in err
    with pytest.raises(CheckpointError, match=message.split(" is")[0]):  # and where the tokenizer is loaded
        load_tokenizer(load_family(root / "family.toml"), "useful")


# 7: the fingerprint memo is a cache entry: a bad one is discarded with a warning, never a failure.

@pytest.mark.parametrize("memo", ["[1, 2]", '"text"', "{not json", "[" * 100_000, "VALUES NOT STRINGS"])
def test_a_bad_fingerprint_memo_is_discarded_and_recomputed(root, tmp_path, monkeypatch, caplog, memo):
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "cache"))
    expected = load_family(root / "family.toml").fingerprints()
    memo_path = tmp_path / "cache" / "fingerprints.json"
    if memo == "VALUES NOT STRINGS":
        memo = json.dumps(dict.fromkeys(json.loads(memo_path.read_text()), 12345))
    memo_path.write_text(memo)
    with caplog.at_level(logging.WARNING, logger="explorer"):
        assert load_family(root / "family.toml").fingerprints() == expected
    assert any("discarding the fingerprint memo" in r.message for r in caplog.records)
    assert all(isinstance(v, str) for v in json.loads(memo_path.read_text()).values())  # rewritten whole


# 8: an update that overflows float32 although both members are finite.

def test_an_update_that_overflows_float32_names_the_tensor_and_both_members(root, capsys):
    _edit_state(root / "base", lambda s: s[UP].__setitem__((0, 0), 3e38))
    _edit_state(root / "aligned", lambda s: s[UP].__setitem__((0, 0), -3e38))
    err = _one_line_error(capsys, root)
    assert f"tensor {UP}: aligned minus base overflows float32" in err
    with pytest.raises(NonFiniteError, match="overflows float32"):
        update_tensor(load_family(root / "family.toml"), "alignment", UP)


def test_an_adapter_update_that_overflows_float32_is_one_line(root, capsys):
    _edit_adapter(_adapter(root), lambda w: w.update({A: torch.full((4, 32), 1e30), B: torch.full((32, 4), 1e30)}))
    family = load_family(root / "family.toml")
    with pytest.raises(NonFiniteError, match=f"tensor {Q}: adapter minus aligned overflows float32"):
        update_tensor(family, "adapter", Q)


def test_float64_weights_beyond_float32_name_the_tensor(root):
    _edit_state(root / "aligned", lambda s: s.update({UP: s[UP].double()}))
    _edit_state(root / "aligned", lambda s: s[UP].__setitem__((0, 0), 1e300))
    with pytest.raises(NonFiniteError, match=f"aligned: tensor {UP} holds values beyond float32's range"):
        update_tensor(load_family(root / "family.toml"), "alignment", UP)



@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_an_update_subtracts_its_reference_a_block_at_a_time_exactly(root, monkeypatch, dtype):
    """The reference is read through a small buffer (here 40 bytes, whole elements of every dtype, and a last
    block shorter than the others); the update is bit for bit the difference of the two float32 tensors."""
    monkeypatch.setattr(stores, "READ_BLOCK_BYTES", 40)
    for member in ("base", "aligned"):
        _edit_state(root / member, lambda s: s.update({UP: s[UP].to(dtype)}))
    expected = (load_file(root / "aligned" / "model.safetensors")[UP].float()
                - load_file(root / "base" / "model.safetensors")[UP].float())
    assert expected.numel() * dtype.itemsize % 40  # the last block is a short one
    assert torch.equal(update_tensor(load_family(root / "family.toml"), "alignment", UP), expected)


def test_nan_in_the_last_block_of_a_reference_names_it(root, monkeypatch):
    monkeypatch.setattr(stores, "READ_BLOCK_BYTES", 64)
    _edit_state(root / "base", lambda s: s[UP].__setitem__((-1, -1), float("nan")))
    with pytest.raises(NonFiniteError, match=f"base: tensor {UP} contains NaN or Inf values"):
        update_tensor(load_family(root / "family.toml"), "alignment", UP)


def test_weights_the_user_may_not_read_are_named_as_such(root, capsys, monkeypatch):
    """safetensors reports a file it may not open as missing; the tests run as root, where no permission bit
    refuses a read, so the refusal is simulated."""
    locked = root / "useful" / "model.safetensors"
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != locked and real(path, mode, **kw))
    assert _one_line_error(capsys, root) == f"error: useful: cannot read {locked}: permission denied"
