"""Hub ids (`org/name@revision`) for real: members fetched through huggingface_hub from a fake hub on the loopback
(`fake_hub.py`), which speaks the hub's protocol; nothing leaves 127.0.0.1.

huggingface_hub reads its environment once, when it is imported, and this session imported it offline
(conftest.py): `use_hub` points the CLI's subprocesses at the fake hub through the environment, and this process
through huggingface_hub's `constants`, where it reads what it read from the environment."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from builders import TINY, random_family
from fake_hub import FakeHub
from transformers import LlamaConfig

from explorer.checkpoints.family import load_family
from explorer.core.errors import CheckpointError
from explorer.weights.spectra import spectra

ALIGNED, USEFUL = "org/tiny-aligned", "org/tiny-useful"
PROGRESS = re.compile(r"^Fetching \d+ files:")  # huggingface_hub's download bar, on stderr


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A tiny family whose aligned member also carries a tokenizer and a README (which no member needs)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    toml = random_family(tmp_path_factory.mktemp("published"), LlamaConfig(**TINY), seed=7, finetuned=("useful",))
    aligned = toml.parent / "aligned"
    vocab = {"<unk>": 0, **{f"w{i}": i for i in range(1, TINY["vocab_size"])}}
    Tokenizer(WordLevel(vocab, unk_token="<unk>")).save(str(aligned / "tokenizer.json"))
    (aligned / "tokenizer_config.json").write_text(json.dumps({"unk_token": "<unk>", "model_max_length": 128}))
    (aligned / "README.md").write_text("# tiny-aligned\n")
    return toml


@pytest.fixture
def hub(published):
    """The published family's aligned and useful members on a fresh fake hub, plus a gated copy of aligned."""
    hub = FakeHub()
    hub.add(ALIGNED, published.parent / "aligned", revision="v1")
    hub.add(USEFUL, published.parent / "useful")
    hub.add("org/gated", published.parent / "aligned", gated=True)
    with hub:
        yield hub
    assert not hub.unexpected, f"huggingface_hub asked the fake hub for what it does not serve: {hub.unexpected}"


def use_hub(monkeypatch, hub: FakeHub, home: Path, offline: bool = False) -> None:
    """huggingface_hub, here and in subprocesses, on the fake hub with its caches and token under `home`, and no
    proxy between them (a proxy set for the machine would otherwise carry the loopback's requests)."""
    import huggingface_hub
    from huggingface_hub import constants

    settings = {"HF_ENDPOINT": hub.url, "HF_HOME": home, "HF_HUB_CACHE": home / "hub",
                "HF_HUB_OFFLINE": "1" if offline else "0", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    for name, value in settings.items():
        monkeypatch.setenv(name, str(value))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    patched = {"ENDPOINT": hub.url, "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
               "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": offline,
               "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
               "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json")}
    for name, value in patched.items():
        monkeypatch.setattr(constants, name, value)
    huggingface_hub.close_session()  # its HTTP client read the proxies when it was made; the next one reads these


def family_file(folder: Path, published: Path, aligned: str, useful: str = USEFUL) -> Path:
    """A family with the published base (a local folder) and the given aligned and useful members."""
    folder.mkdir(parents=True, exist_ok=True)
    toml = folder / "family.toml"
    toml.write_text(f'name = "hub"\nbase = "{published.parent / "base"}"\naligned = "{aligned}"\n'
                    f'[finetuned]\nuseful = "{useful}"\n')
    return toml


def cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    """`python -m explorer ...` in a subprocess (the environment is the test's), with its own results cache, so
    that nothing it computes is read from another run's cache."""
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EXPLORER_CACHE_DIR": str(cache)})


def error_lines(stderr: str) -> list[str]:
    """What the CLI said on stderr, less huggingface_hub's progress bars."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and not PROGRESS.match(line)]


def local_table(published: Path, monkeypatch, cache: Path, compute):
    """A result computed from the published family's local folders, in a cache of its own."""
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(cache))
    return compute(load_family(published))


