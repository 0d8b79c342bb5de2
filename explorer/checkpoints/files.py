"""The files a user hands over as a checkpoint, each read through one validating function: paths, JSON files,
the weight files transformers (or PEFT) would read and no others, and tokenizer files. A problem is one line
naming the file; a traceback or a quietly different reading is never the answer.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from explorer.core.errors import CheckpointError, ExplorerError, one_line
from explorer.core.paths import special_kind

# The names transformers looks for in a folder, in its order (modeling_utils._get_resolved_checkpoint_files).
WEIGHT_LAYOUTS = (("safetensors", "model.safetensors", "model.safetensors.index.json"),
                  ("bin", "pytorch_model.bin", "pytorch_model.bin.index.json"))
# PEFT's adapter files, in its order.
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
# Published beside the Hugging Face shards by some hub repositories (Mistral's own format); transformers skips them.
COMPANIONS = ("consolidated.safetensors", "consolidated.*.safetensors")
# Tokenizer files that transformers parses as JSON objects; tokenizer.json is checked by the tokenizers library.
TOKENIZER_JSON = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
                  "chat_template.json")
# Names of a model's parameters (not of its buffers, such as position ids).
PARAMETER_NAME = re.compile(r"\.(weight|bias)$")
_NOT_WEIGHTS = ("adapter_model", "training_args", "optimizer", "scheduler", "rng_state")
_REASONS = {errno.ENAMETOOLONG: "its name is too long for the file system",
            errno.ELOOP: "it is a loop of symbolic links", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied"}
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "true or false", type(None): "null",
               int: "a number", float: "a number"}


def os_reason(exc: OSError) -> str:
    """Why the OS refused a path, in words (its own strerror otherwise)."""
    return _REASONS.get(exc.errno, exc.strerror or one_line(exc))


def _where(label: str | None, path: Path) -> str:
    return f"{label}: {path}" if label else str(path)


def path_kind(path: Path, label: str | None = None, error: type[ExplorerError] = CheckpointError) -> str | None:
    """'dir' or 'file' for what a path leads to (links followed), None where nothing is there. Anything else (a
    FIFO or a device, which would block or never end a read; a link loop; a name too long; no permission) is an
    error naming the path."""
    if "\0" in str(path):
        raise error(f"{label + ': ' if label else ''}path {str(path)!r} contains a NUL character")
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise error(f"cannot open {_where(label, path)}: {os_reason(exc)}") from None
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    raise error(f"{_where(label, path)} is {special_kind(mode)}, not a file or a folder")


def is_file(path: Path, label: str | None = None) -> bool:
    """A regular file is there; a folder or nothing is not; anything stranger is an error naming it."""
    return path_kind(path, label) == "file"


def read_bytes(path: Path, label: str | None = None, error: type[ExplorerError] = CheckpointError) -> bytes:
    kind = path_kind(path, label, error)
    if kind is None:
        raise error(f"{_where(label, path)} does not exist")
    if kind == "dir":
        raise error(f"{_where(label, path)} is a folder, not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {_where(label, path)}: {os_reason(exc)}") from None


def read_text(path: Path, label: str | None = None, error: type[ExplorerError] = CheckpointError) -> str:
    try:
        return read_bytes(path, label, error).decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{_where(label, path)} is not UTF-8 text") from None


def json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def read_json(path: Path, label: str | None = None, expect: type = dict,
              error: type[ExplorerError] = CheckpointError):
    """A JSON file whose top level is of type `expect` (an object unless told)."""
    text = read_text(path, label, error)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise error(f"{_where(label, path)} is not valid JSON ({one_line(exc)})") from None
    except RecursionError:
        raise error(f"{_where(label, path)} is not valid JSON (nested too deeply)") from None
    if not isinstance(value, expect):
        raise error(f"{_where(label, path)} must hold a JSON {_JSON_TYPES[expect].split()[-1]}, "
                    f"not {json_type(value)}")
    return value


def check_number(value: object, what: str, label: str, positive: bool = False, integer: bool = False) -> None:
    """A setting read from JSON must be a real number (true/false and numbers in quotes are not)."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) \
            or (positive and value <= 0):
        wanted = ("a positive " if positive else "a ") + ("whole number" if integer else "number")
        raise CheckpointError(f"{label}: {what} must be {wanted}, not {value!r}")


@dataclass(frozen=True)
class WeightFiles:
    """The weight files transformers reads from a folder; with an index, which file holds each tensor."""

    format: str  # "safetensors" | "bin"
    files: list[Path]
    weight_map: dict[str, Path] | None = None
    index_file: Path | None = None


def weight_files(folder: Path, label: str, config: dict, strict: bool = True) -> WeightFiles:
    """Exactly the files transformers would load from `folder`. With `strict` (a folder the user made), other
    weight files of that format are refused rather than ignored: a stale copy beside the real one must not make
    the weight analyses and the loaded model disagree. A hub snapshot is read as transformers reads it, as
    published."""
    explicit = config.get("transformers_weights")
    if explicit is not None:
        chosen = _explicit_weights(folder, label, explicit)
    else:
        chosen = _default_weights(folder, label, strict)
    if strict:
        _refuse_strays(folder, label, chosen)
    return chosen


