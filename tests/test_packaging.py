"""pyproject.toml (what `pip install .` asks for) and requirements*.txt (the pinned set `make` installs) agree:
the same packages, and every pin inside its declared range."""
from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pins(*files: str) -> dict[str, Requirement]:
    found = {}
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                requirement = Requirement(line)
                found[canonicalize_name(requirement.name)] = requirement
    return found


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(line for extra in project["optional-dependencies"].values() for line in extra)]
    return {canonicalize_name(Requirement(line).name): Requirement(line) for line in lines}


def disagreements(pinned: dict[str, Requirement], ranges: dict[str, Requirement]) -> list[str]:
    problems = [f"{name} is pinned in requirements but not declared in pyproject.toml" for name in pinned.keys() - ranges.keys()]
    problems += [f"{name} is declared in pyproject.toml but not pinned in requirements" for name in ranges.keys() - pinned.keys()]
    for name in pinned.keys() & ranges.keys():
        versions = [spec.version for spec in pinned[name].specifier if spec.operator == "=="]
        if len(versions) != 1:
            problems.append(f"{name} is not pinned to one version in requirements: {pinned[name]}")
        elif not ranges[name].specifier.contains(versions[0], prereleases=True):
            problems.append(f"{name}=={versions[0]} is outside pyproject.toml's {ranges[name]}")
        if pinned[name].extras != ranges[name].extras:
            problems.append(f"{name}: extras {sorted(pinned[name].extras)} against {sorted(ranges[name].extras)}")
    return problems


def test_requirements_and_pyproject_agree():
    problems = disagreements(pins("requirements.txt", "requirements-ray.txt"), declared())
    assert not problems, "\n".join(problems)


def test_a_pin_outside_its_range_or_missing_is_caught():
    ranges = {"torch": Requirement("torch>=2.4"), "numpy": Requirement("numpy>=1.26")}
    assert disagreements({"torch": Requirement("torch==2.13.0"), "numpy": Requirement("numpy==2.4.6")}, ranges) == []
    problems = disagreements({"torch": Requirement("torch==2.3.0"), "pandas": Requirement("pandas==3.1.1")}, ranges)
    assert any("torch==2.3.0 is outside" in p for p in problems)
    assert any("pandas is pinned" in p for p in problems) and any("numpy is declared" in p for p in problems)


def test_the_console_script_is_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["subspace-explorer"] == "explorer.cli:main"