def test_hub_members_give_the_numbers_of_their_local_folders(published, hub, tmp_path, monkeypatch):
    toml = family_file(tmp_path, published, f"{ALIGNED}@v1")
    use_hub(monkeypatch, hub, tmp_path / "hf-cli")
    run = cli("spectra", str(toml), "--update", "useful", "--out", str(tmp_path / "spectra.csv"),
              cache=tmp_path / "cache-cli")  # the useful update: both its members from the hub
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    # allow_patterns at work: the weights, config and tokenizer are fetched, the README is not
    assert hub.downloads(ALIGNED) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert hub.downloads(USEFUL) == ["config.json", "model.safetensors"]
    expected = local_table(published, monkeypatch, tmp_path / "cache-local", lambda fam: spectra(fam, "useful"))
    from_hub = pd.read_csv(tmp_path / "spectra.csv")
    assert len(from_hub) == len(expected) > 0 and from_hub["singular_value"].gt(0).any()
    pd.testing.assert_frame_equal(from_hub, expected.reset_index(drop=True), check_dtype=False, rtol=1e-6)

    hub.requests.clear()
    use_hub(monkeypatch, hub, tmp_path / "hf")  # the engine in this process, from a cold hub cache of its own
    family, local = load_family(toml), load_family(published)
    assert [family.sources[m].kind for m in ("base", "aligned", "useful")] == ["checkpoint", "hub", "hub"]
    assert family.tensor_names == local.tensor_names  # validated: shapes, config, the tokenizer's files
    snapshots = tmp_path / "hf" / "hub" / "models--org--tiny-aligned" / "snapshots"
    assert family.store("aligned").folder == snapshots / hub.repos[ALIGNED].refs["v1"]
    assert hub.downloads(ALIGNED) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    for member in ("aligned", "useful"):
        for name in local.tensor_names:
            assert torch.equal(family.store(member).tensor(name), local.store(member).tensor(name)), (member, name)


@pytest.mark.parametrize("aligned, cause", [
    ("org/missing@v1", "not found on the hub"),
    ("org/gated", "it is gated; log in with `hf auth login` and accept its terms"),
], ids=["missing", "gated"])
def test_a_missing_or_gated_repo_is_one_line(published, hub, tmp_path, monkeypatch, aligned, cause):
    use_hub(monkeypatch, hub, tmp_path / "hf")
    toml = family_file(tmp_path, published, aligned)
    message = f"aligned: cannot fetch {aligned} from the Hugging Face hub: {cause}"
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_family(toml).store("aligned")
    repo = aligned.partition("@")[0]
    assert any(f"/api/models/{repo}/" in request for request in hub.requests), "the hub was never asked"

    run = cli("spectra", str(toml), "--update", "alignment", "--out", str(tmp_path / "out.csv"),
              cache=tmp_path / "cache-cli")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    said = error_lines(run.stderr)
    assert len(said) == 1 and said[0].startswith(f"error: {message}"), run.stderr
    assert not (tmp_path / "out.csv").exists()


def test_a_missing_revision_and_an_unreachable_hub_are_named(published, hub, tmp_path, monkeypatch):
    use_hub(monkeypatch, hub, tmp_path / "hf")
    with pytest.raises(CheckpointError, match=re.escape(f"cannot fetch {ALIGNED}@v2 from the Hugging Face hub: the "
                                                        "repository has no revision 'v2'")):
        load_family(family_file(tmp_path, published, f"{ALIGNED}@v2")).store("aligned")
    hub.stop()
    with pytest.raises(CheckpointError, match=re.escape(f"the hub at {hub.url} cannot be reached, and the model is "
                                                        "not in the local hub cache")):
        load_family(family_file(tmp_path, published, f"{ALIGNED}@v1")).store("aligned")


def test_a_second_load_offline_reads_the_warm_hub_cache(published, hub, tmp_path, monkeypatch):
    use_hub(monkeypatch, hub, tmp_path / "hf")
    toml = family_file(tmp_path, published, f"{ALIGNED}@v1")
    online = load_family(toml)
    folders = {m: online.store(m).folder for m in ("aligned", "useful")}
    asked = len(hub.requests)
    assert asked > 0

    use_hub(monkeypatch, hub, tmp_path / "hf", offline=True)
    offline = load_family(toml)
    assert {m: offline.store(m).folder for m in folders} == folders
    assert offline.tensor_names == online.tensor_names
    assert len(hub.requests) == asked, hub.requests[asked:]  # not one request, though the hub is listening
    with pytest.raises(CheckpointError, match=re.escape("cannot fetch org/never-fetched from the Hugging Face hub: "
                                                        "not in the local hub cache, and HF_HUB_OFFLINE is set")):
        load_family(family_file(tmp_path / "never", published, "org/never-fetched")).store("aligned")

    run = cli("spectra", str(toml), "--update", "alignment", "--out", str(tmp_path / "spectra.csv"),
              cache=tmp_path / "cache-cli")
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert len(hub.requests) == asked, hub.requests[asked:]  # the CLI too: offline, it reads the cache alone
    expected = local_table(published, monkeypatch, tmp_path / "cache-local", lambda fam: spectra(fam, "alignment"))
    from_cache = pd.read_csv(tmp_path / "spectra.csv")
    assert len(from_cache) == len(expected) > 0 and from_cache["singular_value"].gt(0).any()
    pd.testing.assert_frame_equal(from_cache, expected.reset_index(drop=True), check_dtype=False, rtol=1e-6)
