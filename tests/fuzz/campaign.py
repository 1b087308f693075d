"""The fuzz campaign, as one command (see tests/README.md):

    python3 tests/fuzz/campaign.py --cases 5000 --workers 2          # a release campaign
    python3 tests/fuzz/campaign.py --replay 1234 --keep /tmp/case     # one case, its workspace kept

Prints one line per broken case (seed, the failing command, why) and the totals; exits 1
when any case broke mlbuild's promise.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Pool  # noqa: E402
from mutations import make_case, write_case  # noqa: E402


def campaign(cases: int, first_seed: int, workers: int, timeout_s: float, budget_s: float | None, log=print):
    """Run cases first_seed.. until `cases` ran or `budget_s` passed; (outcomes, broken)."""
    with tempfile.TemporaryDirectory(prefix="mlbuild-fuzz-") as scratch:
        pool = Pool(workers, timeout_s, Path(scratch))
        deadline = time.monotonic() + budget_s if budget_s else None
        outcomes, broken = [], []
        try:
            for outcome in pool.run(range(first_seed, first_seed + cases), deadline):
                outcomes.append(outcome)
                if outcome.problems:
                    broken.append(outcome)
                    log(f"seed {outcome.seed}: " + "; ".join(outcome.problems))
        finally:
            pool.close()
    return outcomes, broken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--budget", type=float, default=None, help="stop starting cases after this many seconds")
    parser.add_argument("--replay", type=int, help="run one seed and print every command's output")
    parser.add_argument("--keep", type=Path, help="with --replay: write the case's workspace here")
    args = parser.parse_args()
    if args.replay is not None:
        case = make_case(args.replay)
        print(f"seed {args.replay}: tree/bytes edits {case.notes}, file system {case.special}, --config {case.configs}")
        if args.keep:
            print("workspace:", write_case(case, args.keep))
        outcomes, broken = campaign(1, args.replay, 1, args.timeout, None, log=lambda _: None)
        for run in outcomes[0].runs:
            print(f"$ mlbuild {' '.join(run.command)}  -> exit {run.code}  {run.problem or ''}\n{run.output}")
        if outcomes[0].crashed:
            print(outcomes[0].crashed)
        return 1 if broken else 0
    start = time.monotonic()
    outcomes, broken = campaign(args.cases, args.seed, args.workers, args.timeout, args.budget)
    runs = sum(len(o.runs) for o in outcomes)
    kinds = collections.Counter(re.sub(r" \(.*\)$", "", p.split(": ", 1)[-1]) for o in broken for p in o.problems)
    for kind, count in kinds.most_common():
        print(f"{count:5d}  {kind}")
    codes = collections.Counter(r.code for o in outcomes for r in o.runs)
    print(f"{len(outcomes)} cases, {runs} runs in {time.monotonic() - start:.0f} s; exit codes {dict(sorted(codes.items()))}; "
          f"{len(broken)} broken cases, {len(kinds)} distinct failures")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
