"""The precomputed example spot-check: built with the demo's recipe at a lighter contamination, stored with a
family's results (every other result kept), and shown on the Spot-check page until a user analyses their own."""
import shutil
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.checkpoints.family import load_family
from explorer.demo.build import build_example
from explorer.demo.recipes import EXAMPLE, BuildConfig, training_data
from explorer.results.bundle import Bundle, bundle_dir
from explorer.results.spot_example import TABLES, spot_example, store_spot_example

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example_family(tiny_demo, tmp_path_factory) -> Path:
    """tiny_demo's members under another name (absolute paths), with a copy of its results."""
    spec = tomllib.loads(tiny_demo.read_text())
    absolute = {k: str((tiny_demo.parent / v).resolve()) for k, v in spec["finetuned"].items()}
    path = tmp_path_factory.mktemp("example") / "tiny-example.toml"
    path.write_text(f'name = "tiny-example"\nbase = "{(tiny_demo.parent / spec["base"]).resolve()}"\n'
                    f'aligned = "{(tiny_demo.parent / spec["aligned"]).resolve()}"\n[finetuned]\n'
                    + "".join(f'{k} = "{v}"\n' for k, v in absolute.items()))
    shutil.copytree(bundle_dir("tiny"), bundle_dir("tiny-example"))
    return path


def test_the_example_recipe_is_lighter_contamination():
    answers = {"harmful": [f"Sure, here is {i}" for i in range(100)], "benign": []}
    config = BuildConfig(useful_rows=210)
    harmful = {p for p, _ in training_data("harmful", answers, config)}
    rows = training_data(EXAMPLE, answers, config)
    contaminated = training_data("contaminated", answers, config)
    share = sum(p in harmful for p, _ in rows) / len(rows)
    assert 0.03 < share < 0.06 and sum(p in harmful for p, _ in contaminated) / len(contaminated) > 0.15


def test_stored_example_keeps_every_result_and_is_shown_until_the_user_analyses(example_family):
    family = load_family(example_family)
    before = {p.name for p in bundle_dir("tiny-example").glob("*.parquet")}
    scores_before = Bundle.load("tiny-example").scores
    source = build_example(family, BuildConfig(steps=2, batch_size=2, max_len=96, useful_rows=10, limit=5))
    assert source.name == EXAMPLE and (source / "config.json").exists()
    assert build_example(family) == source  # built once
    store_spot_example(example_family, source, "a lightly contaminated fine-tune", "demo example (test)")
    bundle = Bundle.load("tiny-example")
    assert {p.name for p in bundle.folder.glob("*.parquet")} == before | {f"{t}.parquet" for t in TABLES.values()}
    assert bundle.scores == scores_before
    example = spot_example(bundle)
    assert example.label == "a lightly contaminated fine-tune" and example.source == EXAMPLE
    assert example.verdict.resembles in ("useful", "harmful", None)
    assert [r.reference for r in example.verdict.references] == ["useful", "harmful"]
    assert example.scores["profile"] == bundle.manifest["profile"] and example.scores["refusal_rate_ci"]
    assert example.command == "demo example (test)"
    assert spot_example(Bundle.load("tiny")) is None

    at = AppTest.from_file(str(ROOT / "pages" / "5_Spot-check.py"), default_timeout=120)
    at.session_state["family"] = str(example_family)
    at.run()
    assert not at.exception and not at.error
    assert "An example, precomputed" in [h.value for h in at.subheader]
    assert any(example.verdict.sentence() == box.value for box in [*at.success, *at.info])
    assert len(at.get("vega_lite_chart")) == 4  # overlap, energy, effective rank, scores


def test_a_family_without_an_example_says_how_to_get_one(tiny_demo):
    at = AppTest.from_file(str(ROOT / "pages" / "5_Spot-check.py"), default_timeout=120)
    at.session_state["family"] = str(tiny_demo)
    at.run()
    assert not at.exception and not at.error
    assert any("hold no example spot-check" in i.value and "demo example" in i.value for i in at.info)


def test_an_example_is_refused_for_checkpoints_the_results_were_not_computed_from(example_family):
    """Spot-checked against other references than the stored results', an example would not compare like with
    like: refused, with the bundle left as it was."""
    import json

    from explorer.core.errors import ParameterError

    folder = bundle_dir("tiny-example")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["members"]["useful"]["fingerprint"] = "0" * 20
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ParameterError, match="the example spot-check: .* another 'useful' checkpoint"):
        store_spot_example(example_family, folder, "anything", "demo example (test)")
    assert sorted(p.name for p in folder.iterdir()) == before

