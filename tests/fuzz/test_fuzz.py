"""The fuzz campaign's CI slice: mutated workspaces and --config tokens never break the
promise of one located error with a documented exit code (see harness.judge).

A bounded budget (MLBUILD_FUZZ_BUDGET seconds, default 75) over fixed seeds starting at
MLBUILD_FUZZ_SEED (default 0); a failure names each broken seed and the command that
replays it. The release campaign is `python3 tests/fuzz/campaign.py --cases 5000`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from campaign import campaign  # noqa: E402
from harness import run_case  # noqa: E402
from mutations import COMMANDS, make_case  # noqa: E402


def test_the_unmutated_workspace_is_valid_and_builds(tmp_path):
    runs = run_case(make_case(None), tmp_path, tmp_path / "cache")
    assert [r.command for r in runs] == COMMANDS
    for run in runs:
        assert run.code == 0 and run.problem is None, f"{run.command}: exit {run.code}\n{run.output}"
    assert "Build OK: 9 targets" in runs[-1].output, runs[-1].output


def test_mutated_workspaces_get_located_user_errors():
    budget = float(os.environ.get("MLBUILD_FUZZ_BUDGET", "75"))
    first = int(os.environ.get("MLBUILD_FUZZ_SEED", "0"))
    outcomes, broken = campaign(cases=2000, first_seed=first, workers=2, timeout_s=30, budget_s=budget,
                                log=lambda _: None)
    assert len(outcomes) >= 50, f"only {len(outcomes)} cases ran within {budget:.0f} s"
    assert sum(1 for o in outcomes for r in o.runs if r.code == 3) > len(outcomes) // 2, "mutations too mild"
    report = "\n".join(f"seed {o.seed}: {'; '.join(o.problems)}  "
                       f"(replay: python3 tests/fuzz/campaign.py --replay {o.seed})" for o in broken)
    assert not broken, f"{len(broken)} of {len(outcomes)} cases broke the promise:\n{report}"
