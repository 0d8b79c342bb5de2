"""A family's results computed stage by stage: each stage writes only its own tables into the bundle, a stage the
bundle holds is never computed again, `precompute` computes only what the bundle lacks, a bundle's settings and
checkpoints are never mixed with others', and every stage has a time estimate."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig

from builders import TINY, random_family
from explorer.checkpoints.family import load_family
from explorer.core.errors import ParameterError
from explorer.results.bundle import Bundle
from explorer.results.estimates import duration_text, stage_seconds
from explorer.results.findings import READS, UNMEASURED, findings
from explorer.results.precompute import precompute
from explorer.results.stages import Settings, Stage, grid_stages, is_done, planned, run_stage

SMOKE = Settings("smoke")
# The tables each weight-space stage writes, and nothing else.
TABLES = {"spectra": {"spectra"}, "energy": {"energy_curves"}, "update_mso": {"update_mso"}}


class FirstStageDone(Exception):
    pass


def stop_after_the_first_stage(fraction: float, text: str) -> None:
    """precompute's progress callback: stop it once its first stage is in the bundle (precompute's own progress
    says "stages"; the stages' inner progress says other things)."""
    if text == "stages" and fraction > 0:
        raise FirstStageDone


def _manifest_file(name: str = "fresh"):
    return Bundle.load(name).folder / "manifest.json"


def _stage_keys(name: str = "fresh") -> list[str]:
    return [entry["stage"] for entry in Bundle.load(name).manifest["stages"]]


def test_each_stage_writes_only_its_tables_and_a_done_stage_is_not_computed_again(fresh_family, cache):
    """Into an empty cache, spectra, energy and update_mso one after the other: after each, the bundle holds the
    tables of the stages done so far and no other, `is_done` is true for those stages only (of every stage a whole
    precompute plans), and the manifest lists them in order. Running a done stage again computes nothing and leaves
    the bundle's files as they were."""
    family = load_family(fresh_family)
    every = planned(family.members, (0.5,), ["contaminated"])
    assert not any(is_done(stage, None) for stage in every)
    done: list[str] = []
    for kind in ("spectra", "energy", "update_mso"):
        assert run_stage(family, Stage(kind), SMOKE, "test") is True
        done.append(kind)
        bundle = Bundle.load("fresh")
        assert set(bundle.tables()) == set().union(*(TABLES[k] for k in done)), kind
        assert [s.key for s in every if is_done(s, bundle)] == done
        assert _stage_keys() == done
        assert bundle.scores == {}

    manifest = _manifest_file()
    before = (manifest.read_text(), manifest.stat().st_mtime_ns, manifest.stat().st_ino)
    for kind in ("spectra", "energy", "update_mso"):
        assert run_stage(family, Stage(kind), SMOKE, "test") is False
    assert _manifest_file() == manifest
    assert (manifest.read_text(), manifest.stat().st_mtime_ns, manifest.stat().st_ino) == before
    assert _stage_keys() == done


def test_precompute_after_the_app_computes_only_the_missing_stages(fresh_family, cache):
    """The app computed the spectra; a precompute of the whole family then computes every other stage but not the
    spectra again (the manifest lists spectra once, with the app's record, and the table is the app's), and ends
    with every planned stage in the bundle and all six findings measured or explained."""
    family = load_family(fresh_family)
    assert run_stage(family, Stage("spectra"), SMOKE, "the app") is True
    app_record = Bundle.load("fresh").manifest["stages"][0]
    app_spectra = Bundle.load("fresh").table("spectra")

    precompute(fresh_family, profile="smoke", grid_fracs=(0.5,), grid_variants=["contaminated"], activations=False)

    bundle = Bundle.load("fresh")
    stages = planned(family.members, (0.5,), ["contaminated"], activations=False)
    keys = _stage_keys()
    assert keys.count("spectra") == 1
    assert bundle.manifest["stages"][0] == app_record
    assert sorted(keys) == sorted(s.key for s in stages)  # every other stage computed exactly once
    assert all(is_done(s, bundle) for s in stages)
    assert bundle.table("spectra").equals(app_spectra)
    assert set(bundle.scores) == set(family.members)
    assert bundle.manifest["profile"] == bundle.manifest["grid_profile"] == "smoke"
    assert bundle.manifest["grid"]["points"] == len(bundle.table("projection")) == 6
    assert [f.number for f in findings(bundle)] == [1, 2, 3, 4, 5, 6]


def test_a_partial_bundle_has_six_findings_and_those_it_cannot_measure_say_so(fresh_family, cache):
    """With only the spectra and the energies computed, the findings are still six: the energies' finding is
    measured, and each finding that reads a table the bundle lacks is "not measurable", saying that it is not
    measured (those that read the grid or the update overlaps: "Not measured yet", naming what they read)."""
    family = load_family(fresh_family)
    for kind in ("spectra", "energy"):
        run_stage(family, Stage(kind), SMOKE, "test")
    measured = findings(Bundle.load("fresh"))
    assert [f.number for f in measured] == [1, 2, 3, 4, 5, 6]
    by_number = {f.number: f for f in measured}
    assert by_number[1].verdict != UNMEASURED
    for number in (2, 3, 4, 5, 6):
        assert by_number[number].verdict == UNMEASURED, number
        assert by_number[number].measured.startswith("Not measured"), number
    for number in (2, 3, 4):
        assert by_number[number].measured.startswith("Not measured yet"), number
        assert READS[number] in by_number[number].measured