def _default_weights(folder: Path, label: str, strict: bool) -> WeightFiles:
    for fmt, single, index in WEIGHT_LAYOUTS:
        has_single, has_index = is_file(folder / single, label), is_file(folder / index, label)
        if has_single and has_index and strict:
            raise CheckpointError(f"{label}: {folder} holds both {single} and {index}; transformers reads {single} "
                                  "alone, so keep one of them (move the other away)")
        if has_single:
            return WeightFiles(fmt, [folder / single])
        if has_index:
            return _indexed(folder, label, fmt, folder / index)
    strays = [p.name for p in _weight_like(folder, label)]
    if strays:
        raise CheckpointError(f"{label}: {folder} holds {', '.join(strays[:4])} but no model.safetensors or "
                              "model.safetensors.index.json, so transformers would not load it: name a single "
                              "file model.safetensors, or add the index that save_pretrained writes for shards")
    raise CheckpointError(f"{label}: {folder} holds no *.safetensors or pytorch_model*.bin weights")


def _explicit_weights(folder: Path, label: str, explicit: object) -> WeightFiles:
    """config.json's `transformers_weights`, which transformers reads instead of the usual names."""
    if not isinstance(explicit, str) or Path(explicit).name != explicit or explicit in (".", ".."):
        raise CheckpointError(f"{label}: config.json's transformers_weights must be a file name inside {folder}, "
                              f"not {explicit!r}")
    path = folder / explicit
    if not is_file(path, label):
        raise CheckpointError(f"{label}: config.json names transformers_weights {explicit!r}, which is not a file "
                              f"in {folder}")
    if explicit.endswith(".safetensors.index.json"):
        return _indexed(folder, label, "safetensors", path)
    if explicit.endswith(".safetensors"):
        return WeightFiles("safetensors", [path])
    raise CheckpointError(f"{label}: config.json's transformers_weights {explicit!r} is neither a .safetensors "
                          "file nor a .safetensors.index.json index")


def _indexed(folder: Path, label: str, fmt: str, index: Path) -> WeightFiles:
    """The shards an index names, each present; which tensors each holds is checked when they are opened."""
    spec = read_json(index, label)
    weight_map = spec.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{label}: {index} has no \"weight_map\" object naming each tensor's shard")
    if not isinstance(spec.get("metadata"), dict):
        raise CheckpointError(f"{label}: {index} has no \"metadata\" object, which transformers needs to load it "
                              "(save_pretrained writes one)")
    shards: dict[str, Path] = {}
    for shard in weight_map.values():
        if shard not in shards:
            shards[shard] = _shard(folder, label, index, shard)
    return WeightFiles(fmt, sorted(set(shards.values())), {t: shards[s] for t, s in weight_map.items()}, index)


def _shard(folder: Path, label: str, index: Path, shard: object) -> Path:
    if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
        raise CheckpointError(f"{label}: {index} names shard {shard!r}, which is not a file name inside {folder}")
    path = folder / shard
    if not is_file(path, label):
        raise CheckpointError(f"{label}: shard {shard} named in {index.name} is missing from {folder}; copy it "
                              "there (a checkpoint read without it would lack those tensors)")
    return path


def _weight_like(folder: Path, label: str) -> list[Path]:
    """Files that look like model weights; a Trainer's own files (training_args.bin, ...) and adapters do not."""
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith((".safetensors", ".bin"))
                      and not p.name.startswith(_NOT_WEIGHTS))
    except OSError as exc:
        raise CheckpointError(f"{label}: cannot list {folder}: {os_reason(exc)}") from None


def _refuse_strays(folder: Path, label: str, chosen: WeightFiles) -> None:
    suffix = ".safetensors" if chosen.format == "safetensors" else ".bin"
    read = {p.name for p in chosen.files}
    strays = [p.name for p in _weight_like(folder, label) if p.name.endswith(suffix) and p.name not in read
              and not any(fnmatch.fnmatch(p.name, pattern) for pattern in COMPANIONS)]
    if strays:
        raise CheckpointError(f"{label}: {folder} holds {', '.join(strays[:4])} beside {', '.join(sorted(read)[:2])}"
                              f"{', …' if len(read) > 2 else ''}, which transformers reads instead; move the other "
                              "file(s) away so that every analysis reads the same weights")


def adapter_file(folder: Path, label: str) -> Path:
    """The one adapter file PEFT reads (adapter_model.safetensors, else .bin); other adapter_model* files of that
    format are refused: which one was meant cannot be told."""
    chosen = next((folder / name for name in ADAPTER_FILES if is_file(folder / name, label)), None)
    try:
        others = sorted(p.name for p in folder.glob("adapter_model*") if p.name not in ADAPTER_FILES)
    except OSError as exc:
        raise CheckpointError(f"{label}: cannot list {folder}: {os_reason(exc)}") from None
    if chosen is None:
        extra = f" (only {', '.join(others[:3])}; PEFT reads adapter_model.safetensors)" if others else ""
        raise CheckpointError(f"{label}: {folder} has adapter_config.json but no adapter_model weights{extra}")
    others = [name for name in others if name.endswith(chosen.suffix)]
    if others:
        raise CheckpointError(f"{label}: {folder} holds {', '.join(others[:3])} beside {chosen.name}, which PEFT "
                              "reads instead; move the other file(s) away")
    return chosen


def check_tokenizer_files(folder: Path, label: str) -> None:
    """Tokenizer files transformers would parse, parsed now: a corrupt one is named at validation, not met as a
    traceback when a page first loads the tokenizer."""
    for name in TOKENIZER_JSON:
        if is_file(folder / name, label):
            read_json(folder / name, label)
    path = folder / "tokenizer.json"
    if is_file(path, label):
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises its own Exception type for any bad content
            read_json(path, label)  # names truncated JSON or a wrong type plainly
            raise CheckpointError(f"{label}: {path} is not a tokenizer the tokenizers library can read "
                                  f"({one_line(exc, 200)})") from None
