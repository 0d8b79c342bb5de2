"""The weight pass, activations and scored points on a local Ray with 2 CPUs give the plain path's numbers."""
import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from builders import TINY, random_family
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, LlamaConfig

from explorer.activations.extract import extract, prompt_sets
from explorer.checkpoints.family import load_family
from explorer.cli import main
from explorer.core.config import settings
from explorer.core.errors import ClusterError, NonFiniteError
from explorer.evaluation.scores import score_members, score_points
from explorer.weights.mso import family_pairs, update_mso
from explorer.weights.projection import projection_stats
from explorer.weights.spectra import spectra
from explorer.weights.updates import map_tensors

TOLERANCE = 1e-5
LOGPROB_RTOL = 1e-5


@pytest.fixture(scope="module")
def cluster():
    """One local Ray with 2 CPUs for the module (explorer's connect() reuses it), always shut down."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: `make ray` (requirements-ray.txt) installs it")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Functions defined here travel by value: the workers cannot import this test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def chat_family(tmp_path_factory, smollm_tokenizer_dir):
    """A tiny random family with a real tokenizer, so that its points can be scored."""
    tokenizer = AutoTokenizer.from_pretrained(smollm_tokenizer_dir)
    root = tmp_path_factory.mktemp("chat-family")
    path = random_family(root, LlamaConfig(**{**TINY, "vocab_size": len(tokenizer)}), seed=5, rank=96)
    tokenizer.save_pretrained(root / "aligned")
    return path


def _use_cache(monkeypatch, folder):
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(folder))
    return folder


def _connect():
    from explorer.distributed.cluster import connect

    return connect("local")


def _assert_frames_close(plain: pd.DataFrame, distributed: pd.DataFrame) -> None:
    """Equal within 1e-5 of each column's scale: float32 SVDs run with other thread counts (a Ray worker has one)
    differ by several float32 epsilons of the largest singular value (1.1e-6 seen on CI)."""
    assert list(plain.columns) == list(distributed.columns) and len(plain) == len(distributed)
    for column in plain.columns:
        if pd.api.types.is_float_dtype(plain[column]):
            scale = max(1.0, float(plain[column].abs().max()))
            np.testing.assert_allclose(distributed[column], plain[column], atol=TOLERANCE * scale, rtol=0)
        else:
            assert (plain[column] == distributed[column]).all(), column


def _weight_results(family_path):
    family = load_family(family_path)
    tables = {f"spectra {u}": spectra(family, u) for u in family.updates}
    tables.update({f"mso {a} {b}": t for (a, b), t in update_mso(family, family_pairs(family)).items()})
    for variant in family.finetuned:
        stats = projection_stats(family, variant, keep_bases=True)
        tables[f"projection {variant}"] = stats.tensors
        tables[f"curve {variant}"] = stats.energy_curve(np.linspace(0.05, 0.95, 19))
    return tables


@pytest.fixture(scope="module")
def full_rank_family(tmp_path_factory):
    """Full-rank updates: past a low-rank update's rank its singular vectors are arbitrary, and two processes with
    different thread counts may pick different ones."""
    return random_family(tmp_path_factory.mktemp("full-rank"), LlamaConfig(**TINY), seed=11, rank=96)


def test_mso_and_sweep_on_ray_match_the_plain_path(cluster, full_rank_family, tmp_path, monkeypatch, capsys):
    llama_family = full_rank_family
    outputs = {}
    for mode in ("plain", "ray"):
        _use_cache(monkeypatch, tmp_path / mode)
        extra = ["--ray", "local"] if mode == "ray" else []
        out = tmp_path / f"{mode}.csv"
        assert main(["mso", str(llama_family), "--a", "useful", "--b", "harmful", "--out", str(out), *extra]) == 0
        assert main(["sweep", str(llama_family), "--keep-bases", *extra]) == 0
        err = capsys.readouterr().err
        assert ("tasks on 2 CPUs" in err) == (mode == "ray")
        # Everything the sweep computed is now read back from the cache, without Ray.
        outputs[mode] = {"mso csv": pd.read_csv(out), **_weight_results(llama_family)}
    assert outputs["plain"].keys() == outputs["ray"].keys()
    for name, plain in outputs["plain"].items():
        _assert_frames_close(plain, outputs["ray"][name])
    bases = [sorted(p.name for p in (tmp_path / mode / "bases").rglob("*.npy")) for mode in ("plain", "ray")]
    assert bases[0] == bases[1] and bases[0]
    assert not list((tmp_path / "ray" / "bases").glob(".*"))  # no temporary folder left behind


def test_one_aggregated_bar_over_every_task(cluster, llama_family, tmp_path, monkeypatch):
    _use_cache(monkeypatch, tmp_path)
    family = load_family(llama_family)
    with _connect() as runner:
        spectra(family, "alignment")
        spectra(family, "useful")
        assert runner.tasks >= 2 * 2 * 2  # several tasks per worker, per analysis
        assert runner.done == runner._bar.total == runner.tasks


def test_the_environment_variable_sends_a_run_to_ray(cluster, llama_family, tmp_path, monkeypatch, capsys):
    _use_cache(monkeypatch, tmp_path)
    monkeypatch.setenv("EXPLORER_RAY", "local")
    assert main(["spectra", str(llama_family), "--update", "harmful", "--out", str(tmp_path / "s.csv")]) == 0
    assert "tasks on 2 CPUs" in capsys.readouterr().err


def _fail_on_down_proj(family, index, name, attempts):
    with open(attempts, "a") as fh:
        fh.write(f"{name}\n")
    if name == "model.layers.1.mlp.down_proj.weight":
        raise OSError("disk went away")
    return index


def test_a_failing_task_is_retried_then_reported_with_its_tensor(cluster, llama_family, tmp_path, monkeypatch):
    _use_cache(monkeypatch, tmp_path)
    attempts = tmp_path / "attempts.txt"
    with _connect(), pytest.raises(ClusterError) as raised:
        map_tensors(load_family(llama_family), _fail_on_down_proj, (str(attempts),), "failing work")
    message = str(raised.value)
    assert "tensor model.layers.1.mlp.down_proj.weight: OSError: disk went away" in message
    assert "\n" not in message and "retries" in message
    tried = attempts.read_text().split().count("model.layers.1.mlp.down_proj.weight")
    assert tried == 4  # the first attempt and Ray's 3 retries


def test_bad_input_fails_at_once_and_leaves_nothing_half_written(cluster, llama_family, tmp_path, monkeypatch,
                                                                  capsys):
    cache = _use_cache(monkeypatch, tmp_path / "cache")
    root = tmp_path / "family"
    shutil.copytree(llama_family.parent, root)
    state = load_file(root / "useful" / "model.safetensors")
    state["model.layers.0.self_attn.o_proj.weight"][1, 1] = float("nan")
    save_file(state, root / "useful" / "model.safetensors")
    with _connect(), pytest.raises(NonFiniteError, match="useful: tensor model.layers.0.self_attn.o_proj.weight"):
        projection_stats(load_family(root / "family.toml"), "useful", keep_bases=True)
    assert not [p for p in (cache / "bases").iterdir()]  # neither temporary nor published bases
    assert not (cache / "results" / "projection").exists()
    assert main(["mso", str(root / "family.toml"), "--a", "useful", "--b", "harmful", "--out",
                 str(tmp_path / "o.csv"), "--ray", "local"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the Ray summary, one line
    assert last.startswith("error: useful: tensor model.layers.0.self_attn.o_proj.weight contains NaN")
    assert not (tmp_path / "o.csv").exists()


POINTS = [("useful", "same", "alignment", 0.5), ("useful", "orth", "random", 0.5),
          ("harmful", "same", "random-k", 0.25), ("contaminated", "opp", "alignment", 0.75)]


SCORES = ("refusal_rate", "utility_accuracy", "over_refusal", "target_logprob")
METRICS = ("energy_kept_ratio", "cosine_task_kept", "cosine_task_alignment", "k_total")


def _assert_scores_close(plain: dict, distributed: dict, keys=SCORES + METRICS) -> None:
    # Log-probabilities of order 10 in float32 differ in their sixth digit when two processes reduce in different
    # orders (thread counts): they are compared relatively.
    for key in keys:
        assert distributed[key] == pytest.approx(plain[key], abs=TOLERANCE, rel=LOGPROB_RTOL), key
    np.testing.assert_allclose(distributed["outcomes"]["target_logprob"], plain["outcomes"]["target_logprob"],
                               atol=TOLERANCE, rtol=LOGPROB_RTOL)
    for name in ("refusal", "utility", "over_refusal"):
        assert distributed["outcomes"][name] == plain["outcomes"][name]


def test_scored_grid_on_ray_matches_the_plain_path_and_resumes(cluster, chat_family, tmp_path, monkeypatch):
    family = load_family(chat_family)
    _use_cache(monkeypatch, tmp_path / "plain")
    plain = score_points(family, POINTS, 0, "smoke")
    plain_members = score_members(family, ["aligned", "harmful"], "smoke")
    ray_cache = _use_cache(monkeypatch, tmp_path / "ray")
    with _connect() as runner:
        distributed = score_points(family, POINTS, 0, "smoke")
        distributed_members = score_members(family, ["aligned", "harmful"], "smoke")
    assert runner.actors == 2 and runner.tasks > len(POINTS) + 2  # the bases' tensor tasks, 4 points, 2 members
    for p, d in zip(plain, distributed):
        _assert_scores_close(p, d)
    for member, p in plain_members.items():
        _assert_scores_close(p, distributed_members[member], SCORES)
    # Each point was written to the cache as it completed: a rerun computes only what is missing.
    written = sorted((ray_cache / "results" / "scores").glob("*.json"))
    assert len(written) == len(POINTS) + 2 * 2  # a member's scores and its house-style adoption
    lost = [p for p in written if '"method": "opp"' in p.read_text()]
    assert len(lost) == 1
    lost[0].unlink()
    with _connect() as runner:
        resumed = score_points(family, POINTS, 0, "smoke")
    assert runner.tasks == runner.actors == 1
    for p, d in zip(plain, resumed):
        _assert_scores_close(p, d)


def test_activations_on_ray_match_the_plain_path(cluster, chat_family, tmp_path, monkeypatch):
    family = load_family(chat_family)
    sets = prompt_sets(["useful", "harmful"], 6)
    _use_cache(monkeypatch, tmp_path / "plain")
    plain = {m: extract(family, m, sets) for m in ("aligned", "useful")}
    _use_cache(monkeypatch, tmp_path / "ray")
    assert main(["activations", str(chat_family), "--member", "useful", "--count", "6", "--sets", "useful", "harmful",
                 "--ray", "local"]) == 0
    with _connect() as runner:
        distributed = {m: extract(family, m, sets) for m in ("aligned", "useful")}
    assert runner.tasks == 1  # useful came from the CLI run's cache; aligned took one task
    for member, states in plain.items():
        for name, array in states.items():
            np.testing.assert_allclose(distributed[member][name], array, atol=TOLERANCE, rtol=0)
    assert str(settings().cache_dir) == str(tmp_path / "ray")


def test_project_scores_several_points_on_ray_as_without(cluster, chat_family, tmp_path, monkeypatch, capsys):
    argv = ["project", str(chat_family), "--variant", "harmful", "--method", "same", "orth", "--subspace", "random",
            "--frac", "0.5", "--evaluate", "smoke", "--json"]
    lines = {}
    for mode in ("plain", "ray"):
        _use_cache(monkeypatch, tmp_path / mode)
        assert main(argv + (["--ray", "local"] if mode == "ray" else [])) == 0
        lines[mode] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["method"], p["frac"]) for p in lines["plain"]] == [("same", 0.5), ("orth", 0.5)]
    assert len(lines["ray"]) == 2
    for plain, distributed in zip(lines["plain"], lines["ray"]):
        _assert_scores_close(plain, distributed)
        _assert_frames_close(pd.DataFrame(plain["removed_by_layer"]), pd.DataFrame(distributed["removed_by_layer"]))
