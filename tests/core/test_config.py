"""Where the cache lives: EXPLORER_CACHE_DIR, else a checkout's cache/, else the user's cache folder."""
from pathlib import Path

from explorer.core import config


def test_cache_dir_of_a_checkout_an_installed_package_and_an_empty_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORER_CACHE_DIR", str(tmp_path / "mine"))
    assert config.Settings().cache_dir == tmp_path / "mine"
    for unset in ("", "   "):  # empty or blank counts as unset, never a folder relative to the current one
        monkeypatch.setenv("EXPLORER_CACHE_DIR", unset)
        assert config.Settings().cache_dir == config.PROJECT_ROOT / "cache"
    installed = tmp_path / "site-packages"
    installed.mkdir()
    monkeypatch.setattr(config, "PROJECT_ROOT", installed)  # no app.py beside the package
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.Settings().cache_dir == tmp_path / "xdg" / "subspace-explorer"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert config.Settings().cache_dir == Path.home() / ".cache" / "subspace-explorer"
