"""--ray and its errors without a cluster, and that a run without --ray never imports Ray."""
import os
import socket
import subprocess
import sys
import time

import pytest

from explorer.cli import main


def test_a_plain_run_does_not_import_ray(llama_family, tmp_path):
    code = ("import sys; from explorer.cli import main; "
            f"assert main(['mso', {str(llama_family)!r}, '--a', 'useful', '--b', 'harmful', "
            f"'--out', {str(tmp_path / 'o.csv')!r}]) == 0; print('ray' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "EXPLORER_RAY"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_without_ray_installed_the_option_is_one_line(llama_family, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    assert main(["spectra", str(llama_family), "--update", "alignment", "--out", str(tmp_path / "s.csv"),
                 "--ray", "local"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --ray needs Ray, which is not installed: run `make ray` "
                                               "(pip install -r requirements-ray.txt)")


def test_an_address_where_nothing_listens_fails_at_once(llama_family, tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed: `make ray` (requirements-ray.txt) installs it")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once the socket closes
    start = time.perf_counter()
    assert main(["mso", str(llama_family), "--a", "useful", "--b", "harmful", "--out", str(tmp_path / "o.csv"),
                 "--ray", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: no Ray cluster answers at 127.0.0.1:{port}") and "\n" not in err
    assert time.perf_counter() - start < 30
