"""Consistency checks for packaging/CI files (pyproject, environment.yml, Makefile, .ci/run)."""

import os
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse_req(req):
    """Return (canonical name, extras list, version-spec string) of a PEP 508 requirement."""
    req = req.split(";", 1)[0]
    m = _NAME_RE.match(req)
    assert m, f"unparsable requirement: {req!r}"
    extras = [e.strip() for e in (m.group(2) or "[]")[1:-1].split(",") if e.strip()]
    return _canon(m.group(1)), extras, m.group(3).strip()


@pytest.fixture(scope="module")
def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def env_yml():
    with open(ROOT / "environment.yml") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def makefile():
    return (ROOT / "Makefile").read_text()


@pytest.fixture(scope="module")
def ci_run():
    return (ROOT / ".ci" / "run").read_text()


def _pip_section(env):
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1
    return sections[0]


def _extra_packages(pyproject, extra, seen=None):
    """Package names an extra pulls in, expanding `gald[...]` self-references."""
    project = pyproject["project"]
    self_name = _canon(project["name"])
    seen = set() if seen is None else seen
    if extra in seen:
        return set()
    seen.add(extra)
    names = set()
    for req in project["optional-dependencies"][extra]:
        name, extras, _ = _parse_req(req)
        if name == self_name:
            for sub in extras:
                names |= _extra_packages(pyproject, sub, seen)
        else:
            names.add(name)
    return names


def _recipe(makefile, target):
    m = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n?)*)", makefile, re.M)
    assert m, f"no Makefile target {target!r}"
    return m.group(1)


def test_env_yml_pip_installs_editable_all(env_yml):
    assert "-e .[all]" in [str(x).strip() for x in _pip_section(env_yml)]


def test_env_yml_channels_only_conda_forge(env_yml):
    assert env_yml["channels"] == ["conda-forge"]


def test_env_yml_python_satisfies_requires_python(pyproject, env_yml):
    pins = [d for d in env_yml["dependencies"] if isinstance(d, str) and re.match(r"python\s*=", d)]
    assert len(pins) == 1
    pinned = tuple(int(x) for x in re.search(r"=+\s*([\d.]+)", pins[0]).group(1).split("."))
    specs = pyproject["project"]["requires-python"].split(",")
    ops = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
           "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
    for spec in specs:
        op, ver = re.match(r"\s*(>=|<=|==|!=|>|<)\s*([\d.]+)\s*$", spec).groups()
        bound = tuple(int(x) for x in ver.split("."))
        n = len(bound)
        assert ops[op](pinned[:n], bound), f"python={pins[0]} violates {spec}"


def test_all_extra_covers_every_other_extra(pyproject):
    extras = pyproject["project"]["optional-dependencies"]
    covered = _extra_packages(pyproject, "all")
    for name in extras:
        if name != "all":
            missing = _extra_packages(pyproject, name) - covered
            assert not missing, f"extra 'all' misses {sorted(missing)} from extra {name!r}"


def test_core_deps_have_unbounded_torch_and_torchvision(pyproject):
    deps = {name: spec for name, _, spec in map(_parse_req, pyproject["project"]["dependencies"])}
    for pkg in ("torch", "torchvision"):
        assert pkg in deps
        assert "<" not in deps[pkg] and "~=" not in deps[pkg] and "==" not in deps[pkg]


def test_makefile_has_train_and_test_targets(makefile):
    for target in ("train", "test"):
        assert re.search(rf"^{target}\s*:", makefile, re.M)


def test_makefile_test_recipe_reports_durations(makefile):
    assert "--durations=25" in _recipe(makefile, "test")


def test_ci_run_calls_make_test(ci_run):
    code = [ln.split("#", 1)[0] for ln in ci_run.splitlines()]
    assert any(re.search(r"(^|[\s;&|(])make\s+test(\s|$|;|\|)", ln) for ln in code)


def test_ci_run_is_executable():
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
