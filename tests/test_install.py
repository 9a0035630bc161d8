"""scripts/install.sh: the Python checked first, torch pinned (PyPI or an index URL) and kept through the install.

pip is replaced by a recorder on PATH (these tests install nothing); the torch check at the end runs for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import REPO


@pytest.fixture
def copy_of_repo(tmp_path):
    """The script and pyproject.toml in a directory of their own, so a run can never make ./.venv in the checkout."""
    (tmp_path / "repo" / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "install.sh", tmp_path / "repo" / "scripts" / "install.sh")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "repo" / "pyproject.toml")
    return tmp_path / "repo"


def fake_python(bin_dir: Path, log: Path) -> None:
    """`python -m pip ...` is written to the log, with the contents of any constraints file; all else is real."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "python"
    script.write_text(
        "#!/usr/bin/env bash\n"
        "if [[ $1 == -m && $2 == pip ]]; then\n"
        "    shift 2\n"
        f'    echo "pip $*" >>"{log}"\n'
        "    for ((i = 1; i < $#; i++)); do\n"
        f'        [[ ${{!i}} == -c ]] && j=$((i + 1)) && echo "constraints: $(cat "${{!j}}")" >>"{log}"\n'
        "    done\n"
        "    exit 0\n"
        "fi\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    script.chmod(0o755)


def run_install(repo: Path, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    log = tmp_path / "pip.log"
    log.unlink(missing_ok=True)
    fake_python(tmp_path / "bin", log)
    environment = {key: value for key, value in os.environ.items() if key not in ("TORCH_VERSION", "TORCH_INDEX_URL")}
    environment.update(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", VIRTUAL_ENV=str(tmp_path / "env"), **env)
    result = subprocess.run(
        ["bash", str(repo / "scripts" / "install.sh")], capture_output=True, text=True, env=environment, timeout=120
    )
    return result, log.read_text().splitlines() if log.exists() else []


BUILD = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"  # this environment's torch


def test_torch_is_pinned_first_and_held_by_a_constraint_through_the_project_install(copy_of_repo, tmp_path):
    result, pip = run_install(copy_of_repo, tmp_path)
    assert pip[:2] == ["pip install --quiet --upgrade pip", "pip install --quiet torch==2.13.0"]
    assert pip[2].startswith("pip install --quiet -c ") and pip[2].endswith(f" -e {copy_of_repo}[test]")
    assert pip[3:] == ["constraints: torch==2.13.0"]
    # The recorder installed nothing: the check at the end passes where this environment has 2.13.0 (as the suite's
    # own does), and names the torch found where it has another one (the floors' environment).
    if torch.__version__.split("+")[0] == "2.13.0":
        assert result.returncode == 0, result.stderr
        assert f"install.sh: torch {torch.__version__} ({BUILD})" in result.stdout
    else:
        assert result.returncode == 1
        assert (
            f"install.sh: torch {torch.__version__} ({BUILD}) is installed, not the 2.13.0 asked for" in result.stderr
        )


def test_a_chosen_build_comes_from_its_index_and_a_torch_that_is_not_it_stops_the_install(copy_of_repo, tmp_path):
    url = "https://download.pytorch.org/whl/cu118"
    result, pip = run_install(copy_of_repo, tmp_path, TORCH_VERSION="2.7.1+cu118", TORCH_INDEX_URL=url)
    assert pip[1] == f"pip install --quiet torch==2.7.1+cu118 --index-url {url}"
    assert pip[2].endswith(f"-e {copy_of_repo}[test]")
    assert pip[3] == "constraints: torch==2.7.1+cu118"
    # This environment's own torch is still there: the install says so and fails.
    assert result.returncode == 1
    assert f"install.sh: torch {torch.__version__} ({BUILD}) is installed, not the 2.7.1+cu118 asked for" in (
        result.stderr
    )
    # Asked for the torch it has, by its release alone (no +label), it passes and names the build.
    result, pip = run_install(copy_of_repo, tmp_path, TORCH_VERSION=torch.__version__.split("+")[0])
    assert result.returncode == 0, result.stderr
    assert f"install.sh: torch {torch.__version__} ({BUILD}); Python {sys.version.split()[0]}" in result.stdout


def test_a_python_older_than_requires_python_stops_before_anything_is_made(copy_of_repo, tmp_path):
    old = sorted(
        Path(os.popen("pyenv root 2>/dev/null").read().strip() or "/nonexistent").glob("versions/3.9*/bin/python3.9")
    )
    if not old:
        pytest.skip("no Python 3.9 here (pyenv install 3.9)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(old[-1])
    environment = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    environment["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    result = subprocess.run(
        ["bash", str(copy_of_repo / "scripts" / "install.sh")], capture_output=True, text=True, env=environment
    )
    assert result.returncode == 1
    assert "install.sh: weibolabel needs Python >= 3.10; python3 is 3.9." in result.stderr
    assert "PYTHON=python3.10 bash scripts/install.sh" in result.stderr
    assert not (copy_of_repo / ".venv").exists()
