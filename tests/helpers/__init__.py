"""What the tests share, imported as `helpers` (pyproject's pytest `pythonpath` puts tests/ on sys.path; no test
module imports another):

- `helpers.jobs`: running the jobs as a user would (a subprocess with the job environment, `accelerate launch` for
  several processes) or in the test process, and their usual arguments;
- `helpers.data`: the label names and small labeled tables made on the fly;
- `helpers.outputs`: files shaped like the jobs' outputs, and the comparison of two training runs;
- `helpers/scripts/`: programs the tests run by path (wrappers that patch a job from outside, then run it).

REPO is the repository root."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
