"""`python -m benchmarks [--case NAME ...] [--quick]`: run benchmark cases and write reports/bench.{json,md}."""

from __future__ import annotations

import argparse
import sys

from benchmarks.cases import CASES
from benchmarks.harness import failed, run_cases
from journey.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES], help="Run only these cases.")
    parser.add_argument("--quick", action="store_true", help="Smaller inputs and fewer repetitions (smoke run).")
    args = parser.parse_args()
    settings = get_settings()
    selected = [c for c in CASES if not args.case or c.name in args.case]
    results = run_cases(selected, settings.reports_dir, quick=args.quick)
    print((settings.reports_dir / "bench.md").read_text(encoding="utf-8"))
    print(f"report written to {settings.reports_dir / 'bench.md'} and {settings.reports_dir / 'bench.json'}")
    if broken := failed(results):
        print(f"benchmark cases failed: {', '.join(broken)} (see their rows and the log)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
