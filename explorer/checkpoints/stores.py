"""Streaming access to checkpoints: one tensor at a time, whatever the source kind.

A source is a local Hugging Face folder, a hub id (`org/name@revision`), a PEFT/LoRA adapter
folder (applied on top of a parent store, the family's aligned model) or a `.gguf` file
(de-quantised once into a safetensors folder under the cache).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from explorer.core.config import settings
from explorer.core.errors import CheckpointError, NonFiniteError
from explorer.core.imports import auto_classes, locked_import
from explorer.core.paths import inside
from explorer.core.temp import temp_dir, temp_file

_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
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
    path = Path(spec).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    if path.exists():
        path = path.resolve()
        if path.is_file():
            if path.suffix == ".gguf":
                return Source("gguf", str(path))
            raise CheckpointError(f"{path} is a file but not a .gguf file; give the checkpoint's folder instead")
        if (path / "adapter_config.json").exists():
            return Source("lora", str(path))
        return Source("checkpoint", str(path))
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        repo, _, revision = spec.partition("@")
        return Source("hub", repo, revision or None)
    raise CheckpointError(f"checkpoint not found: {os.path.normpath(path)} does not exist (and {spec!r} is not a "
                          "hub id)")


def _hash_files(paths: list[Path]) -> str:
    """Content hash of files, memoised by (path, size, mtime_ns, inode) so unchanged files are not re-read."""
    memo_path = settings().cache_dir / "fingerprints.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256()
    dirty = False
    for path in sorted(paths):
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
        file_hash = memo.get(key)
        if file_hash is None:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
            file_hash = memo[key] = h.hexdigest()
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


class TensorStore(ABC):
    """Read-only, name-addressed float tensors of one checkpoint."""

    label: str
    folder: Path  # holds config.json (and usually the tokenizer)

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def shape(self, name: str) -> tuple[int, ...]: ...

    @abstractmethod
    def _read(self, name: str) -> torch.Tensor: ...

    @abstractmethod
    def fingerprint(self) -> str: ...

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor as float32 on the CPU; NaN or Inf raise an error naming it."""
        value = self._read(name).to(torch.float32)
        if not torch.isfinite(value).all():
            raise NonFiniteError(f"{self.label}: tensor {name} contains NaN or Inf values")
        return value

    @property
    def config(self) -> dict:
        try:
            return json.loads((self.folder / "config.json").read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{self.label}: no config.json in {self.folder}") from None
        except ValueError as exc:
            raise CheckpointError(f"{self.label}: config.json in {self.folder} is not valid JSON: {exc}") from None

    @property
    def arch(self) -> str | None:
        return self.config.get("model_type")


class SafetensorsStore(TensorStore):
    """A folder of `*.safetensors` shards, memory-mapped."""

    def __init__(self, folder: Path, label: str):
        self.folder, self.label = folder, label
        self._files = sorted(folder.glob("*.safetensors"))
        self._where: dict[str, Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        for file in self._files:
            try:
                with safe_open(str(file), framework="pt") as handle:
                    for key in handle.keys():
                        piece = handle.get_slice(key)
                        if piece.get_dtype() in _FLOAT_DTYPES:
                            self._where[key] = file
                            self._shapes[key] = tuple(piece.get_shape())
            except (SafetensorError, OSError, ValueError) as exc:
                raise CheckpointError(f"{label}: {file} is not a readable safetensors file ({exc})") from None

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def _read(self, name: str) -> torch.Tensor:
        try:
            with safe_open(str(self._where[name]), framework="pt") as handle:
                return handle.get_tensor(name)
        except KeyError:
            raise CheckpointError(f"{self.label}: no tensor named {name}") from None
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{self.label}: cannot read {name} from {self._where[name]} ({exc})") from None

    def fingerprint(self) -> str:
        return _hash_files(self._files + [p for p in [self.folder / "config.json"] if p.exists()])


class TorchBinStore(TensorStore):
    """A folder of `pytorch_model*.bin` files, loaded with weights_only=True and memory-mapped."""

    def __init__(self, folder: Path, label: str):
        self.folder, self.label = folder, label
        self._files = sorted(folder.glob("pytorch_model*.bin"))
        self._tensors: dict[str, torch.Tensor] = {}
        for file in self._files:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
                raise CheckpointError(f"{label}: {file} cannot be loaded safely with weights_only=True ({exc})") from None
            self._tensors.update({k: v for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()})

    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensors[name].shape)

    def _read(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def fingerprint(self) -> str:
        return _hash_files(self._files + [p for p in [self.folder / "config.json"] if p.exists()])


class LoraStore(TensorStore):
    """A PEFT LoRA adapter over a parent store; updates come from the factors, scale * B @ A."""

    def __init__(self, folder: Path, label: str, parent: TensorStore):
        self.folder, self.label, self.parent = folder, label, parent
        try:
            cfg = json.loads((folder / "adapter_config.json").read_text())
        except ValueError as exc:
            raise CheckpointError(f"{label}: adapter_config.json is not valid JSON ({exc})") from None
        if cfg.get("use_dora"):
            raise CheckpointError(f"{label}: DoRA adapters are not supported (their update is not scale * B @ A)")
        self._cfg = cfg
        files = sorted(folder.glob("adapter_model*.safetensors"))
        weights: dict[str, torch.Tensor] = {}
        try:
            for file in files:
                with safe_open(str(file), framework="pt") as handle:
                    weights.update({k: handle.get_tensor(k) for k in handle.keys()})
            for file in [] if files else sorted(folder.glob("adapter_model*.bin")):
                weights.update(torch.load(file, map_location="cpu", weights_only=True))
        except Exception as exc:
            raise CheckpointError(f"{label}: cannot read the adapter weights in {folder} ({exc})") from None
        if not weights:
            raise CheckpointError(f"{label}: {folder} has adapter_config.json but no adapter_model weights")
        self._files = files or sorted(folder.glob("adapter_model*.bin"))
        self._factors: dict[str, dict[str, torch.Tensor]] = {}
        self._replaced: dict[str, torch.Tensor] = {}
        parent_names = set(parent.names())
        for key, value in weights.items():
            key = key.removeprefix("base_model.model.")
            if ".base_layer." in key:
                continue  # a copy of the parent's own weight, saved with embedding adapters
            match = re.match(r"(.+)\.lora_(A|B|embedding_A|embedding_B)(\.default)?(\.weight)?$", key)
            if match:
                target = match.group(1) + ".weight"
                self._factors.setdefault(target, {})[match.group(2)[-1]] = value
            else:
                target = key.replace(".modules_to_save.default", "").replace(".original_module", "")
                self._replaced[target] = value
        for target in list(self._factors) + list(self._replaced):
            if target not in parent_names:
                raise CheckpointError(
                    f"{label}: the adapter modifies {target}, which its base model ({parent.label}) does not have; "
                    "is this adapter for another architecture?"
                )

    def names(self) -> list[str]:
        return self.parent.names()

    def shape(self, name: str) -> tuple[int, ...]:
        return self.parent.shape(name)

    @property
    def config(self) -> dict:
        return self.parent.config

    def _scale(self, target: str, rank: int) -> float:
        alpha = self._cfg.get("lora_alpha", 8)
        for pattern, value in (self._cfg.get("alpha_pattern") or {}).items():
            if re.search(rf"(^|\.){pattern}$", target.removesuffix(".weight")):
                alpha = value
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
        if "embed" in name and update.shape != self.shape(name):
            update = update.T  # lora_embedding_A is (r, vocab), so B @ A is (dim, vocab)
        if self._cfg.get("fan_in_fan_out"):
            update = update.T
        if tuple(update.shape) != self.shape(name):
            raise CheckpointError(f"{self.label}: adapter update for {name} has shape {tuple(update.shape)}, "
                                  f"base has {self.shape(name)}")
        return update

    def _read(self, name: str) -> torch.Tensor:
        update = self.delta(name)
        base = self.parent.tensor(name)
        return base if update is None else base + update

    def fingerprint(self) -> str:
        own = _hash_files(self._files + [self.folder / "adapter_config.json"])
        return hashlib.sha256(f"{own}|{self.parent.fingerprint()}".encode()).hexdigest()[:20]


def _folder_store(folder: Path, label: str) -> TensorStore:
    if any(folder.glob("*.safetensors")):
        return SafetensorsStore(folder, label)
    if any(folder.glob("pytorch_model*.bin")):
        return TorchBinStore(folder, label)
    raise CheckpointError(f"{label}: {folder} holds no *.safetensors or pytorch_model*.bin weights")


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
        raise CheckpointError(f"{label}: cannot fetch {source.label} from the Hugging Face hub: {_hub_reason(exc)}") \
            from None


def _hub_reason(exc: Exception) -> str:
    """What went wrong with a hub download, in one line (the hub's own messages span many)."""
    from huggingface_hub import constants

    kind = type(exc).__name__
    if constants.HF_HUB_OFFLINE or kind in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
        return "the hub cannot be reached from here (offline) and the model is not in the local hub cache"
    if kind in ("RepositoryNotFoundError", "GatedRepoError"):
        return "no such model on the hub, or it is private or gated"
    if kind == "RevisionNotFoundError":
        return "the model has no such revision on the hub"
    return f"{kind}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"


def open_store(source: Source, label: str, parent: TensorStore | None = None) -> TensorStore:
    """Open a source for streaming; LoRA adapters need the store they are applied to."""
    if source.kind == "gguf":
        return SafetensorsStore(_gguf_folder(Path(source.location), label), label)
    folder = _hub_folder(source, label) if source.kind == "hub" else Path(source.location)
    if (folder / "adapter_config.json").exists():
        if parent is None:
            raise CheckpointError(f"{label}: {source.label} is a LoRA adapter, and an adapter needs a base model "
                                  "to apply to (in a family: the aligned member)")
        return LoraStore(folder, label, parent)
    return _folder_store(folder, label)
