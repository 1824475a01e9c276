"""The `runbook` command: list, show, run and demo.

Exit codes: 0 healthy · 1 run failed · 2 bad parameters or usage · 3 incident diagnosed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runbooklib import catalog
from runbooklib.context import default_runs_dir
from runbooklib.errors import ConfigError, RunbookError, StorageError
from runbooklib.gates import UNDO_PREFIX
from runbooklib.params import CommonParams, declared_parameters, validate
from runbooklib.redact import REDACTOR
from runbooklib.runs import EXIT_BAD_PARAMETERS, EXIT_FAILED, RunResult, execute, load_parameter_files
from runbooklib.settings import DEMO, load_profiles, register_profile_secrets
from runbooklib.store import S3Location, is_s3, local_copy

DEFAULT_RUNBOOK = "email_provider_failure"
STAGING = ".staging"
"""Under the local runs folder: runs bound for s3:// are written here first, and stay if the upload fails."""
RUNNER_SET = {"incident", "run_dir", "sandbox"}
"""Parameters the CLI sets itself; giving them with -p is an error."""


def _err(message: str) -> None:
    print(REDACTOR.text(message), file=sys.stderr)


def _progress(message: str) -> None:
    print(f"» {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runbook", description="Executable runbooks for incidents in Lineup's communication system.",
        epilog="exit codes: 0 healthy, 1 run failed, 2 bad parameters, 3 incident diagnosed")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="runbooks and their sandbox scenarios")
    show = sub.add_parser("show", help="a runbook's parameters (types, defaults, help), read from its notebook")
    show.add_argument("slug")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="set a parameter (typed by its declaration: text stays text, e.g. ids like 0123)")
        p.add_argument("-f", "--parameters-file", action="append", default=[], type=Path, metavar="YAML",
                       help="YAML parameter file(s), merged shallowly in order")
        p.add_argument("--output", default="runs", help="where run bundles go: a folder (default: runs/) or s3://bucket/prefix")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    run = sub.add_parser("run", help="run a runbook against an environment and write a run bundle")
    run.add_argument("slug")
    run.add_argument("--incident", required=True, help="incident id, e.g. INC-123")
    common(run)
    runs = sub.add_parser("runs", help="the runs recorded, one line each")
    runs.add_argument("--incident", help="only this incident")
    runs.add_argument("--output", default="runs", help="where run bundles are: a folder (default: runs/) or s3://bucket/prefix")
    review = sub.add_parser("review", help="compile every run of an incident into one post-incident review")
    review.add_argument("incident")
    review.add_argument("--output", default="runs",
                        help="where run bundles are, and the review goes: a folder (default: runs/) or s3://bucket/prefix")
    review.add_argument("--webhook", help="POST the review's summary and location to this URL (a ticketing system)")
    demo = sub.add_parser("demo", help="run a runbook against a simulated incident on this machine")
    demo.add_argument("slug", nargs="?", default=DEFAULT_RUNBOOK)
    group = demo.add_mutually_exclusive_group()
    group.add_argument("--scenario", help="scenario name (see `runbook list`)")
    group.add_argument("--scenario-file", type=Path, help="a scenario YAML file of your own (see docs/scenarios.md)")
    demo.add_argument("--incident", default="", help="incident id (default DRILL-<scenario>)")
    common(demo)
    return parser


def cmd_list() -> int:
    for spec in catalog.all_runbooks():
        print(f"{spec.slug}  —  {spec.title}")
        print(f"  actions:   {', '.join(spec.actions)}")
        print(f"  scenarios: {', '.join(spec.scenarios())}  (default: {spec.default_scenario})")
    return 0


def cmd_show(slug: str) -> int:
    import papermill as pm

    spec = catalog.get(slug)
    print(f"{spec.slug} — {spec.title}\nnotebook: {spec.notebook}\n\nparameters:")
    for name, p in pm.inspect_notebook(str(spec.notebook)).items():
        print(f"  {name}: {p['inferred_type_name']} = {p['default']}")
        if p.get("help"):
            print(f"      {p['help']}")
    print(f"\napprovable actions: {', '.join(spec.actions)} (and {UNDO_PREFIX}<action> to roll one back)")
    print(f"causes: {', '.join(spec.causes)}")
    return 0