def test_stages_with_other_settings_are_refused_and_precompute_starts_afresh(fresh_family, cache):
    """Once a member's scores (profile smoke) are in the bundle, a scores stage with the quick profile is refused,
    naming both profiles, and writes nothing; a precompute with the quick profile starts the bundle afresh: its first
    stage leaves a bundle of profile quick holding that stage alone (the smoke scores are gone)."""
    family = load_family(fresh_family)
    run_stage(family, Stage("scores", "base"), SMOKE, "test")
    before = _manifest_file().read_text()
    with pytest.raises(ParameterError, match="profile smoke, not quick"):
        run_stage(family, Stage("scores", "aligned"), Settings("quick"), "test")
    assert _manifest_file().read_text() == before

    with pytest.raises(FirstStageDone):  # the rest of a quick precompute would take minutes, and proves nothing more
        precompute(fresh_family, profile="quick", grid_fracs=(0.5,), grid_variants=["contaminated"],
                   activations=False, callback=stop_after_the_first_stage)
    bundle = Bundle.load("fresh")
    assert bundle.manifest["profile"] == "quick"
    assert bundle.scores == {}
    assert _stage_keys() == ["spectra"]
    assert set(bundle.tables()) == {"spectra"}


def test_precompute_starts_a_damaged_bundle_afresh(fresh_family, cache):
    """A bundle whose scores.json is damaged cannot be filled in: precompute computes it afresh (its first stage
    leaves a bundle holding that stage alone) instead of failing on the damaged file."""
    family = load_family(fresh_family)
    run_stage(family, Stage("spectra"), SMOKE, "test")
    (Bundle.load("fresh").folder / "scores.json").write_text("{")
    with pytest.raises(FirstStageDone):
        precompute(fresh_family, profile="smoke", grid_fracs=(0.5,), grid_variants=["contaminated"],
                   activations=False, callback=stop_after_the_first_stage)
    bundle = Bundle.load("fresh")
    assert bundle.scores == {} and _stage_keys() == ["spectra"]


def test_changed_checkpoints_refuse_new_stages(fresh_family, cache, tmp_path):
    """A bundle computed from one checkpoint takes no stage computed from another: once one member's weights are
    rewritten, a stage is refused with a message about its fingerprint, and the bundle is unchanged."""
    copy = tmp_path / "family"
    shutil.copytree(fresh_family.parent, copy)
    family = load_family(copy / "family.toml")
    run_stage(family, Stage("spectra"), SMOKE, "test")
    before = _manifest_file().read_text()

    weights = copy / "useful" / "model.safetensors"
    state = load_file(weights)
    name = next(k for k, v in state.items() if v.ndim == 2)
    state[name] = state[name] + 0.01 * torch.ones_like(state[name])
    save_file(state, weights)

    changed = load_family(copy / "family.toml")
    with pytest.raises(ParameterError, match="fingerprint") as error:
        run_stage(changed, Stage("energy"), SMOKE, "test")
    assert "'useful'" in str(error.value)
    assert _manifest_file().read_text() == before
    assert not Bundle.load("fresh").has("energy_curves")


def test_stage_json_round_trip_and_unknown_kinds(fresh_family):
    """A stage survives JSON (the job's spec and status files), a grid block with its points included; a stage of
    an unknown kind is refused."""
    family = load_family(fresh_family)
    block = grid_stages(["contaminated"], (0.25, 0.5))[0]
    assert len(block.points) == 2
    for stage in [*planned(family.members, (0.5,), ["contaminated"]), block]:
        data = json.loads(json.dumps(stage.to_json()))
        again = Stage.from_json(data)
        assert again == stage and again.key == stage.key and again.title == stage.title
    assert Stage.from_json(json.loads(json.dumps(block.to_json()))).points == \
        (("contaminated", "same", "alignment", 0.25), ("contaminated", "same", "alignment", 0.5))
    with pytest.raises(ParameterError, match="unknown stage 'nope'"):
        Stage.from_json({"kind": "nope", "member": None, "points": []})
    with pytest.raises(ParameterError, match="unknown stage"):
        Stage.from_json({})


def test_estimates_grow_with_the_work(fresh_family, llama_family, tmp_path):
    """Every planned stage has a positive estimate; the activations of a family with a larger hidden size (all else
    equal) take longer, as does a grid block of more points; durations read as rounded text."""
    family = load_family(fresh_family)
    for stage in planned(family.members, (0.5,), ["contaminated"]):
        assert stage_seconds(family, stage, SMOKE, "cpu") > 0, stage.key

    small = load_family(llama_family)
    big = load_family(random_family(tmp_path, LlamaConfig(**{**TINY, "hidden_size": 128, "intermediate_size": 192}),
                                    name="big"))
    activations = Stage("activations", "aligned")
    assert stage_seconds(big, activations, SMOKE, "cpu") > stage_seconds(small, activations, SMOKE, "cpu")
    one, two = grid_stages(["contaminated"], (0.5,))[0], grid_stages(["contaminated"], (0.25, 0.5))[0]
    assert stage_seconds(small, two, SMOKE, "cpu") > stage_seconds(small, one, SMOKE, "cpu")
    assert stage_seconds(small, Stage("scores", "aligned"), Settings("full"), "cpu") > \
        stage_seconds(small, Stage("scores", "aligned"), SMOKE, "cpu")

    assert duration_text(1) == "about 5 s"
    assert duration_text(5) == "about 5 s"
    assert duration_text(42) == "about 40 s"
    assert duration_text(180) == "about 3 min"
    assert duration_text(9000) == "about 2.5 h"
