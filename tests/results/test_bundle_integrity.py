"""A truncated file of a precomputed bundle gives one clear error naming the file and the regenerating command."""
import json
import shutil
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.core.errors import CorruptBundleError
from explorer.results.bundle import Bundle
from explorer.results.findings import findings

ROOT = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = ROOT / "cache" / "families" / "demo"
FILES = sorted(p.name for p in DEMO_BUNDLE.iterdir())
COMMAND = json.loads((DEMO_BUNDLE / "manifest.json").read_text())["command"]  # the one that wrote the bundle
REPORT_READS = {"manifest.json", "scores.json", "projection.parquet", "update_mso.parquet", "activation_mso.parquet",
                "refusal_direction.parquet", "probe.parquet"}


@pytest.fixture
def demo_copy(tmp_path, monkeypatch) -> Path:
    """The committed demo bundle in a private cache, and a family file that names it."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(cache))
    shutil.copytree(DEMO_BUNDLE, cache / "families" / "demo")
    family = tmp_path / "demo.toml"
    family.write_text('name = "demo"\nbase = "b"\naligned = "a"\n[finetuned]\nuseful = "u"\n')
    return family


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _read_everything() -> None:
    bundle = Bundle.load("demo")
    for table in sorted(p.stem for p in bundle.folder.glob("*.parquet")):
        bundle.table(table)
    findings(bundle)


@pytest.mark.parametrize("name", FILES)
def test_a_truncated_bundle_file_is_named_with_the_command_that_regenerates_it(demo_copy, capsys, name):
    path = demo_copy.parent / "cache" / "families" / "demo" / name
    _truncate(path)
    with pytest.raises(CorruptBundleError) as caught:
        _read_everything()
    message = str(caught.value)
    assert message.startswith(f"{path} cannot be read: it is truncated or corrupt (")
    # A damaged manifest cannot say which command made the bundle: the message gives the general one.
    expected = "python -m explorer precompute FAMILY.toml" if name == "manifest.json" else COMMAND
    assert f"regenerate the results with `{expected}" in message and "\n" not in message

    if name in REPORT_READS:
        assert main(["report", str(demo_copy), "--json"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith(f"error: {path} cannot be read"), err


def test_a_bundle_file_that_is_valid_json_of_the_wrong_shape_is_reported(demo_copy):
    (demo_copy.parent / "cache" / "families" / "demo" / "scores.json").write_text("[1, 2]")
    with pytest.raises(CorruptBundleError, match="scores.json cannot be read: it holds a JSON list, not an object"):
        Bundle.load("demo")
