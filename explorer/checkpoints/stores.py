"""Streaming access to checkpoints: one tensor at a time, whatever the source kind.

A source is a local Hugging Face folder, a hub id (`org/name@revision`), a PEFT/LoRA adapter
folder (applied on top of a parent store, the family's aligned model) or a `.gguf` file
(de-quantised once into a safetensors folder under the cache).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from explorer.checkpoints.files import (
    PARAMETER_NAME,
    WeightFiles,
    adapter_file,
    check_number,
    is_file,
    json_type,
    os_reason,
    path_kind,
    read_json,
    read_text,
    weight_files,
)
from explorer.core.config import settings
from explorer.core.errors import CheckpointError, NonFiniteError, one_line
from explorer.core.imports import auto_classes, locked_import
from explorer.core.paths import expand, inside
from explorer.core.temp import temp_dir, temp_file

log = logging.getLogger("explorer")

_FLOAT_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
_TORCH_FLOATS = {torch.float16, torch.bfloat16, torch.float32, torch.float64}
_FACTOR = re.compile(r"(.+)\.lora_(A|B|embedding_A|embedding_B)(\.default)?(\.weight)?$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_HUB_PATTERNS = ["*.safetensors", "*.json", "*.model", "*.txt", "tokenizer*"]


@dataclass(frozen=True)
class Source:
    """Where a member's weights come from; `location` is an absolute path or a hub id."""

    kind: str  # "checkpoint" | "lora" | "gguf" | "hub"
    location: str
    revision: str | None = None

    @property
    def label(self) -> str:
        return self.location + (f"@{self.revision}" if self.revision else "")


def parse_source(spec: str, relative_to: Path | None = None) -> Source:
    """Classify a source string; relative paths are resolved against `relative_to`."""
    spec = spec.strip()
    if not spec:
        raise CheckpointError("empty checkpoint source")
    path = expand(spec, "checkpoint", CheckpointError)
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    kind = path_kind(path, "checkpoint")
    if kind is not None:
        path = path.resolve()
        if kind == "file":
            if path.suffix == ".gguf":
                return Source("gguf", str(path))
            raise CheckpointError(f"{path} is a file but not a .gguf file; give the checkpoint's folder instead")
        if path_kind(path / "adapter_config.json", "checkpoint") is not None:
            return Source("lora", str(path))
        return Source("checkpoint", str(path))
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        repo, _, revision = spec.partition("@")
        return Source("hub", repo, revision or None)
    raise CheckpointError(f"checkpoint not found: {os.path.normpath(path)} does not exist (and {spec!r} is not a "
                          "hub id)")


def _read_memo(memo_path: Path) -> dict[str, str]:
    """The fingerprint memo; one that is unreadable or not a {key: hash} object is a lost cache entry: it is
    discarded (and rewritten once the hashes are recomputed), never a reason to fail."""
    try:
        if path_kind(memo_path) is None:
            return {}
        memo = json.loads(read_text(memo_path))  # read_text refuses a FIFO or a device rather than block on it
    except (CheckpointError, ValueError, RecursionError) as exc:
        log.warning("discarding the fingerprint memo %s, which cannot be read (%s); recomputing", memo_path,
                    one_line(exc, 120))
        return {}
    if not isinstance(memo, dict) or not all(isinstance(v, str) for v in memo.values()):
        log.warning("discarding the fingerprint memo %s, which is not an object of hashes; recomputing", memo_path)
        return {}
    return memo


