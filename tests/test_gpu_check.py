"""The prepared GPU check runs every step to the end: dry-run on the CPU with tiny shapes, since the GPU run
itself gets one try."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_step_of_the_gpu_check_runs(smollm_tokenizer_dir, tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tokenizer",
                          str(smollm_tokenizer_dir), "--shape", "tiny", "--device", "cpu", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    steps = json.loads(out.read_text())["steps"]
    assert list(steps) == ["build_family", "spectra_alignment", "mso_alignment_useful",
                           "projection_energies_useful_keep_bases", "live_point_quick",
                           "activations_aligned_128_prompts", "spot_check_candidate"]
    assert not [name for name, step in steps.items() if "error" in step]
    assert steps["activations_aligned_128_prompts"]["shape"][0] == 64
    assert "useful" in steps["spot_check_candidate"]["verdict"]
