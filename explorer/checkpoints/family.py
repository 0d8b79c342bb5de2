"""A family of checkpoints (base, aligned, fine-tuned variants) described by a TOML file."""
from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from explorer.checkpoints.configs import check_config
from explorer.checkpoints.files import check_tokenizer_files, path_kind, read_text
from explorer.checkpoints.stores import Source, TensorStore, atomic_write_text, open_store, parse_source
from explorer.core.errors import AccessError, CheckpointError, FamilyError, one_line
from explorer.core.paths import allowed_roots, check_name, expand, user_path

BASE, ALIGNED, ALIGNMENT = "base", "aligned", "alignment"
MAX_FAMILY_BYTES = 1 << 20


@dataclass
class Family:
    name: str
    sources: dict[str, Source]  # base, aligned, then the fine-tuned members in file order
    path: Path | None = None
    _stores: dict[str, TensorStore] = field(default_factory=dict, repr=False)

    @property
    def finetuned(self) -> list[str]:
        return [m for m in self.sources if m not in (BASE, ALIGNED)]

    @property
    def members(self) -> list[str]:
        return list(self.sources)

    @property
    def updates(self) -> list[str]:
        """Names of the updates: the alignment update, then one task update per fine-tuned member."""
        return [ALIGNMENT, *self.finetuned]

    def check_member(self, member: str) -> None:
        if member not in self.sources:
            raise FamilyError(f"family {self.name!r} has no member {member!r}; members: {', '.join(self.members)}")

    def check_update(self, update: str) -> None:
        if update not in self.updates:
            raise FamilyError(f"family {self.name!r} has no update {update!r}; updates: {', '.join(self.updates)}")

    def store(self, member: str) -> TensorStore:
        self.check_member(member)
        if member not in self._stores:
            parent = self.store(ALIGNED) if member not in (BASE, ALIGNED) else None
            if member == ALIGNED and self.sources[ALIGNED].kind == "lora":
                parent = self.store(BASE)
            self._stores[member] = open_store(self.sources[member], member, parent)
        return self._stores[member]

    @cached_property
    def arch(self) -> str | None:
        return self.store(BASE).arch

    @cached_property
    def tensor_names(self) -> list[str]:
        return validate(self)

    def fingerprints(self) -> dict[str, str]:
        return {member: self.store(member).fingerprint() for member in self.members}


def with_member(family: Family, member: str, spec: str) -> Family:
    """A copy of the family with one more fine-tuned member (for spot-checks of a new model).

    With EXPLORER_ALLOWED_ROOTS set, `spec` must be a path inside the allowed folders: no hub id.
    """
    if member in family.sources:
        raise FamilyError(f"family {family.name!r} already has a member named {member!r}")
    user_path(spec.strip(), "checkpoint")
    source = parse_source(spec, Path.cwd())
    if allowed_roots() and source.kind == "hub":
        raise AccessError(f"checkpoint {spec.strip()!r} is not a folder inside the allowed roots, and this server "
                          "takes no hub ids (EXPLORER_ALLOWED_ROOTS)")
    return Family(family.name, {**family.sources, member: source}, family.path, dict(family._stores))


def family_name(name: object) -> str:
    """A family's name, which names its results folder: a safe slug."""
    return check_name(name, "family name", FamilyError)


def read_family_spec(path: str | Path) -> dict:
    """The family file's contents, checked for structure only: no checkpoint is looked at."""
    path = user_path(path, "family file")
    kind = path_kind(path, "family file", FamilyError)
    if kind == "dir":
        raise FamilyError(f"{path} is a folder; give the family's .toml file")
    if kind is None:
        raise FamilyError(f"family file not found: {path}")
    if path.stat().st_size > MAX_FAMILY_BYTES:
        raise FamilyError(f"{path} is too large to be a family file (over {MAX_FAMILY_BYTES // 1024} KiB)")
    text = read_text(path, "family file", FamilyError)
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FamilyError(f"{path} is not valid TOML: {one_line(exc)}") from None
    except RecursionError:
        raise FamilyError(f"{path} is not valid TOML: nested too deeply") from None
    missing = [key for key in ("name", BASE, ALIGNED, "finetuned") if key not in spec]
    if missing:
        raise FamilyError(f"{path}: missing key(s) {', '.join(missing)}")
    try:
        family_name(spec["name"])
    except FamilyError as exc:
        raise FamilyError(f"{path}: {exc}") from None
    finetuned = spec["finetuned"]
    if not isinstance(finetuned, dict) or not finetuned:
        raise FamilyError(f"{path}: [finetuned] must be a table with at least one member")
    clash = {BASE, ALIGNED, ALIGNMENT} & set(finetuned)
    if clash:
        raise FamilyError(f"{path}: fine-tuned members cannot be named {', '.join(sorted(clash))}")
    return spec


def load_family(path: str | Path) -> Family:
    path = expand(path, "family file", FamilyError)
    return family_from_dict(read_family_spec(path), path)


def family_from_dict(spec: dict, path: Path | None = None) -> Family:
    where = path or "family"
    finetuned = spec["finetuned"]
    root = path.parent if path else Path.cwd()
    raw = {BASE: spec[BASE], ALIGNED: spec[ALIGNED], **finetuned}
    sources = {}
    for member, value in raw.items():
        if not isinstance(value, str):
            raise FamilyError(f"{where}: member {member!r} must be a path or hub id string, got {value!r}")
        try:
            sources[member] = parse_source(value, root)
        except CheckpointError as exc:
            raise FamilyError(f"{where}: member {member!r}: {exc}") from None
    return Family(family_name(spec["name"]), sources, path)


def check_checkpoint(store: TensorStore) -> None:
    """One member on its own: its config.json describes its tensors, and its tokenizer files can be read."""
    check_config(store)
    check_tokenizer_files(store.folder, store.label)


def validate(family: Family) -> list[str]:
    """Check that every member has the base's float tensors with the same shapes, then each member on its own;
    return the names."""
    base = family.store(BASE)
    names = base.names()
    reference = {name: base.shape(name) for name in names}
    for member in family.members[1:]:
        store = family.store(member)
        if store.arch != base.arch:
            raise FamilyError(f"architecture mismatch: base is {base.arch!r}, {member} is {store.arch!r}")
        theirs = set(store.names())
        for name in names:
            if name not in theirs:
                raise FamilyError(f"tensor {name} is in base but not in {member}")
            if store.shape(name) != reference[name]:
                raise FamilyError(f"tensor {name} differs in shape: base {reference[name]}, {member} {store.shape(name)}")
        extra = sorted(theirs - set(names))
        if extra:
            raise FamilyError(f"tensor {extra[0]} is in {member} but not in base")
    for member in family.members:
        check_checkpoint(family.store(member))
    return names


def write_family_file(family_file: Path, members: dict[str, str | Path]) -> None:
    """The family file, named after its file (families/demo.toml is 'demo'), members in order (base, aligned, then
    the fine-tunes); a Path is written relative to the file's folder, a str (a hub id) as it is."""
    def entry(value: str | Path) -> str:
        text = os.path.relpath(value, family_file.parent) if isinstance(value, Path) else value
        return json.dumps(text, ensure_ascii=False)  # a TOML basic string: quotes and backslashes escaped

    base, aligned, *finetuned = members.items()
    lines = [f'name = "{family_file.stem}"', f"base = {entry(base[1])}", f"aligned = {entry(aligned[1])}", "",
             "[finetuned]", *(f"{m} = {entry(v)}" for m, v in finetuned)]
    atomic_write_text(family_file, "\n".join(lines) + "\n")
