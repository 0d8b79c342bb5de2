"""Every kind of bad input gives a specific error naming the problem, and the CLI one line with exit code 2."""
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from explorer.checkpoints.family import load_family
from explorer.cli import main
from explorer.core.errors import (
    CheckpointError,
    FamilyError,
    NonFiniteError,
    ParameterError,
)
from explorer.weights.projection import projection_stats
from explorer.weights.spectra import spectra


def _copy(family_toml, tmp_path):
    target = tmp_path / "fam"
    shutil.copytree(family_toml.parent, target)
    return target


def _edit(folder, edit):
    path = folder / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


def test_mismatched_shapes_name_the_tensor_and_both_shapes(llama_family, tmp_path):
    root = _copy(llama_family, tmp_path)
    _edit(root / "useful", lambda s: s.update({"model.layers.1.mlp.up_proj.weight": torch.zeros(40, 32)}))
    with pytest.raises(FamilyError, match=r"model.layers.1.mlp.up_proj.weight differs in shape: base \(48, 32\), "
                                          r"useful \(40, 32\)"):
        load_family(root / "family.toml").tensor_names


def test_missing_tensor_is_named(llama_family, tmp_path):
    root = _copy(llama_family, tmp_path)
    _edit(root / "harmful", lambda s: s.pop("model.norm.weight"))
    with pytest.raises(FamilyError, match="model.norm.weight is in base but not in harmful"):
        load_family(root / "family.toml").tensor_names


def test_missing_path(llama_family, tmp_path):
    root = _copy(llama_family, tmp_path)
    shutil.rmtree(root / "contaminated")
    with pytest.raises(FamilyError, match="member 'contaminated'.*contaminated does not exist"):
        load_family(root / "family.toml")


def test_corrupt_safetensors(llama_family, tmp_path):
    root = _copy(llama_family, tmp_path)
    (root / "aligned" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00not a header")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_family(root / "family.toml").tensor_names


def test_nan_weights_name_the_tensor(llama_family, tmp_path):
    root = _copy(llama_family, tmp_path)

    def poison(state):
        state["model.layers.0.self_attn.o_proj.weight"][3, 3] = float("nan")

    _edit(root / "useful", poison)
    family = load_family(root / "family.toml")
    with pytest.raises(NonFiniteError, match="useful: tensor model.layers.0.self_attn.o_proj.weight contains NaN"):
        spectra(family, "useful")


def test_unknown_member_and_malformed_toml(llama_family, tmp_path):
    family = load_family(llama_family)
    with pytest.raises(FamilyError, match="no update 'helpful'"):
        spectra(family, "helpful")
    with pytest.raises(ParameterError, match="'base' is not a fine-tuned member"):
        projection_stats(family, "base")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nbase = \n')
    with pytest.raises(FamilyError, match="not valid TOML"):
        load_family(bad)
    bad.write_text('name = "x"\nbase = "a"\n')
    with pytest.raises(FamilyError, match="missing key"):
        load_family(bad)


def test_torch_bin_checkpoints_load_with_weights_only(llama_family, tmp_path):
    root = _copy(llama_family, tmp_path)
    state = load_file(root / "useful" / "model.safetensors")
    (root / "useful" / "model.safetensors").unlink()
    torch.save(state, root / "useful" / "pytorch_model.bin")
    family = load_family(root / "family.toml")
    assert family.store("useful").__class__.__name__ == "TorchBinStore"
    assert spectra(family, "useful")["singular_value"].gt(0).any()
    # A pickle that runs code is refused by weights_only=True.
    torch.save({"x": torch.zeros(2), "evil": print}, root / "useful" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_family(root / "family.toml").store("useful")


@pytest.mark.parametrize("argv,message", [
    (["project", "{fam}", "--variant", "useful", "--method", "same", "--subspace", "alignment", "--frac", "1.5"],
     "rank fraction 1.5 is outside (0, 1)"),
    (["project", "{fam}", "--variant", "useful", "--method", "same", "--subspace", "alignment", "--frac", "0"],
     "rank fraction 0.0 is outside (0, 1)"),
    (["mso", "{fam}", "--a", "useful", "--b", "harmful", "--energy", "0", "--out", "{out}"],
     "energy fraction 0.0 is outside (0, 1]"),
    (["mso", "{fam}", "--a", "useful", "--b", "nobody", "--out", "{out}"], "no update 'nobody'"),
    (["spectra", "{missing}", "--update", "alignment", "--out", "{out}"], "family file not found"),
])
def test_cli_bad_input_is_one_line_and_exit_2(llama_family, tmp_path, capsys, argv, message):
    fill = {"fam": str(llama_family), "out": str(tmp_path / "o.csv"), "missing": str(tmp_path / "nope.toml")}
    assert main([a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_cli_process_prints_no_traceback(llama_family, tmp_path):
    (tmp_path / "broken.toml").write_text("name = [\n")
    proc = subprocess.run([sys.executable, "-m", "explorer", "sweep", str(tmp_path / "broken.toml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "is not valid TOML" in proc.stderr