def _raw_parameters(args: argparse.Namespace) -> dict[str, Any]:
    raw = load_parameter_files(args.parameters_file)
    for name, value in args.parameter:
        raw[name] = value
    bad = sorted(set(raw) & RUNNER_SET)
    if bad:
        raise ConfigError(f"bad parameters:\n  - {bad[0]}: set by the runner; use the command's own option "
                          f"(--incident) instead", parameter=bad[0])
    return raw


def prepare(slug: str, raw: dict[str, Any], *, incident: str) -> tuple[CommonParams, dict[str, Any]]:
    """Validate parameters before anything runs; returns (params, typed values for papermill)."""
    spec = catalog.get(slug)
    profiles = load_profiles(str(raw.get("environments_file") or ""))
    check = {**raw, "incident": incident}
    params = validate(spec.params_cls, check, actions=list(spec.actions) + [UNDO_PREFIX + a for a in spec.actions],
                      environments=profiles, scenarios=spec.scenarios())
    if params.environment != DEMO:
        profile = profiles[params.environment]
        assert profile is not None
        register_profile_secrets(profile)
    typed = {}
    for p in declared_parameters(spec.params_cls):
        if p.name in raw:
            value = getattr(params, p.name)
            typed[p.name] = list(value) if isinstance(value, tuple) else value
    for key in ("environments_file",):
        if typed.get(key):
            typed[key] = str(Path(str(typed[key])).resolve())
    return params, typed


def _location(text: str) -> Path | S3Location:
    """The --output location, checked before anything runs."""
    return S3Location(text) if is_s3(text) else Path(text)


def _execute(args: argparse.Namespace, slug: str, typed: dict[str, Any], incident: str) -> tuple[RunResult, str | None]:
    """Run into --output: a folder directly; an s3:// location through a local staging folder, uploaded at the
    end. Returns the result and where its bundle is kept (None: the upload failed; the staged copy is kept)."""
    where = _location(args.output)
    if isinstance(where, Path):
        result = execute(slug, typed, output_root=where, incident=incident, progress=not args.no_progress)
        return result, str(result.bundle)
    staging_root = default_runs_dir() / STAGING
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="runbook-staging-", dir=staging_root))
    result = execute(slug, typed, output_root=staging, incident=incident, progress=not args.no_progress)
    try:
        url = where.upload(result.bundle, incident, result.bundle.name)
    except StorageError as exc:
        _err(f"runbook: the run's bundle was not stored: {exc}. It is kept at {result.bundle}; copy it there by hand")
        return result, None
    shutil.rmtree(staging, ignore_errors=True)
    return result, url


def _report(result: RunResult, expect: str | None = None, location: str | None = "") -> int:
    status = "completed" if result.status == "completed" else "FAILED"
    print(f"diagnosis: {result.headline}")
    if expect and result.cause and result.status == "completed":
        print(f"scenario expects: {expect} {'✓' if expect == result.cause else '✗ (differs)'}")
    applied = [a["action"] for a in result.summary.get("actions", []) if a.get("decision") in ("applied", "undone")]
    print(f"changes applied: {', '.join(applied) if applied else 'none'}")
    print(f"run {status}; bundle: {location or result.bundle}" if location is not None
          else f"run {status}; bundle NOT stored (kept at {result.bundle})")
    return result.exit_code if location is not None else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    raw = _raw_parameters(args)
    params, typed = prepare(args.slug, raw, incident=args.incident)
    if params.environment == DEMO and not params.sandbox:
        _progress("environment is demo: the notebook will start its own sandbox (use `runbook demo` for scenarios)")
    _progress(f"running {args.slug} for {args.incident} in {params.environment} "
              f"({'dry run' if params.dry_run else 'approvals: ' + (', '.join(params.approve) or 'none')})")
    result, location = _execute(args, args.slug, typed, args.incident)
    return _report(result, location=location)


