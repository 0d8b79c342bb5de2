"""Hidden states of prompt sets at the last real token of each prompt, every layer (embeddings included).

Batches are right-padded and the vector is read at index (number of real tokens - 1) of each row, so
padding never changes a vector (the paper's code reads the last position, a pad token for short prompts).
"""
from __future__ import annotations

import hashlib
import json
import logging
import numbers
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from explorer.checkpoints.family import Family
from explorer.checkpoints.models import batches, chat_text, load_model, load_tokenizer
from explorer.core.cache import cache_key, read_verified, result_path, write_npy
from explorer.core.errors import PromptSetError
from explorer.core.paths import check_name
from explorer.core.progress import Callback, track
from explorer.core.runners import active_runner
from explorer.evaluation.context import check_fit, context_of, model_context, token_counts
from explorer.evaluation.prompts import (
    advbench_split,
    benign_split,
    read_prompt_file,
    word_problems,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("explorer")
DEFAULT_SETS = ("useful", "harmful", "benign")
DEFAULT_COUNT = 256
# Every prompt keeps a hidden state per layer in memory (about 0.5 MB on a 7B model), and the built-in useful set
# is generated on demand: a count far above any real set is a slip that would fill the memory.
MAX_COUNT = 10_000


def check_count(count: object) -> int:
    """The number of prompts per set: a whole number from 1 to MAX_COUNT."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise PromptSetError(f"the number of prompts per set must be a whole number, got {count!r}")
    if count < 1:
        raise PromptSetError(f"the number of prompts per set must be at least 1, got {count}")
    if count > MAX_COUNT:
        raise PromptSetError(f"the number of prompts per set must be at most {MAX_COUNT}, got {count}: every prompt "
                             "keeps a hidden state per layer in memory")
    return int(count)


def builtin_prompts(name: str, count: int = DEFAULT_COUNT) -> list[str]:
    """useful: held-out word problems; harmful: the AdvBench evaluation split; benign: general instructions."""
    count = check_count(count)
    if name == "useful":
        prompts = [p.question for p in word_problems("evaluation", count)]
    elif name == "harmful":
        prompts = [b.goal for b in advbench_split("evaluation")]
    elif name == "benign":
        prompts = list(benign_split("activations"))
    else:
        hint = f", e.g. mine={name}" if "/" in name or Path(name).suffix else ""
        raise PromptSetError(f"unknown prompt set {name!r}; built-in sets are {', '.join(DEFAULT_SETS)} "
                             f"(give others as NAME=FILE{hint})")
    if len(prompts) < count:
        raise PromptSetError(f"the built-in {name} set has {len(prompts)} prompts, fewer than the {count} asked for")
    return prompts[:count]


def parse_spec(spec: object) -> tuple[str, str | None]:
    """(name, file) of a NAME=FILE spec, (name, None) of a built-in set's name."""
    if not isinstance(spec, str):
        raise PromptSetError(f"a prompt set is a built-in name or NAME=FILE, got {spec!r}")
    name, equals, path = spec.partition("=")
    if not equals:
        return name, None
    check_name(name, "prompt set name", PromptSetError)
    if not path.strip():
        raise PromptSetError(f"prompt set {name!r} names no file: give it as {name}=FILE")
    return name, path


def file_prompts(name: str, path: str, count: int) -> list[str]:
    """The first `count` prompts of a file; all of a shorter file, with a note (a set of one's own is rarely the
    default count long, and refusing it would ask for --count on every run)."""
    prompts = read_prompt_file(path)
    if len(prompts) < count:
        log.warning("prompt set %r has %d prompts, fewer than the %d asked for: using all %d", name, len(prompts),
                    count, len(prompts))
    return prompts[:count]


def prompt_sets(specs: list[str] | tuple[str, ...] = DEFAULT_SETS, count: int = DEFAULT_COUNT) -> dict[str, list[str]]:
    """Prompt sets by name: built-in names, or NAME=FILE for a .txt/.csv/.jsonl file of the user's. Each name is
    given once and no two sets hold the same prompts (a set compared with itself tells nothing), checked before
    any file is read or any model loaded."""
    count = check_count(count)
    if isinstance(specs, str):  # one spec, which would otherwise be read letter by letter
        specs = [specs]
    parsed = [parse_spec(spec) for spec in specs]
    if not parsed:
        raise PromptSetError("no prompt sets given: name built-in sets or give NAME=FILE")
    names = [name for name, _ in parsed]
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        raise PromptSetError(f"prompt set {twice!r} is given twice; give two different sets (a file of your own "
                             "as NAME=FILE, with a name of its own)")
    sets = {name: file_prompts(name, path, count) if path else builtin_prompts(name, count) for name, path in parsed}
    seen: dict[str, str] = {}
    for name, prompts in sets.items():
        other = seen.setdefault(prompts_hash(prompts), name)
        if other != name:
            raise PromptSetError(f"prompt sets {other!r} and {name!r} hold the same prompts; give two different sets")
    return sets


def prompts_hash(prompts: list[str]) -> str:
    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:16]


