"""Benchmark: how long `runbook review` takes to compile an incident's runs.

    .venv/bin/python benchmarks/review_build.py [--runs runs --incident DEMO-…] [--repeat 5]

With `--runs`/`--incident`, it compiles that incident (e.g. after `make demo-incident`). Without, it
first records the demo incident into a temporary folder — an email run (SMTP credentials rejected:
switch to the backup relay, test email) and an SMS run (rate limited: re-queue transient failures),
both approved — which takes about half a minute and is not timed. Then it compiles the review
`--repeat` times, writing review.md and review.html each time, and prints the timings and sizes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from runbooklib import catalog  # noqa: E402
from runbooklib.redact import REDACTOR  # noqa: E402
from runbooklib.review import write_review  # noqa: E402
from runbooklib.runs import execute  # noqa: E402
from runbooklib.sandbox import Sandbox  # noqa: E402

DEMO = [
    ("email_provider_failure", "smtp_auth_failure",
     {"dry_run": False, "operator": "alice", "approve": ["switch_email_provider", "send_test_email"],
      "test_recipient": "oncall@lineup.app"}),
    ("sms_delivery_failure", "rate_limited", {"dry_run": False, "operator": "bob", "approve": ["retry_failed_sms"]}),
]


def record_demo(root: Path, incident: str) -> None:
    for slug, scenario, params in DEMO:
        spec = catalog.get(slug)
        with tempfile.TemporaryDirectory() as box_dir, Sandbox(spec.load_scenario(scenario), workdir=Path(box_dir)) as box:
            REDACTOR.add_secrets(box.secrets.values())
            result = execute(slug, {"environment": "demo", "sandbox": str(box.write_description()),
                                    "recovery_interval": "1s", **params}, output_root=root, incident=incident,
                             progress=False)
            print(f"recorded {slug}: {result.status}, {result.cause}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="a runs folder (default: record the demo incident first)")
    parser.add_argument("--incident", default="BENCH-1")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.runs or Path(tmp)
        if args.runs is None:
            record_demo(root, args.incident)
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            review, md_path, html_path = write_review(root, args.incident)
            timings.append(time.perf_counter() - started)
        print(f"review of {args.incident}: {len(review.runs)} runs, {len(review.markdown.splitlines())} lines; "
              f"review.md {md_path.stat().st_size / 1024:.0f} KiB, review.html {html_path.stat().st_size / 1024:.0f} KiB")
        print(f"build time over {args.repeat}: first {timings[0]:.2f} s (imports matplotlib's fonts), "
              f"median {statistics.median(timings):.2f} s, max {max(timings):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
