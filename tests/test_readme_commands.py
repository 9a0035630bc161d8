"""The READMEs' shell commands: every script, module and config they name exists, every job option they pass is one
the job accepts, inline Python compiles; README.zh-CN.md gives only commands the English README gives, verbatim."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from functools import cache

import pytest

from helpers import REPO
from helpers.jobs import job_env

READMES = ["README.md", "README.zh-CN.md"]


def shell_commands(markdown: str) -> list[list[str]]:
    """The commands of the ```bash blocks as shell words, comments dropped; a line continued with a backslash or
    inside an open quote joins the next one."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, re.M | re.S):
        pending = ""
        for line in block.splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\"):
                pending = pending[:-1]
                continue
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:  # an open quote: a multi-line `python -c "..."`
                continue
            pending = ""
            if words:
                commands.append(words)
        assert not pending, f"unterminated command: {pending!r}"
    return commands


@cache
def job_options(script: str) -> frozenset[str]:
    """The options a job's --help lists (the jobs answer --help before importing torch)."""
    result = subprocess.run(
        [sys.executable, script, "--help"], cwd=REPO, env=job_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return frozenset(re.findall(r"(?<![\w-])--[a-z][\w-]*", result.stdout))


def check_command(words: list[str]) -> None:
    """Everything a command names in the repository exists, and a job is given only options it has."""
    for i, word in enumerate(words):
        word = word.removeprefix("jid=$(")
        if re.fullmatch(r"(scripts|slurm|bench|jobs)/[\w./-]+\.(sh|py)", word):
            assert (REPO / word).is_file(), word
        if word == "-m" and i + 1 < len(words):
            assert importlib.util.find_spec(words[i + 1]) is not None, words[i + 1]
        if word == "-c" and words[0] in ("python", "python3"):
            compile(words[i + 1], "<README python -c>", "exec")
        if word == "--config" and words[i + 1].startswith("configs/"):
            assert (REPO / words[i + 1]).is_file(), words[i + 1]
    jobs = [i for i, word in enumerate(words) if re.fullmatch(r"jobs/\w+\.py", word)]
    if jobs:
        given = {word.split("=", 1)[0].rstrip(")") for word in words[jobs[0] + 1 :] if word.startswith("--")}
        unknown = sorted(given - job_options(words[jobs[0]]))
        assert not unknown, f"{words[jobs[0]]} has no option {unknown}: {shlex.join(words)}"


@pytest.mark.parametrize("readme", READMES)
def test_readme_commands_name_what_exists_and_pass_options_the_jobs_have(readme):
    commands = shell_commands((REPO / readme).read_text(encoding="utf-8"))
    assert len(commands) >= 10
    for words in commands:
        check_command(words)


def test_chinese_readme_gives_the_english_commands_verbatim_and_is_linked_from_the_top():
    english = {shlex.join(words) for words in shell_commands((REPO / "README.md").read_text(encoding="utf-8"))}
    chinese = [shlex.join(words) for words in shell_commands((REPO / "README.zh-CN.md").read_text(encoding="utf-8"))]
    assert [command for command in chinese if command not in english] == []
    for needed in ("bash scripts/demo.sh", "jobs/train.py", "jobs/label_corpus.py", "jobs/analyze_labels.py", "sbatch"):
        assert any(needed in command for command in chinese), needed
    head = (REPO / "README.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert "(README.zh-CN.md)" in head


def test_shell_commands_join_continuations_and_open_quotes():
    markdown = '```bash\na --x 1 \\\n    --y 2   # note\npython -c "import os\nprint(os.sep)"\n# only a comment\n```\n'
    assert shell_commands(markdown) == [["a", "--x", "1", "--y", "2"], ["python", "-c", "import os\nprint(os.sep)"]]