def _memo_key(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {os_reason(exc)}") from None
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {os_reason(exc)}") from None
    return h.hexdigest()


def _hash_files(paths: list[Path]) -> str:
    """Content hash of files, memoised by (path, size, mtime_ns, inode) so unchanged files are not re-read."""
    memo_path = settings().cache_dir / "fingerprints.json"
    memo = _read_memo(memo_path)
    digest = hashlib.sha256()
    dirty = False
    for path in sorted(paths):
        key = _memo_key(path)
        file_hash = memo.get(key)
        if file_hash is None:
            file_hash = memo[key] = _file_hash(path)
            dirty = True
        digest.update(path.name.encode() + b"\0" + file_hash.encode())
    if dirty:
        try:
            atomic_write_text(memo_path, json.dumps(memo))
        except OSError:
            pass  # the memo is an optimisation; a read-only cache still gives correct fingerprints
    return digest.hexdigest()[:20]


def atomic_write_text(path: Path, text: str) -> None:
    tmp = temp_file(path.parent, path.name)
    tmp.write_text(text)
    os.replace(tmp, path)


def publish_model(model, tokenizer, target: Path) -> None:
    """Save a model and its tokenizer to `target` whole or not at all: written beside it, then renamed (a failed
    write leaves nothing behind)."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class TensorStore(ABC):
    """Read-only, name-addressed float tensors of one checkpoint."""

    label: str
    folder: Path  # holds config.json (and usually the tokenizer)
    fresh_reads = False  # whether every tensor() is a new tensor the caller may change in place

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def shape(self, name: str) -> tuple[int, ...]: ...

    @abstractmethod
    def _read(self, name: str) -> torch.Tensor: ...

    @abstractmethod
    def fingerprint(self) -> str: ...

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor as float32 on the CPU; NaN, Inf or values beyond float32 raise an error naming it."""
        return self._float32(name, self._read(name))

    def subtract_from(self, name: str, minuend: torch.Tensor) -> None:
        """minuend -= the tensor, in place; minuend has its shape and is the caller's own float32 tensor."""
        minuend.sub_(self.tensor(name))

    def _float32(self, name: str, raw: torch.Tensor) -> torch.Tensor:
        value = raw.to(torch.float32)
        if not all_finite(value):
            if all_finite(raw):
                raise NonFiniteError(f"{self.label}: tensor {name} holds values beyond float32's range "
                                     f"(stored as {raw.dtype}); the analyses need float32")
            raise NonFiniteError(f"{self.label}: tensor {name} contains NaN or Inf values")
        return value

    @cached_property
    def config(self) -> dict:
        return read_config(self.folder, self.label)

    @property
    def arch(self) -> str | None:
        return self.config.get("model_type")


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every value is finite, checked a block at a time: isfinite makes temporaries larger than the
    tensor itself (its absolute values, then masks)."""
    return all(bool(torch.isfinite(block).all()) for block in tensor.reshape(-1).split(1 << 22))


def read_config(folder: Path, label: str) -> dict:
    """A checkpoint's config.json: an object whose model_type, if any, is a name; a quantised model is refused
    here, since its stored tensors are not the weights the model computes with."""
    path = folder / "config.json"
    if path_kind(path, label) is None:
        raise CheckpointError(f"{label}: no config.json in {folder}")
    config = read_json(path, label)
    model_type = config.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise CheckpointError(f"{label}: {path}: model_type must be a string, not {json_type(model_type)}")
    quantization = config.get("quantization_config")
    if quantization:
        method = quantization.get("quant_method", "unknown") if isinstance(quantization, dict) else "unknown"
        raise CheckpointError(f"{label}: {path} describes a quantised model (quant_method {method!r}); the "
                              "analyses need float weights: give the model in float16, bfloat16 or float32")
    return config


def _keep_tensor(name: str, is_float: bool, dtype: object, label: str, file: Path) -> bool:
    """Float tensors are weights; an integer one named like a parameter is a quantised weight, which is refused
    (skipping it would leave it out of every analysis unsaid); other integer tensors are buffers (position ids)."""
    if is_float:
        return True
    if PARAMETER_NAME.search(name):
        raise CheckpointError(f"{label}: tensor {name} in {file.name} is stored as {dtype}, not as floats; "
                              "quantised or integer weights cannot be analysed: give the model in float16, bfloat16 "
                              "or float32")
    return False


def _check_index(label: str, weight_map: dict[str, Path] | None, held: dict[str, Path]) -> None:
    """The index and the shards must agree tensor by tensor: transformers trusts the index, the shards are read."""
    if weight_map is None:
        return
    for tensor, shard in weight_map.items():
        if held.get(tensor) != shard:
            where = f"it is in {held[tensor].name}" if tensor in held else "no shard holds it"
            raise CheckpointError(f"{label}: the index in {shard.parent} places tensor {tensor} in {shard.name}, but "
                                  f"{where}; the index does not describe these shards")
    for tensor, shard in held.items():
        if tensor not in weight_map:
            raise CheckpointError(f"{label}: shard {shard} holds tensor {tensor}, which its index does not list; "
                                  "the index does not describe these shards")


def _hold(held: dict[str, Path], key: str, file: Path, label: str) -> None:
    if key in held:
        raise CheckpointError(f"{label}: tensor {key} is stored twice, in {held[key]} and in {file.name}")
    held[key] = file


READ_BLOCK_BYTES = 1 << 23  # a whole number of elements of every float dtype


class SafetensorsStore(TensorStore):
    """The `*.safetensors` file (or indexed shards) that transformers reads from a folder, read tensor by tensor."""

    fresh_reads = True

    def __init__(self, folder: Path, label: str, weights: WeightFiles):
        self.folder, self.label = folder, label
        self._files, self._index, self._index_file = weights.files, weights.weight_map, weights.index_file
        self._where: dict[str, Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._spans: dict[str, tuple[int, int, torch.dtype]] = {}  # file offset, bytes, dtype
        held: dict[str, Path] = {}
        for file in self._files:
            if not os.access(file, os.R_OK):  # safetensors would report a file it may not read as missing
                raise CheckpointError(f"{label}: cannot read {file}: permission denied")
            try:
                with safe_open(str(file), framework="pt") as handle:
                    for key in handle.keys():
                        _hold(held, key, file, label)
                        piece = handle.get_slice(key)
                        dtype = piece.get_dtype()
                        if _keep_tensor(key, dtype in _FLOAT_DTYPES, dtype, label, file):
                            self._where[key] = file
                            self._shapes[key] = tuple(piece.get_shape())
                data_start, header = _safetensors_header(file)
            except (SafetensorError, OSError, ValueError) as exc:
                raise CheckpointError(f"{label}: {file} is not a readable safetensors file ({exc})") from None
            for key in self._where.keys() & header.keys():
                begin, end = header[key]["data_offsets"]
                self._spans[key] = (data_start + begin, end - begin, _FLOAT_DTYPES[header[key]["dtype"]])
        _check_index(label, self._index, held)

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def _read(self, name: str) -> torch.Tensor:
        """Read into a buffer of its own rather than through a memory map, whose touched pages would count
        towards the process's resident memory on top of the copy."""
        _, size, dtype = self._span(name)
        buffer = torch.empty(size, dtype=torch.uint8)
        for _ in self._blocks(name, buffer):
            pass
        return buffer.view(dtype).reshape(self._shapes[name])

    def subtract_from(self, name: str, minuend: torch.Tensor) -> None:
        """A block of the file at a time through one small buffer: no second copy of a large tensor (the demo's
        113 MB embedding) is held beside the minuend while an update is formed."""
        _, size, dtype = self._span(name)
        itemsize = dtype.itemsize
        flat, start = minuend.view(-1), 0
        for raw in self._blocks(name, torch.empty(min(size, READ_BLOCK_BYTES), dtype=torch.uint8)):
            count = raw.numel() // itemsize
            flat[start:start + count].sub_(self._float32(name, raw.view(dtype)))
            start += count

    def _span(self, name: str) -> tuple[int, int, torch.dtype]:
        if name not in self._spans:
            raise CheckpointError(f"{self.label}: no tensor named {name}")
        return self._spans[name]

    def _blocks(self, name: str, buffer: torch.Tensor) -> Iterator[torch.Tensor]:
        """The tensor's bytes, read into `buffer` (the whole tensor's size, or a whole number of elements
        smaller) and yielded a filled buffer at a time; the last may be shorter."""
        offset, size, _ = self._spans[name]
        try:
            with open(self._where[name], "rb", buffering=0) as handle:
                handle.seek(offset)
                for begin in range(0, size, len(buffer)):
                    part = buffer[:min(len(buffer), size - begin)]
                    done = 0
                    while done < len(part):
                        count = handle.readinto(part.numpy()[done:])
                        if not count:
                            raise OSError(f"the file ends {size - begin - done} bytes before the tensor does")
                        done += count
                    yield part
        except OSError as exc:
            raise CheckpointError(f"{self.label}: cannot read {name} from {self._where[name]} ({exc})") from None

    def fingerprint(self) -> str:
        return _hash_files(self._files + _side_files(self.folder, self._index_file))


def _safetensors_header(file: Path) -> tuple[int, dict]:
    """Where a safetensors file's data starts, and its header: name -> dtype, shape, data_offsets."""
    with open(file, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        return 8 + length, json.loads(handle.read(length))


def _side_files(folder: Path, index_file: Path | None) -> list[Path]:
    """Files besides the weights that decide what is loaded: config.json and the shards' index."""
    return [p for p in (folder / "config.json", index_file) if p is not None and is_file(p)]


class TorchBinStore(TensorStore):
    """The `pytorch_model.bin` file (or indexed shards) that transformers reads, loaded with weights_only=True
    and memory-mapped."""

    def __init__(self, folder: Path, label: str, weights: WeightFiles):
        self.folder, self.label = folder, label
        self._files, self._index, self._index_file = weights.files, weights.weight_map, weights.index_file
        self._tensors: dict[str, torch.Tensor] = {}
        held: dict[str, Path] = {}
        for file in self._files:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
                raise CheckpointError(f"{label}: {file} cannot be loaded safely with weights_only=True ({exc})") from None
            for key, value in _state_dict(state, file, label).items():
                _hold(held, key, file, label)
                if _keep_tensor(key, value.dtype in _TORCH_FLOATS, value.dtype, label, file):
                    self._tensors[key] = value
        _check_index(label, self._index, held)

    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensors[name].shape)

    def _read(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def fingerprint(self) -> str:
        return _hash_files(self._files + _side_files(self.folder, self._index_file))


def _state_dict(state: object, file: Path, label: str) -> dict[str, torch.Tensor]:
    """A loaded .bin must be a flat {name: tensor} state dict, as save_pretrained writes it."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{label}: {file} holds {type(state).__name__}, not a state dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise CheckpointError(f"{label}: {file} holds {type(value).__name__} under {key!r}, not a tensor; save "
                                  "the model's state_dict() itself (a training checkpoint nests it)")
    return state


def adapter_config(folder: Path, label: str) -> dict:
    """adapter_config.json with every setting the update depends on checked for type and range: a wrong type would
    otherwise be a traceback mid-analysis (a string lora_alpha) or a silently different update (a string
    use_rslora counts as true)."""
    cfg = read_json(folder / "adapter_config.json", label)
    peft_type = cfg.get("peft_type", "LORA")
    if peft_type != "LORA":
        raise CheckpointError(f"{label}: {folder} holds a {peft_type!r} adapter; only LoRA adapters are supported")
    for key in ("use_dora", "use_rslora", "fan_in_fan_out"):
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            raise CheckpointError(f"{label}: adapter_config.json's {key} must be true or false, not {cfg[key]!r}")
    if cfg.get("use_dora"):
        raise CheckpointError(f"{label}: DoRA adapters are not supported (their update is not scale * B @ A)")
    check_number(cfg.get("r", 8), "adapter_config.json's r", label, positive=True, integer=True)
    check_number(cfg.get("lora_alpha", 8), "adapter_config.json's lora_alpha", label)
    for key, integer in (("alpha_pattern", False), ("rank_pattern", True)):
        patterns = cfg.get(key) or {}
        if not isinstance(patterns, dict):
            raise CheckpointError(f"{label}: adapter_config.json's {key} must be an object, not {json_type(patterns)}")
        for pattern, value in patterns.items():
            _regex(pattern, f"adapter_config.json's {key}", label)
            check_number(value, f"adapter_config.json's {key}[{pattern!r}]", label, positive=integer, integer=integer)
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        _regex(targets, "adapter_config.json's target_modules", label)
    elif targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise CheckpointError(f"{label}: adapter_config.json's target_modules must be a list of module names or a "
                              f"regular expression, not {targets!r}")
    return cfg


def _regex(pattern: str, what: str, label: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise CheckpointError(f"{label}: {what} {pattern!r} is not a valid regular expression ({exc})") from None


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's per-module override (alpha_pattern, rank_pattern): the first pattern matching the end of the
    module's name (peft.utils.other.get_pattern_key)."""
    for pattern, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def _targeted(targets: str | list[str] | None, module: str) -> bool:
    """Whether PEFT would put a LoRA layer on `module` (its check_target_module_exists)."""
    if targets is None or (isinstance(targets, str) and targets.lower() == "all-linear"):
        return True  # chosen by PEFT from the architecture; not checked here
    if isinstance(targets, str):
        return re.fullmatch(targets, module) is not None
    return any(module == t or module.endswith(f".{t}") for t in targets)


def _adapter_weights(file: Path, label: str) -> dict[str, torch.Tensor]:
    try:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                weights = {k: handle.get_tensor(k) for k in handle.keys()}
        else:
            weights = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise many types for unreadable files
        raise CheckpointError(f"{label}: cannot read the adapter weights in {file} ({one_line(exc, 200)})") from None
    weights = _state_dict(weights, file, label)
    if not weights:
        raise CheckpointError(f"{label}: {file} holds no tensors")
    for key, value in weights.items():
        if value.dtype not in _TORCH_FLOATS:
            raise CheckpointError(f"{label}: adapter tensor {key} in {file.name} is {value.dtype}, not floats")
        if not all_finite(value):
            raise NonFiniteError(f"{label}: adapter tensor {key} in {file.name} contains NaN or Inf values")
    return weights


class LoraStore(TensorStore):
    """A PEFT LoRA adapter over a parent store; updates come from the factors, scale * B @ A."""

    def __init__(self, folder: Path, label: str, parent: TensorStore):
        self.folder, self.label, self.parent = folder, label, parent
        self._cfg = adapter_config(folder, label)
        file = adapter_file(folder, label)
        self._files = [file]
        self._factors: dict[str, dict[str, torch.Tensor]] = {}
        self._embedding: set[str] = set()  # targets whose factors are lora_embedding_A/B
        self._replaced: dict[str, torch.Tensor] = {}
        for key, value in _adapter_weights(file, label).items():
            key = key.removeprefix("base_model.model.")
            if ".base_layer." in key:
                continue  # a copy of the parent's own weight, saved with embedding adapters
            match = _FACTOR.match(key)
            if match:
                target = match.group(1) + ".weight"
                self._factors.setdefault(target, {})[match.group(2)[-1]] = value
                if match.group(2).startswith("embedding"):
                    self._embedding.add(target)
            else:
                target = key.replace(".modules_to_save.default", "").replace(".original_module", "")
                self._replaced[target] = value
        parent_names = set(parent.names())
        for target in list(self._factors) + list(self._replaced):
            if target not in parent_names:
                raise CheckpointError(
                    f"{label}: the adapter modifies {target}, which its base model ({parent.label}) does not have; "
                    "is this adapter for another architecture?"
                )
        for target, factors in self._factors.items():
            self._check_factors(target, factors)
        for target, value in self._replaced.items():
            if tuple(value.shape) != parent.shape(target):
                raise CheckpointError(f"{label}: the adapter replaces {target} with shape {tuple(value.shape)}, but "
                                      f"its base model has {parent.shape(target)}")

    def _check_factors(self, target: str, factors: dict[str, torch.Tensor]) -> None:
        """Both factors, 2-D, of one rank (the configured one), whose product has the base tensor's shape: what PEFT
        needs to load the adapter, checked before any update is computed."""
        module = target.removesuffix(".weight")
        for have, lack in (("A", "B"), ("B", "A")):
            if have in factors and lack not in factors:
                raise CheckpointError(f"{self.label}: the adapter has lora_{have} for {module} but no lora_{lack}; "
                                      "an adapter needs both factors of every module it changes")
        lora_a, lora_b = factors["A"], factors["B"]
        if lora_a.dim() != 2 or lora_b.dim() != 2 or lora_a.shape[0] != lora_b.shape[1]:
            raise CheckpointError(f"{self.label}: lora_A {tuple(lora_a.shape)} and lora_B {tuple(lora_b.shape)} of "
                                  f"{module} are not two matrices of one rank (A is (r, in), B is (out, r))")
        rank = _pattern_value(self._cfg.get("rank_pattern"), module, self._cfg.get("r", 8))
        if lora_a.shape[0] != rank:
            raise CheckpointError(f"{self.label}: the factors of {module} have rank {lora_a.shape[0]}, but "
                                  f"adapter_config.json gives rank {rank} (r or rank_pattern)")
        if not _targeted(self._cfg.get("target_modules"), module):
            raise CheckpointError(f"{self.label}: the adapter has factors for {module}, which adapter_config.json's "
                                  "target_modules does not name, so PEFT would not apply them")
        if self._transposed(target):
            shape = (lora_a.shape[1], lora_b.shape[0])
        else:
            shape = (lora_b.shape[0], lora_a.shape[1])
        if shape != self.parent.shape(target):
            raise CheckpointError(f"{self.label}: the adapter's update of {target} has shape {shape}, but its base "
                                  f"model ({self.parent.label}) has {self.parent.shape(target)}; is this adapter for "
                                  "another model size?")

    def _transposed(self, target: str) -> bool:
        """PEFT transposes B @ A for embeddings (lora_embedding_A is (r, vocab)) and for fan_in_fan_out layers."""
        return target in self._embedding or bool(self._cfg.get("fan_in_fan_out"))

    def names(self) -> list[str]:
        return self.parent.names()

    def shape(self, name: str) -> tuple[int, ...]:
        return self.parent.shape(name)

    @property
    def config(self) -> dict:
        return self.parent.config

    def _scale(self, target: str, rank: int) -> float:
        alpha = _pattern_value(self._cfg.get("alpha_pattern"), target.removesuffix(".weight"),
                               self._cfg.get("lora_alpha", 8))
        return alpha / (rank**0.5 if self._cfg.get("use_rslora") else rank)

    @property
    def lora_targets(self) -> set[str]:
        """Names of the parent's tensors that the adapter updates through low-rank factors."""
        return set(self._factors)

    def delta(self, name: str) -> torch.Tensor | None:
        """The adapter's update of one tensor, or None where the adapter leaves it unchanged."""
        if name in self._replaced:
            return self._replaced[name].float() - self.parent.tensor(name)
        factors = self._factors.get(name)
        if factors is None:
            return None
        lora_a, lora_b = factors["A"].float(), factors["B"].float()
        update = self._scale(name, lora_a.shape[0]) * (lora_b @ lora_a)
        return update.T if self._transposed(name) else update

    def _read(self, name: str) -> torch.Tensor:
        update = self.delta(name)
        base = self.parent.tensor(name)
        return base if update is None else base + update

    def fingerprint(self) -> str:
        own = _hash_files(self._files + [self.folder / "adapter_config.json"])
        return hashlib.sha256(f"{own}|{self.parent.fingerprint()}".encode()).hexdigest()[:20]


def _folder_store(folder: Path, label: str, strict: bool = True) -> TensorStore:
    """The weights transformers would load from a folder, as a store; `strict` refuses stray weight files."""
    # Without config.json the weights are still named first; the missing config is reported when it is read.
    config = read_config(folder, label) if path_kind(folder / "config.json", label) is not None else {}
    weights = weight_files(folder, label, config, strict)
    return (SafetensorsStore if weights.format == "safetensors" else TorchBinStore)(folder, label, weights)


def load_gguf(path: Path, label: str = "gguf"):
    """A GGUF file as a plain float32 model (serialisable, unlike transformers' GGUF-loaded one) and tokenizer."""
    AutoModelForCausalLM, AutoTokenizer = auto_classes()

    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # gguf and transformers raise many types for unreadable files
        raise CheckpointError(f"{label}: cannot read GGUF file {path} ({exc})") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are de-quantised now; keeping it marks them unsaveable
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return model.eval(), tokenizer


def _gguf_folder(path: Path, label: str) -> Path:
    """De-quantise a GGUF file once into a safetensors folder keyed by the file's content."""
    key = _hash_files([path])
    target = inside(settings().models_dir, f"gguf-{path.stem}-{key}")
    if (target / "config.json").exists():
        return target
    model, tokenizer = load_gguf(path, label)
    tmp = temp_dir(target.parent, target.name)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)
    return target


def _hub_folder(source: Source, label: str) -> Path:
    snapshot_download = locked_import("huggingface_hub").snapshot_download
    try:
        return Path(snapshot_download(source.location, revision=source.revision, allow_patterns=_HUB_PATTERNS))
    except Exception as exc:
        reason = _hub_reason(exc, source)
        raise CheckpointError(f"{label}: cannot fetch {source.label} from the Hugging Face hub: {reason}") from None


def _hub_reason(exc: Exception, source: Source) -> str:
    """What went wrong with a hub download, in one line (the hub's own messages span many)."""
    from huggingface_hub import constants, errors

    if isinstance(exc, errors.GatedRepoError):  # a kind of RepositoryNotFoundError: tested first
        return "it is gated; log in with `hf auth login` and accept its terms on its page on the hub"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return "not found on the hub (no such repository, or a private one: log in with `hf auth login` if you " \
               "have access)"
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"the repository has no revision {source.revision or 'main'!r} (a branch, tag or commit) on the hub"
    if constants.HF_HUB_OFFLINE:
        return "not in the local hub cache, and HF_HUB_OFFLINE is set (unset it to download)"
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        return f"the hub at {constants.ENDPOINT} cannot be reached, and the model is not in the local hub cache"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"


def open_store(source: Source, label: str, parent: TensorStore | None = None) -> TensorStore:
    """Open a source for streaming; LoRA adapters need the store they are applied to."""
    if source.kind == "gguf":
        return _folder_store(_gguf_folder(Path(source.location), label), label)
    folder = _hub_folder(source, label) if source.kind == "hub" else Path(source.location)
    if path_kind(folder, label) != "dir":
        raise CheckpointError(f"{label}: checkpoint folder {folder} is gone")
    if path_kind(folder / "adapter_config.json", label) is not None:
        if parent is None:
            raise CheckpointError(f"{label}: {source.label} is a LoRA adapter, and an adapter needs a base model "
                                  "to apply to (in a family: the aligned member)")
        return LoraStore(folder, label, parent)
    return _folder_store(folder, label, strict=source.kind != "hub")  # a hub repository is taken as published
