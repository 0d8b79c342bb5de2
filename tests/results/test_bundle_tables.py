"""Precompute keeps what the pages show next to the numbers: each member's responses to the activation prompts
(with a refused flag) and the responses kept at every scored grid point."""
import tomllib

from explorer.evaluation.prompts import is_refusal
from explorer.results.bundle import Bundle
from explorer.results.samples import sample_prompts, samples_from_rows, samples_table


def _bundle(tiny_demo) -> Bundle:
    return Bundle.load(tomllib.loads(tiny_demo.read_text())["name"])


def test_activation_responses_cover_every_member_and_prompt(tiny_demo):
    bundle = _bundle(tiny_demo)
    responses, prompts = bundle.table("activation_responses"), bundle.table("prompts")
    members = set(bundle.table("embeddings")["member"])
    assert set(responses["member"]) == members and len(responses) == len(members) * len(prompts)
    keys = responses.merge(prompts, on=["set", "index"], how="left")
    assert keys["text"].notna().all()
    assert (responses["refused"] == responses["response"].map(is_refusal)).all()


def test_projection_samples_for_every_grid_point(tiny_demo):
    bundle = _bundle(tiny_demo)
    grid, samples = bundle.table("projection"), bundle.table("projection_samples")
    points = ["variant", "method", "subspace", "frac"]
    assert len(samples.drop_duplicates(points)) == len(grid)
    one = samples.merge(grid[points].head(1), on=points)
    kept = samples_from_rows(one)
    assert set(kept) == {"harmful", "utility", "benign"} and all(kept.values())
    table = samples_table(kept)
    assert table["kind"].iloc[0] == "Harmful request"  # harmful requests first
    assert table["prompt"].iloc[0] == sample_prompts("harmful", 1)[0]