def cmd_demo(args: argparse.Namespace) -> int:
    from runbooklib.sandbox import Sandbox

    spec = catalog.get(args.slug)
    path = args.scenario_file or spec.scenario_path(args.scenario or spec.default_scenario)
    scenario = spec.load_scenario(Path(path))
    incident = args.incident or f"DRILL-{scenario.name}".replace("_", "-")[:64]
    raw = {**spec.demo_parameters, **_raw_parameters(args)}
    if raw.get("environment", DEMO) != DEMO:
        raise ConfigError("bad parameters:\n  - environment: `runbook demo` always uses the demo environment; "
                          "use `runbook run` for a real one", parameter="environment")
    scenario_param = str(Path(path).resolve()) if args.scenario_file else scenario.name
    prepare(args.slug, {**raw, "scenario": scenario_param}, incident=incident)
    _location(args.output)
    _progress(f"scenario {scenario.name}: {scenario.description.strip()}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runbook-demo-") as tmp:
        _progress("seeding message_logs (SQLite) and starting stand-ins: SMTP ×2, SES, Twilio, Statuspage, "
                  "Graph API, Lineup API" + (", Redis with BullMQ" if scenario.section("bullmq").get("enabled") else ""))
        sandbox = Sandbox(scenario, workdir=Path(tmp))
        with sandbox:
            REDACTOR.add_secrets(sandbox.secrets.values())
            description = sandbox.write_description()
            _progress(f"{sandbox.rows:,} rows seeded; running the notebook")
            _, typed = prepare(args.slug, {**raw, "sandbox": str(description)}, incident=incident)
            typed.update(environment=DEMO, sandbox=str(description), scenario=scenario_param)
            result, location = _execute(args, args.slug, typed, incident)
    _progress(f"done in {time.monotonic() - started:.1f}s")
    return _report(result, scenario.expect, location)


def cmd_runs(args: argparse.Namespace) -> int:
    from runbooklib.review import list_runs

    where = _location(args.output)
    if isinstance(where, Path):
        records = list_runs(where, args.incident)
    else:
        with local_copy(where, args.incident) as root:
            records = list_runs(root, args.incident, location=str(where))
    if not records:
        print(f"no runs recorded under {args.output}" + (f" for {args.incident}" if args.incident else ""))
        return 0
    print(f"{'started':<25}  {'runbook':<27}  {'operator':<12}  {'diagnosis':<28}  {'applied':<30}  outcome")
    for record in records:
        print(REDACTOR.text(record.line()))
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from runbooklib.review import compile_review, send_webhook, write_review

    started = time.monotonic()
    where = _location(args.output)
    if isinstance(where, Path):
        review, md_path, html_path = write_review(where, args.incident)
        md_at, html_at = str(md_path.resolve()), str(html_path.resolve())
    else:
        with local_copy(where, args.incident, evidence=True) as root:
            review = compile_review(root, args.incident, location=str(where))
        md_at = where.put_text(review.markdown, args.incident, "review.md")
        html_at = where.put_text(review.html, args.incident, "review.html")
    print(f"review of {args.incident}: {len(review.runs)} runs; {md_at} and {html_at} "
          f"({time.monotonic() - started:.1f}s)")
    if args.webhook:
        status = send_webhook(args.webhook, review, markdown_at=md_at, html_at=html_at)
        print(f"webhook answered HTTP {status}")
        return 0 if status < 400 else EXIT_FAILED
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "show":
            return cmd_show(args.slug)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "runs":
            return cmd_runs(args)
        if args.command == "review":
            return cmd_review(args)
        return cmd_demo(args)
    except ConfigError as exc:
        _err(f"runbook: {exc}")
        return EXIT_BAD_PARAMETERS
    except RunbookError as exc:
        _err(f"runbook: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("runbook: interrupted")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
