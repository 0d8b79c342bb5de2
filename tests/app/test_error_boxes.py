"""Under AppTest: a damaged bundle, a live action that fails, an unsafe family name and a path outside the allowed
roots each show exactly one error box, and never an exception or a traceback."""
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


@pytest.mark.parametrize("damaged", ["scores.json", "table"])
@pytest.mark.parametrize("page", PAGE_TABLES)
def test_a_damaged_bundle_shows_one_error_on_every_page(tiny_demo, tmp_path, page, damaged):
    # A bundle of its own per case: Streamlit caches tables by folder and manifest time across runs.
    name = f"damaged-{Path(page).stem.lower().replace('_', '-')}-{damaged.replace('.', '-')}"
    folder = settings().bundles_dir / name
    shutil.copytree(settings().bundles_dir / "tiny", folder)
    broken = folder / ("scores.json" if damaged == "scores.json" else PAGE_TABLES[page])
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    at = _run(page, _family_file(tmp_path, name, tiny_demo))
    message = _one_error(at)
    assert message.startswith(f"{broken} cannot be read: it is truncated or corrupt")
    assert "regenerate the results with `python -m explorer precompute" in message


@pytest.fixture
def tokenizer_broken(tiny_demo, tmp_path) -> Path:
    """The tiny family with its aligned model's tokenizer.json cut short: loading it raises a JSONDecodeError."""
    root = tmp_path / "family"
    shutil.copytree(tiny_demo.parent.parent, root, ignore=shutil.ignore_patterns("b"))
    (root / "models" / "aligned" / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    return root / "families" / "tiny.toml"


def test_a_failing_live_action_shows_one_error_naming_it(tokenizer_broken, caplog):
    at = _run("pages/2_Projection_lab.py", tokenizer_broken, proj_frac=0.27, proj_auto=False)
    assert not at.exception and not at.error
    with caplog.at_level(logging.ERROR, logger="explorer.app"):
        at.button(key="compute_live").click().run()
    message = _one_error(at)
    assert message == ("Computing this point live failed with an unexpected JSONDecodeError; the details are in the "
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


def test_a_live_point_scored_as_the_control_moves_fails_as_one_error(tokenizer_broken):
    at = _run("pages/2_Projection_lab.py", tokenizer_broken, proj_frac=0.27)  # off the grid: scored at once
    assert _one_error(at) == ("Computing this point live failed with an unexpected JSONDecodeError; the details are "
                              "in the server's log.")
    at.slider(key="proj_frac").set_value(0.5).run()  # a scored point: the page recovers
    assert not at.exception and not at.error

