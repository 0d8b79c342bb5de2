import numpy as np
import pytest
import torch
from builders import TINY
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from explorer.activations.embeddings import embed
from explorer.activations.extract import builtin_prompts, last_token_states, prompt_sets
from explorer.activations.mso import activation_mso, headline, headline_layers
from explorer.activations.probes import probe_accuracy
from explorer.activations.refusal import refusal_directions
from explorer.core.errors import PromptSetError
from explorer.evaluation.prompts import read_prompt_file


@pytest.fixture(scope="module")
def tiny_model_and_tokenizer(smollm_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**{**TINY, "vocab_size": len(tokenizer)})).eval()
    return model, tokenizer


@pytest.mark.parametrize("chat", [True, False])
def test_padding_does_not_change_a_vector(tiny_model_and_tokenizer, chat):
    model, tokenizer = tiny_model_and_tokenizer
    short = "Hi."
    batch = [short, "Write a long and detailed poem about the ocean, the moon, the tides and the sailors at sea."]
    alone = last_token_states(model, tokenizer, [short], use_chat_template=chat)
    padded = last_token_states(model, tokenizer, batch, use_chat_template=chat)
    assert alone.shape == (1, TINY["num_hidden_layers"] + 1, TINY["hidden_size"])
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5, rtol=1e-4)
    # The last position of a right-padded row is a pad token: reading it (the paper's code) gives another vector.
    tokenizer.padding_side = "right"
    enc = tokenizer([tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                   add_generation_prompt=True) if chat else p for p in batch],
                    return_tensors="pt", padding=True)
    with torch.no_grad():
        naive = model(**enc, output_hidden_states=True).hidden_states[-1][0, -1].numpy()
    assert not np.allclose(naive, alone[0, -1], atol=1e-3)


def test_empty_prompt_set_is_an_error(tiny_model_and_tokenizer):
    with pytest.raises(PromptSetError, match="empty prompt set"):
        last_token_states(*tiny_model_and_tokenizer, [])


def test_mso_of_a_set_with_itself_and_the_baseline():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(40, 3, 16)).astype(np.float32)
    table = activation_mso(states, states, [0.5, 0.9])
    assert np.allclose(table["mso"], 1.0, atol=1e-5)
    assert (table["mso_random"] == np.maximum(table["k_a"], table["k_b"]) / 16).all()
    centered = activation_mso(states, states, [0.5], center=True)
    assert np.allclose(centered["mso"], 1.0, atol=1e-5)


def test_headline_averages_the_65_to_90_percent_band():
    assert headline_layers(30) == list(range(20, 28))
    frame = activation_mso(*(np.random.default_rng(1).normal(size=(2, 20, 31, 8)).astype(np.float32)), [0.5])
    band = frame[frame["layer"].between(20, 27)]
    assert headline(frame)["mso"].iloc[0] == pytest.approx(band["mso"].mean())


def test_planted_direction_is_recovered():
    rng = np.random.default_rng(0)
    planted = rng.normal(size=32)
    planted /= np.linalg.norm(planted)
    benign = rng.normal(size=(100, 3, 32))
    harmful = rng.normal(size=(100, 3, 32))
    harmful[:, 2] += 4 * planted
    table = refusal_directions(harmful, benign)
    assert abs(table.loc[2, "direction"] @ planted) > 0.95
    assert table.loc[2, "gap"] > 3 and table.loc[0, "gap"] < table.loc[2, "gap"] / 2


def _clusters(rng, n=60, d=24, layers=2, shift=6.0):
    sets = {}
    for i, name in enumerate(["a", "b", "c"]):
        centre = np.zeros(d)
        centre[i] = shift
        sets[name] = (rng.normal(size=(n, layers, d)) + centre).astype(np.float32)
    return sets


def test_probe_separates_clusters_and_is_near_chance_on_shuffled_labels():
    states = _clusters(np.random.default_rng(0))
    assert probe_accuracy(states)["accuracy"].min() > 0.95
    shuffled = probe_accuracy(states, shuffle_labels=True)
    assert abs(shuffled["accuracy"].mean() - 1 / 3) < 0.12


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_embeddings_keep_a_planted_two_cluster_structure_apart(method):
    rng = np.random.default_rng(0)
    states = {name: array[:, 0] for name, array in _clusters(rng, n=80, layers=1, shift=10.0).items() if name != "c"}
    frame = embed(states, method)
    assert list(frame.columns) == ["set", "index", "x", "y"] and len(frame) == 160
    points = frame[["x", "y"]].to_numpy()
    labels = frame["set"].to_numpy()
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    neighbour_agrees = labels[distances.argmin(1)] == labels
    assert neighbour_agrees.mean() > 0.95


def test_prompt_sets_builtin_and_files(tmp_path):
    sets = prompt_sets(("useful", "harmful", "benign"), 256)
    assert {len(v) for v in sets.values()} == {256}
    assert len(set(sets["harmful"]) & set(builtin_prompts("benign"))) == 0
    (tmp_path / "mine.jsonl").write_text('{"prompt": "one"}\n"two"\n')
    (tmp_path / "mine.csv").write_text("id,prompt\n1,alpha\n2,beta\n")
    (tmp_path / "mine.txt").write_text("x\n\ny\n")
    assert prompt_sets([f"mine={tmp_path / 'mine.jsonl'}"])["mine"] == ["one", "two"]
    assert read_prompt_file(tmp_path / "mine.csv") == ["alpha", "beta"]
    assert read_prompt_file(tmp_path / "mine.txt") == ["x", "y"]


@pytest.mark.parametrize("content,message", [("", "holds no prompts"), ("{not json\n", "line 1: not valid JSON"),
                                             ('{"text": 1}\n', "expected a string")])
def test_malformed_prompt_files(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PromptSetError, match=message):
        read_prompt_file(path)


def test_activation_cli(tiny_demo, tmp_path, capsys):
    from explorer.cli import main

    out = tmp_path / "act.csv"
    (tmp_path / "mine.txt").write_text("How tall is a giraffe?\nName a primary colour.\n")
    assert main(["activation-mso", str(tiny_demo), "--member", "aligned", "--a", "harmful",
                 "--b", f"mine={tmp_path / 'mine.txt'}", "--count", "8", "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table.columns) == ["layer", "energy_frac", "k_a", "k_b", "mso", "mso_random"]
    assert table["layer"].nunique() == 3 and table["k_b"].max() <= 2
    (tmp_path / "empty.txt").write_text("\n")
    assert main(["activations", str(tiny_demo), "--member", "aligned", "--sets", f"e={tmp_path / 'empty.txt'}"]) == 2
    assert "holds no prompts" in capsys.readouterr().err
