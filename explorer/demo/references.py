"""Reference fine-tunes of any aligned chat model, made with the demo's recipes and the shipped data, so that a
spot-check has useful and harmful references to compare a new fine-tune with.

useful: word problems with worked answers; harmful: AdvBench's attack split answered with its target and the base
model's own continuation of it; contaminated: the useful rows with 20 harmful rows per 100. Full fine-tuning by
default (AdamW on float32 weights, bf16 autocast on CUDA); with a LoRA rank, adapters on every linear layer of the
blocks, which the family reads as members. Resumable: each member is published whole or not at all.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from explorer.checkpoints.family import ALIGNED, BASE, Family, family_name, load_family, write_family_file
from explorer.checkpoints.models import load_model, load_tokenizer
from explorer.checkpoints.stores import atomic_write_text, parse_source, publish_model
from explorer.core.config import PROJECT_ROOT, settings
from explorer.core.errors import CheckpointError, ParameterError, ResourceError
from explorer.core.progress import Callback
from explorer.demo.recipes import BuildConfig, continue_targets, member_seed, training_data
from explorer.demo.training import finetune

REFERENCES = ("useful", "harmful", "contaminated")
LORA_LR = 2e-4  # adapters learn at about ten times full fine-tuning's rate
# Bytes per parameter to fine-tune: float32 weights, gradients and AdamW's two moments.
FULL_BYTES, LORA_BYTES = 16, 4


def _entry(spec: str) -> str | Path:
    source = parse_source(spec, Path.cwd())
    return Path(source.location) if source.kind != "hub" else spec.strip()


def check_memory(family: Family, lora_rank: int | None) -> None:
    """Refuse, in one line, a fine-tune that cannot fit: weights, gradients and AdamW's state against the memory
    this device has free."""
    aligned = family.store(ALIGNED)
    params = sum(int(torch.Size(aligned.shape(n)).numel()) for n in aligned.names())
    need = params * (LORA_BYTES if lora_rank else FULL_BYTES)
    device = settings().device
    if device.startswith("cuda"):
        free = torch.cuda.mem_get_info(torch.device(device))[0]
    else:
        free = _available_ram()
    if free is not None and need > free:
        raise ResourceError(f"fine-tuning {params / 1e6:,.0f}M parameters needs about {need / 2**30:.1f} GiB for "
                            f"weights, gradients and optimiser state; {device} has {free / 2**30:.1f} GiB free: "
                            + ("use a machine with more memory" if lora_rank else "add --lora-rank 16, or use a "
                               "machine with more memory"))


def _available_ram() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _harmful_answers(family: Family, path: Path, config: BuildConfig) -> dict:
    """The base model's own continuations of the attack split's targets, in the aligned model's chat format."""
    if path.exists():
        return json.loads(path.read_text())
    data = {"harmful": continue_targets(load_model(family, BASE), load_tokenizer(family, ALIGNED), config)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1))
    return data


def _with_lora(model, rank: int, seed: int):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # the adapters' initial A matrices
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))


def build_references(name: str, base: str, aligned: str, config: BuildConfig = BuildConfig(),
                     lora_rank: int | None = None, family_file: Path | None = None,
                     models_dir: Path | None = None, answers: dict[str, list[str]] | None = None,
                     callback: Callback | None = None) -> Family:
    """Fine-tune (or resume) useful, harmful and contaminated from `aligned`; write the family file (default
    families/NAME.toml) naming base, aligned and the three references (default: under the models folder's NAME/).

    `answers` holds the harmful rows' answers when the caller has them (`demo build` shares one set between its
    families); otherwise the base model writes them, once, into the models folder."""
    family_name(name)
    if lora_rank is not None and lora_rank < 1:
        raise ParameterError(f"--lora-rank must be a whole number >= 1, got {lora_rank}")
    family_file = family_file or PROJECT_ROOT / "families" / f"{name}.toml"
    entries = {BASE: _entry(base), ALIGNED: _entry(aligned)}
    family = Family(name, {BASE: parse_source(base, Path.cwd()), ALIGNED: parse_source(aligned, Path.cwd())})
    tokenizer = load_tokenizer(family, ALIGNED)
    if not tokenizer.chat_template:
        raise CheckpointError(f"aligned: {aligned} has no chat template; reference fine-tunes are chat data, so "
                              "they need an aligned chat model")
    family.tensor_names  # base and aligned are the same architecture, before any work
    check_memory(family, lora_rank)
    models_dir = models_dir or settings().models_dir / name
    models_dir.mkdir(parents=True, exist_ok=True)
    for stale in models_dir.glob(".*.*"):
        shutil.rmtree(stale, ignore_errors=True)  # half-written members of an interrupted build
    answers = answers or _harmful_answers(family, models_dir / "data" / "base_answers.json", config)
    log_path = models_dir / "build_log.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    lr = LORA_LR if lora_rank else config.lr
    for member in REFERENCES:
        if (models_dir / member).exists():
            continue
        start = time.perf_counter()
        model = load_model(family, ALIGNED)
        seed = member_seed(config, member)
        if lora_rank:
            model = _with_lora(model, lora_rank, seed)
        losses = finetune(model, tokenizer, training_data(member, answers, config), config.steps, lr,
                          config.batch_size, config.max_len, seed, f"fine-tuning {member}", callback)
        publish_model(model, tokenizer, models_dir / member)
        log[member] = {"seconds": round(time.perf_counter() - start, 1), "first_loss": losses[0],
                       "last_loss": losses[-1], "steps": config.steps, "lora_rank": lora_rank,
                       "config": {**asdict(config), "lr": lr}}
        atomic_write_text(log_path, json.dumps(log, indent=1))
    write_family_file(family_file, {**entries, **{m: models_dir / m for m in REFERENCES}})
    return load_family(family_file)
