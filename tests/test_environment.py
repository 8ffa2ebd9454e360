"""The conda entry point: a valid environment.yml whose pip section pip accepts, the same
requirements as pyproject.toml, and the post-deploy script that installs the package itself."""

import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from helpers.workflow import copy_workflow
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
ENV = yaml.safe_load((ROOT / "environment.yml").read_text())
POST_DEPLOY = ROOT / "environment.post-deploy.sh"  # Snakemake's name for the env's script


def pip_section() -> list[str]:
    sections = [d["pip"] for d in ENV["dependencies"] if isinstance(d, dict)]
    assert len(sections) == 1 and sections[0], "one non-empty pip: section"
    return sections[0]


def pip_path_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])


def test_environment_yml_structure() -> None:
    assert set(ENV) == {"name", "channels", "dependencies"}
    assert ENV["name"] == "cromss" and ENV["channels"] == ["conda-forge"]
    conda = [d for d in ENV["dependencies"] if isinstance(d, str)]
    assert "pip" in conda and any(d.startswith("python=") for d in conda)
    assert all(isinstance(line, str) for line in pip_section())


def test_pip_section_holds_only_requirements_that_pip_accepts(tmp_path: Path) -> None:
    lines = pip_section()
    for line in lines:  # a requirement each, no options (`--no-deps -e .` is rejected by pip)
        Requirement(line)
    requirements = tmp_path / "requirements.txt"  # what conda hands to `pip install -r`
    requirements.write_text("\n".join(lines) + "\n")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                             "--no-deps", "-q", "-r", str(requirements)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_environment_yml_lists_the_pip_requirements() -> None:
    assert set(pip_section()) == pip_path_requirements()


def test_environment_yml_pins_the_python_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = next(d for d in ENV["dependencies"] if isinstance(d, str) and d.startswith("python="))
    series = python.split("=")[1]  # conda takes that series' newest release
    floor = project["requires-python"].removeprefix(">=")
    assert floor == series or floor.startswith(series + ".")


RULE_ENVIRONMENTS = """
import json, os, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings
checkout, workdir = Path(sys.argv[1]), Path(sys.argv[2])
with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(),
                            snakefile=checkout / "Snakefile", workdir=workdir)._workflow
    print(json.dumps({"source": os.environ.get("CROMSS_SOURCE"), "rules": {
        rule.name: (str((Path(str(rule.snakefile)).parent / rule.conda_env).resolve())
                    if rule.conda_env else None, rule.shellcmd is not None)
        for rule in workflow.rules}}))
"""


def test_every_job_gets_the_environment_and_the_post_deploy_script_the_checkout(
        tmp_path: Path) -> None:
    """The workflow as Snakemake parses it, run in another folder (``snakemake -s
    checkout/Snakefile -d run``): every rule that runs a command deploys environment.yml
    (--sdm conda), and CROMSS_SOURCE names the workflow's own checkout, not the run folder."""
    (tmp_path / "checkout").mkdir()
    checkout = copy_workflow(tmp_path / "checkout").resolve()
    run = tmp_path / "run"
    shutil.copytree(checkout / "config", run / "config")
    environ = {key: value for key, value in os.environ.items() if key != "CROMSS_SOURCE"}
    result = subprocess.run([sys.executable, "-c", RULE_ENVIRONMENTS, str(checkout), str(run)],
                            cwd=run, env=environ, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(parsed["source"]).resolve() == checkout
    commands = {name: env for name, (env, runs) in parsed["rules"].items() if runs}
    assert {"store", "pretrain", "transfer_runs", "transfer_table"} <= set(commands)
    assert set(commands.values()) == {str(checkout / "environment.yml")}


def test_post_deploy_script_installs_the_package_usable_from_any_directory(tmp_path: Path) -> None:
    """As Snakemake runs it: in the new env (here a venv on top of this one), from elsewhere."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True,
                   timeout=120)
    (purelib,) = env_dir.glob("lib/python*/site-packages")
    # the dependencies (and pip, setuptools) of this environment, as conda would have installed
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environ = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environ |= {"PATH": f"{env_dir / 'bin'}{os.pathsep}{environ['PATH']}",
                "CROMSS_SOURCE": str(ROOT), "PIP_NO_INDEX": "1"}
    result = subprocess.run(["bash", str(POST_DEPLOY)], cwd=elsewhere, env=environ,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"from {ROOT / 'cromss' / '__init__.py'}" in result.stdout
    version = subprocess.run([str(env_dir / "bin" / "cromss"), "--version"], cwd=elsewhere,
                             env=environ, capture_output=True, text=True, timeout=120)
    assert version.stdout.startswith("cromss ")


def test_post_deploy_script_needs_the_checkout() -> None:
    environ = {key: value for key, value in os.environ.items() if key != "CROMSS_SOURCE"}
    result = subprocess.run(["bash", str(POST_DEPLOY)], env=environ, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "CROMSS_SOURCE" in result.stderr
