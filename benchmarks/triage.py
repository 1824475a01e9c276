"""Run every drill scenario through its runbook and print accuracy per runbook and every forbidden outcome.

    python benchmarks/triage.py                              # every built-in scenario of every runbook
    python benchmarks/triage.py sms_delivery_failure         # one runbook's (or: a scenario name)
    python benchmarks/triage.py --dir variants/              # every <runbook>/<name>.yaml under a folder
    python benchmarks/triage.py --runbook email_provider_failure --scenario-file my.yaml

Each scenario runs as a dry run of the runbook's own notebook cells in this process (`runbooklib.triage`),
against its sandbox on loopback. A forbidden outcome is an all-clear where the scenario has a cause, or a
mitigation proposed that cannot fix the scenario's cause. Exits 1 when any scenario is not named right.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from runbooklib import catalog
from runbooklib.triage import Triage, every_scenario, triage


def _cases(args: argparse.Namespace) -> list[tuple[str, str]]:
    if args.scenario_file:
        if not args.runbook:
            raise SystemExit("--scenario-file needs --runbook")
        return [(args.runbook, str(Path(args.scenario_file).resolve()))]
    if args.dir:
        slugs = set(catalog.slugs())
        found = sorted(p for p in Path(args.dir).rglob("*.yaml") if p.parent.name in slugs)
        return [(p.parent.name, str(p.resolve())) for p in found]
    wanted = set(args.names)
    return [(s, n) for s, n in every_scenario() if not wanted or s in wanted or n in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="runbooks or scenario names (default: all)")
    parser.add_argument("--dir", help="a folder of <runbook>/<scenario>.yaml files")
    parser.add_argument("--runbook", help="the runbook of --scenario-file")
    parser.add_argument("--scenario-file", help="one scenario file")
    args = parser.parse_args(argv)
    results: list[Triage] = []
    started = time.monotonic()
    for slug, scenario in _cases(args):
        result = triage(slug, scenario)
        results.append(result)
        mark = "ok " if result.correct else "NO "
        also = f" (also: {', '.join(result.others)})" if result.others else ""
        print(f"{mark} {slug:26} {result.scenario:32} expected {result.expect:26} named {result.cause}{also} · "
              f"proposed {', '.join(result.proposed) or 'nothing'} · {result.seconds:.1f}s", flush=True)
        for problem in [*result.forbidden, *result.missing, *([result.crash] if result.crash else [])]:
            print(f"      ! {problem}", flush=True)
    by_runbook: dict[str, list[Triage]] = defaultdict(list)
    for result in results:
        by_runbook[result.runbook].append(result)
    print("\n| runbook | scenarios | named right | accuracy | all-clears during an incident | harmful mitigations |")
    print("| --- | --- | --- | --- | --- | --- |")
    for slug, rows in by_runbook.items():
        right = sum(r.correct for r in rows)
        clears = sum(any(f.startswith("all-clear") for f in r.forbidden) for r in rows)
        harmful = sum(sum(f.startswith("harmful") for f in r.forbidden) for r in rows)
        print(f"| {slug} | {len(rows)} | {right} | {right / len(rows):.0%} | {clears} | {harmful} |")
    right = sum(r.correct for r in results)
    forbidden = sum(len(r.forbidden) for r in results)
    print(f"\n{right} of {len(results)} scenarios named right ({right / max(len(results), 1):.0%}); "
          f"{forbidden} forbidden outcome(s); {time.monotonic() - started:.0f}s")
    return 0 if right == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