@torch.no_grad()
def last_token_states(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                      batch_size: int = 32, use_chat_template: bool = True, what: str = "the set") -> np.ndarray:
    """(n_prompts, n_layers + 1, d_model) hidden states at each prompt's last real token; a prompt longer than the
    model's context is refused before any work (`what` names the set in the message)."""
    if not prompts:
        raise PromptSetError("cannot extract activations of an empty prompt set")
    check_fit(token_counts(tokenizer, prompts, use_chat_template), prompts, model_context(model, tokenizer), what)
    tokenizer.padding_side = "right"
    rows = []
    try:
        for chunk in batches(prompts, batch_size):
            texts = [chat_text(tokenizer, p, use_chat_template) for p in chunk]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not use_chat_template)
            enc = enc.to(model.device)
            hidden = model(**enc, output_hidden_states=True).hidden_states  # (layers + 1) x (batch, seq, d)
            last = enc["attention_mask"].sum(1) - 1
            picked = torch.stack([h[torch.arange(len(chunk), device=h.device), last] for h in hidden], 1)
            rows.append(picked.float().cpu().numpy())
    finally:
        tokenizer.padding_side = "left"
    return np.concatenate(rows)


def _missing(family: Family, member: str, sets: dict[str, list[str]], use_chat_template: bool
             ) -> tuple[dict[str, Path], dict[str, tuple[list[str], Path]]]:
    """Where each set's activations are cached, and the sets that are not there yet with their prompts."""
    fingerprint = family.store(member).fingerprint()
    keys = {name: cache_key("activations", member=fingerprint, prompts=prompts_hash(prompts), chat=use_chat_template)
            for name, prompts in sets.items()}
    paths = {name: result_path("activations", key, ".npy") for name, key in keys.items()}
    # A memory-mapped load reads only the header: enough to find (and remove) a truncated entry.
    return paths, {name: (sets[name], path) for name, path in paths.items()
                   if read_verified(path, lambda p: np.load(p, mmap_mode="r")) is None}


def check_fits(family: Family, members: list[str], sets: dict[str, list[str]], use_chat_template: bool = True
               ) -> None:
    """Before any model is loaded: refuse prompts longer than a member's context (its config, its tokenizer)."""
    for member in members:
        tokenizer = load_tokenizer(family, member)
        context = context_of(family.store(member).config, tokenizer)
        for name, prompts in sets.items():
            check_fit(token_counts(tokenizer, prompts, use_chat_template), prompts, context,
                      f"set {name!r} (for {member})")


def _compute(family: Family, member: str, todo: dict[str, tuple[list[str], Path]], use_chat_template: bool,
             batch_size: int, callback: Callback | None = None) -> dict[str, np.ndarray]:
    model, tokenizer = load_model(family, member), load_tokenizer(family, member)
    out = {}
    for name, (prompts, path) in track(list(todo.items()), f"activations of {member}", callback=callback):
        out[name] = last_token_states(model, tokenizer, prompts, batch_size, use_chat_template, f"set {name!r}")
        write_npy(path, out[name])
    return out


def extract(family: Family, member: str, sets: dict[str, list[str]], use_chat_template: bool = True,
            batch_size: int = 32, callback: Callback | None = None) -> dict[str, np.ndarray]:
    """Activations of every set for one member, cached by (checkpoint fingerprint, prompt-set hash, options)."""
    paths, todo = _missing(family, member, sets, use_chat_template)
    if todo:
        check_fits(family, [member], {name: prompts for name, (prompts, _) in todo.items()}, use_chat_template)
    computed = {}
    if todo and active_runner() is not None:
        fill_on_runner(family, [member], {name: prompts for name, (prompts, _) in todo.items()}, use_chat_template,
                       batch_size, callback)
    elif todo:
        computed = _compute(family, member, todo, use_chat_template, batch_size, callback)
    return {name: computed[name] if name in computed else np.load(path) for name, path in paths.items()}


def extract_member(family: Family, member: str, sets: dict[str, list[str]], use_chat_template: bool = True,
                   batch_size: int = 32) -> list[str]:
    """Compute a member's sets that are not cached yet into the cache; return their names (a small result)."""
    _, todo = _missing(family, member, sets, use_chat_template)
    if todo:
        _compute(family, member, todo, use_chat_template, batch_size)
    return list(todo)


def fill_on_runner(family: Family, members: list[str], sets: dict[str, list[str]], use_chat_template: bool = True,
                   batch_size: int = 32, callback: Callback | None = None) -> None:
    """On a cluster (an active runner), extract the members in parallel, one task per member, into the cache.
    Without a runner there is nothing to do ahead: extract() computes each member when it is asked for."""
    runner = active_runner()
    if runner is not None:
        check_fits(family, members, sets, use_chat_template)
        runner.map_members(family, extract_member, members, (sets, use_chat_template, batch_size), "activations",
                           callback)
