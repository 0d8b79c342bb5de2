"""Under AppTest: a damaged bundle, a live action that fails, an unsafe family name and a path outside the allowed
roots each show exactly one error box, and never an exception or a traceback."""
import json
import logging
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.core.config import settings

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120
# Each page and a bundle table it reads (the Spot-check page reads only the scores until a checkpoint is analysed).
PAGE_TABLES = {"app.py": "projection.parquet", "pages/1_Weight_spectra.py": "spectra.parquet",
               "pages/2_Projection_lab.py": "energy_curves.parquet", "pages/3_Update_overlap.py": "update_mso.parquet",
               "pages/4_Activation_space.py": "embeddings.parquet", "pages/5_Spot-check.py": "scores.json"}


def _run(page: str, family: Path, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=TIMEOUT)
    at.session_state["family"] = str(family)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def _family_file(folder: Path, name: str, members_from: Path) -> Path:
    """A family file named `name` whose members are those of another family file."""
    text = members_from.read_text().replace('name = "tiny"', f'name = "{name}"')
    text = text.replace('"../models/', f'"{members_from.parent.parent / "models"}/')
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _one_error(at: AppTest) -> str:
    assert not at.exception, at.exception
    assert len(at.error) == 1, [e.value for e in at.error]
    assert "Traceback" not in at.error[0].value
    return at.error[0].value


def _copy_with_one_file(page: str, damaged: str, kind: str = "damaged") -> tuple[str, Path]:
    """A copy of the tiny bundle of its own per case (Streamlit caches tables by folder and manifest time across
    runs), and the file of it to damage: `damaged` names one, or "table" the one the page reads."""
    name = f"{kind}-{Path(page).stem.lower().replace('_', '-')}-{damaged.replace('.', '-')}"
    folder = settings().bundles_dir / name
    shutil.copytree(settings().bundles_dir / "tiny", folder)
    return name, folder / (PAGE_TABLES[page] if damaged == "table" else damaged)


@pytest.mark.parametrize("damaged", ["scores.json", "table"])
@pytest.mark.parametrize("page", PAGE_TABLES)
def test_a_damaged_bundle_shows_one_error_on_every_page(tiny_demo, tmp_path, page, damaged):
    name, broken = _copy_with_one_file(page, damaged)
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    at = _run(page, _family_file(tmp_path, name, tiny_demo))
    message = _one_error(at)
    assert message.startswith(f"{broken} cannot be read: it is truncated or corrupt")
    assert "regenerate the results with `python -m explorer precompute" in message


def _wrong_schema(path: Path) -> None:
    """Rewrite a bundle file so that it still parses but is not of the bundle's schema."""
    if path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame({"unrelated": [1, 2]}).to_parquet(path)
    elif path.name == "manifest.json":
        path.write_text(json.dumps({**json.loads(path.read_text()), "grid": ["not", "an", "object"]}))
    else:
        path.write_text(json.dumps({member: "high" for member in json.loads(path.read_text())}))


@pytest.mark.parametrize("damaged", ["manifest.json", "table"])
@pytest.mark.parametrize("page", PAGE_TABLES)
def test_a_bundle_of_the_wrong_schema_shows_one_error_on_every_page(tiny_demo, tmp_path, page, damaged):
    name, broken = _copy_with_one_file(page, damaged, "schema")
    _wrong_schema(broken)
    message = _one_error(_run(page, _family_file(tmp_path, name, tiny_demo)))
    assert message.startswith(f"{broken} cannot be read: ")
    assert "so it is not a file of these results; regenerate the results with `python -m explorer precompute" \
        in message


@pytest.fixture
def scoring_fails(tiny_demo, monkeypatch) -> Path:
    """The tiny family, whose live scoring fails as a GPU out of memory would: an error the pages do not foresee
    (a damaged checkpoint is refused before any live action, so it cannot stand in for one)."""
    from explorer.evaluation.scores import PointScorer

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(PointScorer, "score_stream", out_of_memory)
    return tiny_demo


def test_a_failing_live_action_shows_one_error_naming_it(scoring_fails, caplog):
    at = _run("pages/2_Projection_lab.py", scoring_fails, proj_frac=0.27, proj_auto=False)
    assert not at.exception and not at.error
    with caplog.at_level(logging.ERROR, logger="explorer.app"):
        at.button(key="compute_live").click().run()
    message = _one_error(at)
    assert message == ("Computing this point live failed with an unexpected RuntimeError; the details are in the "
                       "server's log.")
    assert any(r.name == "explorer.app" and r.exc_info and "Computing this point live failed" in r.getMessage()
               for r in caplog.records)  # the traceback goes to the log
    at.slider(key="proj_frac").set_value(0.5).run()  # the page recovers on the next interaction
    assert not at.exception and not at.error


def test_an_unsafe_family_name_is_one_error(tiny_demo, tmp_path):
    family = _family_file(tmp_path, "tiny", tiny_demo)
    family.write_text(family.read_text().replace('name = "tiny"', 'name = "../tiny"'))
    assert "family name '../tiny' is not allowed" in _one_error(_run("app.py", family))


def test_a_folder_as_the_family_is_one_error(tiny_demo):
    assert "is a folder; give the family's .toml file" in _one_error(_run("app.py", tiny_demo.parent))


def test_allowed_roots_confine_the_family_and_the_spot_check(tiny_demo, tmp_path, monkeypatch):
    inside = tmp_path / "allowed"
    inside.mkdir()
    family = _family_file(inside, "tiny", tiny_demo)
    monkeypatch.setenv("EXPLORER_ALLOWED_ROOTS", str(inside))
    outside = _one_error(_run("app.py", tiny_demo))
    assert outside == f"family file {str(tiny_demo)!r} is outside the folders this server allows " \
                      "(EXPLORER_ALLOWED_ROOTS)"

    at = _run("pages/5_Spot-check.py", family)
    assert not at.exception and not at.error
    at.text_input(key="spot_spec").input(str(tiny_demo.parent.parent / "models" / "harmful"))
    at.button[0].click().run()
    assert "is outside the folders this server allows" in _one_error(at)


def test_a_live_point_scored_as_the_control_moves_fails_as_one_error(scoring_fails):
    at = _run("pages/2_Projection_lab.py", scoring_fails, proj_frac=0.27)  # off the grid: scored at once
    assert _one_error(at) == ("Computing this point live failed with an unexpected RuntimeError; the details are "
                              "in the server's log.")
    at.slider(key="proj_frac").set_value(0.5).run()  # a scored point: the page recovers
    assert not at.exception and not at.error

