"""The README's reliability table, made from the fault matrix's own results.

    python -m tests.faults.report            # print the table from test-artifacts/fault-matrix/
    python -m tests.faults.report --readme   # and put it into README.md between its markers

Run the matrix first (`pytest tests/faults`); each case leaves one JSON file there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.faults.matrix import ALL, FAULTS

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- fault-matrix:begin -->", "<!-- fault-matrix:end -->"
SHORT = {"email_provider_failure": "email", "sms_delivery_failure": "sms", "whatsapp_delivery_failure": "whatsapp",
         "high_retry_volume": "retries"}


def results(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if not data.get("whole_run"):
            out[(data["fault"], data["runbook"])] = data
    return out


def cell(found: dict[str, Any] | None, expected: str) -> str:
    if found is None:
        return "not run"
    verdict = str(found["cause"])
    mark = "" if verdict == expected and not found.get("crash") and found["seconds"] <= found["bound"] else " ✗"
    return f"{verdict} ({found['exit_code']}), {found['seconds']:.1f}s{mark}"


def table(folder: Path) -> str:
    found = results(folder)
    lines = ["| dependency | fault | " + " | ".join(SHORT[s] for s in ALL) + " |",
             "| --- | --- | " + " | ".join("---" for _ in ALL) + " |"]
    lines.append("| (none) | nothing broken: the control | "
                 + " | ".join(cell(found.get(("none", s)), "healthy") for s in ALL) + " |")
    for fault in FAULTS:
        cells = [cell(found.get((fault.name, s)), fault.expected(s)) if s in fault.runbooks else "—" for s in ALL]
        lines.append(f"| {fault.dependency} | {fault.what} (`{fault.name}`) | " + " | ".join(cells) + " |")
    runs = [r for r in found.values() if r["fault"] != "none"]
    healthy = sum(1 for r in runs if r["cause"] == "healthy")
    slowest = max(runs, key=lambda r: r["seconds"] / r["bound"], default=None)
    whole = [json.loads(p.read_text()) for p in sorted(folder.glob("whole-run--*.json"))]
    summary = [f"{len(FAULTS)} faults, {len(runs)} runs across the four runbooks: {healthy} ended `healthy`, "
               f"{sum(1 for r in runs if r.get('crash'))} crashed, "
               f"{sum(1 for r in runs if r['seconds'] > r['bound'])} went past their time budget."]
    if slowest is not None:
        summary.append(f"Slowest against its bound: `{slowest['fault']}` on {slowest['runbook']}, "
                       f"{slowest['seconds']:.1f}s of {slowest['bound']:.0f}s.")
    for r in whole:
        summary.append(f"Whole run (`runbook run`, papermill, a kernel): `{r['fault']}` on {r['runbook']} ended "
                       f"`{r['cause']}` (exit {r['exit_code']}) in {r['seconds']:.1f}s of a {r['bound']:.0f}s budget.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in summary) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args(argv)
    folder = Path(os.environ.get("RUNBOOK_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "fault-matrix"
    if not folder.is_dir():
        print(f"no results in {folder}: run `pytest tests/faults` first", file=sys.stderr)
        return 1
    text = table(folder)
    print(text)
    if args.readme:
        readme = ROOT / "README.md"
        body = readme.read_text()
        if BEGIN not in body or END not in body:
            print(f"README.md has no {BEGIN} … {END} markers", file=sys.stderr)
            return 1
        head, rest = body.split(BEGIN, 1)
        readme.write_text(head + BEGIN + "\n" + text + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
