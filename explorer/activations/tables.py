"""Every activation-space result of a family as tidy tables (for the bundle, the report and the app)."""
from __future__ import annotations

import pandas as pd

from explorer.activations.embeddings import embed
from explorer.activations.extract import (
    DEFAULT_COUNT,
    DEFAULT_SETS,
    check_fits,
    extract,
    fill_on_runner,
    prompt_sets,
    prompts_hash,
)
from explorer.activations.mso import activation_mso
from explorer.activations.probes import probe_accuracy
from explorer.activations.refusal import (
    alignment_cosines,
    refusal_directions,
    writer_bases,
)
from explorer.checkpoints.family import Family
from explorer.checkpoints.models import load_model, load_tokenizer
from explorer.core.cache import cache_key, cached_frame
from explorer.core.progress import Callback, track
from explorer.evaluation.generation import generate
from explorer.evaluation.prompts import is_refusal

SET_PAIRS = (("useful", "harmful"), ("useful", "benign"), ("harmful", "benign"))
RESPONSE_TOKENS = 16  # a refusal phrase shows within the first few tokens


def umap_layer_choice(n_states: int, every: int = 2) -> list[int]:
    """Every other hidden state, and always the last one."""
    return sorted(set(range(0, n_states, every)) | {n_states - 1})


def layer_embedding(family: Family, member: str, prompts: dict[str, list[str]], layer: int, method: str = "umap",
                    callback: Callback | None = None) -> pd.DataFrame:
    """The 2-D embedding of one layer on demand, cached on disk (activations come from their own cache)."""
    key = cache_key("embedding", member=family.store(member).fingerprint(), layer=layer, method=method,
                    prompts={name: prompts_hash(texts) for name, texts in prompts.items()})

    def compute() -> pd.DataFrame:
        states = extract(family, member, prompts, callback=callback)
        return embed({name: array[:, layer] for name, array in states.items()}, method)

    return cached_frame("embeddings", key, compute)


def prompt_responses(family: Family, member: str, prompts: dict[str, list[str]], max_new_tokens: int = RESPONSE_TOKENS,
                     callback: Callback | None = None) -> pd.DataFrame:
    """A member's greedy response to every activation prompt and whether it refused (columns set, index,
    response, refused), cached on disk by checkpoint fingerprint and prompts."""
    key = cache_key("prompt-responses", member=family.store(member).fingerprint(), tokens=max_new_tokens,
                    prompts={name: prompts_hash(texts) for name, texts in prompts.items()})

    def compute() -> pd.DataFrame:
        model, tokenizer = load_model(family, member), load_tokenizer(family, member)
        rows = []
        for name, texts in track(list(prompts.items()), f"responses of {member}", callback=callback):
            responses = generate(model, tokenizer, texts, max_new_tokens, what=f"set {name!r}")
            rows += [{"set": name, "index": i, "response": r, "refused": is_refusal(r)}
                     for i, r in enumerate(responses)]
        return pd.DataFrame(rows)

    return cached_frame("responses", key, compute)


def activation_tables(family: Family, sets: tuple[str, ...] = DEFAULT_SETS, count: int = DEFAULT_COUNT,
                      umap_layers: list[int] | None = None, callback: Callback | None = None,
                      members: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """The activation analyses of `members` (default: every member of the family)."""
    members = family.members if members is None else members
    prompts = prompt_sets(sets, count)
    check_fits(family, members, prompts)  # every member, before the first one's work
    fill_on_runner(family, members, prompts, callback=callback)
    bases = writer_bases(family)
    pairs = [p for p in SET_PAIRS if set(p) <= set(prompts)]
    tables: dict[str, list[pd.DataFrame]] = {k: [] for k in
                                             ("activation_mso", "refusal_direction", "refusal_alignment", "probe",
                                              "embeddings", "activation_responses")}
    for member in track(members, "activation analyses", callback=callback):
        states = extract(family, member, prompts, callback=callback)
        n_states = next(iter(states.values())).shape[1]
        for a, b in pairs:
            for center in (False, True):  # the paper's uncentered MSO, and the centered one beside it
                tables["activation_mso"].append(activation_mso(states[a], states[b], center=center)
                                                .assign(member=member, a=a, b=b, centered=center))
        if {"harmful", "benign"} <= set(states):
            directions = refusal_directions(states["harmful"], states["benign"])
            cosines = alignment_cosines(directions, bases).assign(member=member)
            best = cosines.groupby("layer", as_index=False)["share_topk"].max() \
                .rename(columns={"share_topk": "cosine_with_alignment_update"})
            merged = directions.drop(columns="direction").merge(best, on="layer", how="left")
            tables["refusal_direction"].append(merged.assign(member=member))
            tables["refusal_alignment"].append(cosines)
        tables["probe"].append(probe_accuracy(states).assign(member=member))
        tables["activation_responses"].append(prompt_responses(family, member, prompts, callback=callback)
                                              .assign(member=member))
        layers = umap_layers if umap_layers is not None else umap_layer_choice(n_states)
        for layer in range(n_states):
            at_layer = {name: array[:, layer] for name, array in states.items()}
            methods = ("pca", "umap") if layer in layers else ("pca",)
            for method in methods:
                tables["embeddings"].append(embed(at_layer, method).assign(member=member, layer=layer, method=method))
    out = {k: pd.concat(v, ignore_index=True) for k, v in tables.items() if v}
    out["embeddings"][["x", "y"]] = out["embeddings"][["x", "y"]].astype("float32")
    out["prompts"] = pd.DataFrame([{"set": name, "index": i, "text": text}
                                   for name, texts in prompts.items() for i, text in enumerate(texts)])
    return out
