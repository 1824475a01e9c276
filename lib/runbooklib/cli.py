"""The `runbook` command: list, show, run, demo, runs and review.

Exit codes (`runs.EXIT_CODES`): 0 healthy · 1 run failed · 2 bad parameters or usage · 3 a cause
diagnosed · 4 inconclusive (a check the verdict needs could not run) · 5 unknown (failures, no cause)
· 6 an approved mitigation failed or was interrupted.

`run` and `demo` print the gate: each mitigation's decision, its plan in a few lines, its digest and
the exact command that approves that plan (the dry run is the default, so the first run shows it).
Bad input of any kind is a clear error naming the value (exit 2), never a traceback.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runbooklib import catalog
from runbooklib.bundle import STAGING, default_runs_dir
from runbooklib.errors import ConfigError, RunbookError, StorageError
from runbooklib.leaks import LeakFound
from runbooklib.params import UNDO_PREFIX, CommonParams, declared_parameters, validate
from runbooklib.redact import REDACTOR
from runbooklib.runs import (
    EXIT_BAD_PARAMETERS,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_LEAK,
    RunResult,
    TimeBudget,
    execute,
    load_parameter_files,
    time_budget,
)
from runbooklib.settings import DEMO, Profile, check_http_url, demo_profile, load_profiles, register_profile_secrets
from runbooklib.store import S3Location, is_s3, local_copy

RUNNER_SET = {"incident", "run_dir", "sandbox", "deadline"}
"""Parameters the CLI sets itself; giving them with -p is an error."""
DEMO_ONLY = {"scenario"}
"""Parameters only `runbook demo` takes (with its own option, --scenario)."""


def _err(message: str) -> None:
    print(REDACTOR.text(message), file=sys.stderr)


def _progress(message: str) -> None:
    print(f"» {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runbook", description="Executable runbooks for incidents in Lineup's communication system.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes of run and demo:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items()))
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
        p.add_argument("--check-only", action="store_true",
                       help="validate the parameters and the profile, show the time budget and what this profile cannot "
                            "check, and exit without running anything (0 when it would run)")

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
    demo.add_argument("slug", nargs="?", help="the runbook (default: the first `runbook list` shows)")
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
    print("  approve a plan as <action>@<digest>, the digest its dry run printed; allow_unlocked applies without a "
          "lease store (audited)")
    print(f"causes: {', '.join(spec.causes)}; and inconclusive when a check the verdict needs could not run")
    print(f"the verdict rests on: {', '.join(spec.dependencies)} (see docs/cause-codes.md for the checks it needs)")
    return 0


def _raw_parameters(args: argparse.Namespace, *, demo: bool = False) -> dict[str, Any]:
    raw = load_parameter_files(args.parameters_file)
    for name, value in args.parameter:
        raw[name] = value
    bad = sorted(str(k) for k in raw if k in RUNNER_SET)
    if bad:
        raise ConfigError(f"bad parameters:\n  - {bad[0]}: set by the runner; use the command's own option "
                          f"(--incident) instead", parameter=bad[0])
    if not demo and any(k in DEMO_ONLY for k in raw):
        raise ConfigError("bad parameters:\n  - scenario: only `runbook demo` runs scenarios (runbook demo "
                          f"{args.slug} --scenario NAME); `runbook run` checks a real environment", parameter="scenario")
    return raw


def prepare(slug: str, raw: dict[str, Any], *,
            incident: str) -> tuple[CommonParams, dict[str, Any], Profile | None]:
    """Validate parameters before anything runs; returns (params, typed values for papermill, the profile: None
    for the demo environment, whose profile comes from a sandbox)."""
    spec = catalog.get(slug)
    profiles = load_profiles(_environments_file(raw.get("environments_file")))
    check = {**raw, "incident": incident}
    params = validate(spec.params_cls, check, actions=list(spec.approvable),
                      environments=profiles, scenarios=spec.scenarios())
    profile = profiles[params.environment] if params.environment != DEMO else None
    if profile is not None:
        register_profile_secrets(profile)
    typed = {}
    for p in declared_parameters(spec.params_cls):
        if p.name in raw:
            value = getattr(params, p.name)
            typed[p.name] = list(value) if isinstance(value, tuple) else value
    for key in ("environments_file",):
        if typed.get(key):
            typed[key] = str(Path(str(typed[key])).resolve())
    return params, typed, profile


def _environments_file(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"bad parameters:\n  - environments_file: must be the path of a YAML file, got "
                          f"{type(value).__name__}", parameter="environments_file")
    return value


def _location(text: str, *, writable: bool = True) -> Path | S3Location:
    """The --output location, checked before anything runs: an s3:// location, or a folder that exists or can be
    made (no file in the way, and writable when records are to be written there)."""
    if is_s3(text):
        return S3Location(text)
    path = Path(text)
    try:
        probe = path
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise ConfigError(f"--output {text!r}: {str(probe)!r} is a file, not a folder; give a folder or s3:// "
                              "location", parameter="output")
        if writable and probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
            raise ConfigError(f"--output {text!r}: {str(probe)!r} is not writable", parameter="output")
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long
        raise ConfigError(f"--output {text[:200]!r} is not a usable folder: {exc.__class__.__name__}",
                          parameter="output") from exc
    return path


def _execute(args: argparse.Namespace, slug: str, typed: dict[str, Any], incident: str,
             budget: TimeBudget) -> tuple[RunResult, str | None]:
    """Run into --output: a folder directly; an s3:// location through a local staging folder, uploaded at the
    end. Returns the result and where its bundle is kept (None: the upload failed; the staged copy is kept)."""
    where = _location(args.output)
    if isinstance(where, Path):
        result = execute(slug, typed, output_root=where, incident=incident, progress=not args.no_progress, budget=budget)
        return result, str(result.bundle)
    staging_root = default_runs_dir() / STAGING
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="runbook-staging-", dir=staging_root))
    try:  # the incident's earlier runs, so that the gate sees what they applied (it never repeats it)
        where.fetch(staging, incident)
    except StorageError as exc:
        if typed.get("dry_run", True) is not False:
            _progress(f"could not read the incident's earlier runs ({exc}); a dry run goes on without them")
        else:
            shutil.rmtree(staging, ignore_errors=True)
            raise StorageError(f"the incident's earlier runs could not be read from {where} ({exc}), so an approved "
                               "change might repeat one they applied; nothing was run") from exc
    result = execute(slug, typed, output_root=staging, incident=incident, progress=not args.no_progress, budget=budget)
    if result.leaks:
        return result, None  # fail closed: nothing is uploaded; the staged copy stays (its leaking files withheld)
    try:
        url = where.upload(result.bundle, incident, result.bundle.name)
    except StorageError as exc:
        _err(f"runbook: the run's bundle was not stored: {exc}. It is kept at {result.bundle}; copy it there by hand")
        return result, None
    shutil.rmtree(staging, ignore_errors=True)
    return result, url


def _preflight(spec: catalog.RunbookSpec, params: CommonParams, profile: Profile | None) -> TimeBudget:
    """Before anything runs: the time budget, and what this profile cannot check (the run goes on without it)."""
    budget = time_budget(spec, params, profile)
    _progress(f"time budget: {budget.text()}; every outside call has a total deadline")
    missing = profile.missing(spec.dependencies) if profile is not None else []
    if missing:
        _progress("cannot check with this profile (the run goes on with what it can):")
        for m in missing:
            print(REDACTOR.text(f"    - {m['label']}: {m['why']}"), file=sys.stderr, flush=True)
    return budget


def _print_unchecked(unchecked: list[dict[str, Any]]) -> None:
    """What could not be checked, grouped by why (one cause often blocks several checks), with what to do by hand."""
    needed = [u for u in unchecked if u.get("needed")]
    if needed:
        print("could not check — look at these by hand:")
        for why, group in _grouped(needed).items():
            print(REDACTOR.text(f"  • {why}"))
            for u in group:
                print(REDACTOR.text(f"      - {u.get('what')}" + (f": {u['by_hand']}" if u.get("by_hand") else "")))
    others = [u for u in unchecked if not u.get("needed")]
    if others:
        listed = "; ".join(f"{why} ({', '.join(str(u.get('what')) for u in group)})"
                           for why, group in _grouped(others).items())
        print(REDACTOR.text(f"also not checked (the verdict does not rest on these): {listed}"))


def _grouped(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        out.setdefault(str(entry.get("why")), []).append(entry)
    return out


OUTCOME_WORDS = {"healthy": "HEALTHY", "cause": "DIAGNOSED", "inconclusive": "INCONCLUSIVE — no all-clear",
                 "unknown": "UNKNOWN cause"}


GATE_WORDS = {"not_needed": "not needed", "dry_run": "DRY RUN", "blocked": "BLOCKED", "refused": "REFUSED",
              "applied": "APPLIED", "failed": "FAILED", "undone": "UNDONE", "already_applied": "ALREADY APPLIED"}


def _plan_lines(plan: dict[str, Any], limit: int = 3) -> list[str]:
    """A plan in a few lines: what, how many, where."""
    steps = [s for s in plan.get("steps") or [] if isinstance(s, dict)]
    lines = [f"plan {plan.get('digest')}: {plan.get('summary')} ({plan.get('targets', len(steps))} target(s))"]
    for step in steps[:limit]:
        parts = []
        for key, value in step.items():
            if isinstance(value, list):
                shown = ", ".join(map(str, value[:3])) + (f", … {len(value) - 3:,} more" if len(value) > 3 else "")
                parts.append(f"{key}=[{shown}]")
            elif isinstance(value, dict):
                parts.append(f"{key}={{…}}")
            else:
                parts.append(f"{key}={value}")
        lines.append("  · " + " ".join(parts)[:160])
    if len(steps) > limit:
        lines.append(f"  · … {len(steps) - limit} more step(s) (every one is in summary.json)")
    return lines


def _command(argv: Sequence[str], approvals: list[str]) -> str:
    """The command that was run, with the approvals for exactly the plans shown (dry run lifted)."""
    out, skip = [], 0
    for i, word in enumerate(argv):
        if skip:
            skip -= 1
            continue
        if word in ("-p", "--parameter") and i + 1 < len(argv) and argv[i + 1] in ("dry_run", "approve", "operator"):
            skip = 2
            continue
        out.append(word)
    out += ["-p", "dry_run", "false", "-p", "operator", "<you>", "-p", "approve", ",".join(approvals)]
    return "runbook " + " ".join(w if w == "<you>" else shlex.quote(w) for w in out)


def _print_gate(result: RunResult, argv: Sequence[str] | None) -> None:
    actions = result.actions
    if not actions:
        return
    print("mitigations:")
    approvable = []
    for a in actions:
        decision = str(a.get("decision"))
        message = str(a.get("message")).split(" To apply this exact plan:")[0]
        print(REDACTOR.text(f"  {GATE_WORDS.get(decision, decision):<15} {a.get('action')}: {message}"))
        plan = a.get("plan") if isinstance(a.get("plan"), dict) else None
        if plan and decision != "not_needed":
            for line in _plan_lines(plan):
                print(REDACTOR.text(f"                  {line}"))
        if a.get("approve_with"):
            approvable.append(f"{a['action']}@{plan['digest']}" if plan else str(a["action"]))
    given = (result.summary.get("parameters") or {}).get("approve") or []
    dry = (result.summary.get("parameters") or {}).get("dry_run")
    if given and dry:
        print(REDACTOR.text(f"note: approvals were given ({', '.join(map(str, given))}) but dry_run is true: nothing "
                            "was applied; add -p dry_run false to apply them"))
    for entry in result.interrupted:
        print(REDACTOR.text(f"INTERRUPTED     {entry.get('action')}: applying plan {entry.get('plan_digest')} was cut "
                            f"off — outcome unknown; verify: {entry.get('verify_by_hand')}"))
    if approvable and "allow_unlocked" in map(str, given):
        approvable.append("allow_unlocked")
    if approvable and argv is not None:
        print("to apply exactly these plans (after reviewing them), run:")
        print(f"  {_command(argv, approvable)}")  # the responder's own words (secrets are never parameters)


def _print_leaks(result: RunResult) -> None:
    if not result.leaks:
        return
    _err("runbook: LEAK — the final scan found what must not be published; these files were withheld from the "
         f"record and kept, owner-only, at {result.withheld_at}:")
    for leak in result.leaks:
        _err(f"    - {leak.text()}")
    _err("  nothing of them was published; report this as a bug in comms-runbooks's masking (the message names the "
         "kind of leak, never the value)")


def _report(result: RunResult, expect: str | None = None, location: str | None = "",
            argv: Sequence[str] | None = None) -> int:
    _print_leaks(result)
    print(f"diagnosis: {result.headline}")
    _print_unchecked(result.unchecked)
    if expect and result.cause and result.status == "completed":
        print(f"scenario expects: {expect} {'✓' if expect == result.cause else '✗ (differs)'}")
    _print_gate(result, argv)
    applied = [a["action"] for a in result.actions if a.get("decision") in ("applied", "undone")]
    print(f"changes applied: {', '.join(applied) if applied else 'none'}")
    code = result.exit_code if location is not None or result.leaks else EXIT_FAILED
    if result.outcome is None:
        verdict = "run FAILED" if result.status != "completed" else "run completed WITHOUT a diagnosis"
    else:
        verdict = f"run completed — {OUTCOME_WORDS[result.outcome]}" + (
            f" {result.cause}" if result.outcome == "cause" else "")
    if result.mitigation_failed:
        verdict += " — a MITIGATION FAILED or was interrupted"
    if result.leaks:
        verdict += f" — {len({leak.where for leak in result.leaks})} file(s) WITHHELD as leaks"
    where = f"bundle: {location or result.bundle}" if location is not None else f"bundle NOT stored (kept at {result.bundle})"
    print(f"{verdict} (exit {code}); {where}")
    return code


def cmd_run(args: argparse.Namespace) -> int:
    raw = _raw_parameters(args)
    params, typed, profile = prepare(args.slug, raw, incident=args.incident)
    _location(args.output)
    spec = catalog.get(args.slug)
    if params.environment == DEMO and not params.sandbox:
        _progress("environment is demo: the notebook will start its own sandbox (use `runbook demo` for scenarios)")
    budget = _preflight(spec, params, profile)
    if args.check_only:
        _progress("--check-only: parameters and profile are valid; nothing was run")
        return 0
    _progress(f"running {args.slug} for {args.incident} in {params.environment} "
              f"({'dry run' if params.dry_run else 'approvals: ' + (', '.join(params.approve) or 'none')})")
    result, location = _execute(args, args.slug, typed, args.incident, budget)
    return _report(result, location=location, argv=args.argv)


def cmd_demo(args: argparse.Namespace) -> int:
    from runbooklib.sandbox import Sandbox

    args.slug = args.slug or catalog.slugs()[0]
    spec = catalog.get(args.slug)
    path = args.scenario_file or spec.scenario_path(args.scenario or spec.default_scenario)
    scenario = spec.load_scenario(Path(path))
    incident = args.incident or f"DRILL-{scenario.name}".replace("_", "-")[:64]
    raw = {**spec.demo_parameters, **_raw_parameters(args, demo=True)}
    if raw.get("environment", DEMO) != DEMO:
        raise ConfigError("bad parameters:\n  - environment: `runbook demo` always uses the demo environment; "
                          "use `runbook run` for a real one", parameter="environment")
    scenario_param = str(Path(path).resolve()) if args.scenario_file else scenario.name
    params, _, _ = prepare(args.slug, {**raw, "scenario": scenario_param}, incident=incident)
    _location(args.output)
    if args.check_only:
        _progress(f"--check-only: scenario {scenario.name} and the parameters are valid; nothing was run")
        return 0
    _progress(f"scenario {scenario.name}: {scenario.description.strip()}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="runbook-demo-") as tmp:
        sandbox = Sandbox(scenario, workdir=Path(tmp), dependencies=spec.dependencies)
        _progress(f"seeding message_logs (SQLite) and starting stand-ins: {', '.join(sandbox.labels())}")
        try:
            sandbox.start()
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a drill file value of the wrong form
            raise ConfigError(f"scenario {str(path)!r} cannot be set up: a value has the wrong type or form "
                              f"({exc.__class__.__name__}: {str(exc)[:200]}); see docs/scenarios.md",
                              parameter="scenario") from exc
        try:
            register_profile_secrets(demo_profile(sandbox.describe()))  # the sandbox's secrets, by variable
            description = sandbox.write_description()
            _progress(f"{sandbox.rows:,} rows seeded; running the notebook")
            params, typed, _ = prepare(args.slug, {**raw, "sandbox": str(description)}, incident=incident)
            typed.update(environment=DEMO, sandbox=str(description), scenario=scenario_param)
            budget = _preflight(spec, params, demo_profile(sandbox.describe()))
            result, location = _execute(args, args.slug, typed, incident, budget)
        finally:
            sandbox.stop()
    _progress(f"done in {time.monotonic() - started:.1f}s")
    return _report(result, scenario.expect, location, argv=args.argv)


def cmd_runs(args: argparse.Namespace) -> int:
    from runbooklib.incident import list_runs

    where = _location(args.output, writable=False)
    if isinstance(where, Path):
        records = list_runs(where, args.incident)
    else:
        with local_copy(where, args.incident, evidence=True) as root:  # evidence too: its seal is verified
            records = list_runs(root, args.incident, location=str(where), evidence=True)
    if not records:
        print(f"no runs recorded under {args.output}" + (f" for {args.incident}" if args.incident else ""))
        return 0
    print(f"{'started':<25}  {'runbook':<27}  {'operator':<12}  {'diagnosis':<28}  {'applied':<30}  outcome")
    for record in records:
        print(REDACTOR.text(record.line()))
    damaged = [(r, p) for r in records for p in r.problems]
    if damaged:
        print("record problems (read around; the rest is listed):")
        for record, problem in damaged:
            print(REDACTOR.text(f"  - {record.location}: {problem}"))
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from runbooklib.review import compile_review, write_review
    from runbooklib.webhook import send_webhook

    started = time.monotonic()
    if args.webhook:
        check_http_url(args.webhook, "--webhook")
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
    for n, run in enumerate(review.runs, 1):
        for problem in run.problems:
            _err(f"runbook: run {n} ({run.location}): {problem}")
    if args.webhook:
        status = send_webhook(args.webhook, review, markdown_at=md_at, html_at=html_at)
        print(f"webhook answered HTTP {status}")
        return 0 if status < 400 else EXIT_FAILED
    return 0


class _Redacting(io.TextIOBase):
    """A terminal stream whose every write passes the redactor: nothing the command prints (its own lines, a
    library's warning, the progress bar) can show a secret or a recipient."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(REDACTOR.text(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())

    def fileno(self) -> int:
        return int(self._stream.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._stream, "encoding", "utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Redacting(sys.stdout), _Redacting(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(words)
    args.argv = words
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
    except LeakFound as exc:
        _err(f"runbook: LEAK — {exc}")
        return EXIT_LEAK
    except RunbookError as exc:
        _err(f"runbook: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("runbook: interrupted")
        return EXIT_FAILED
    except Exception as exc:  # a bug of ours: say so in one line, never a traceback in a responder's terminal
        _err(f"runbook: internal error ({exc.__class__.__name__}: {str(exc)[:300]}); this is a bug in comms-runbooks "
             "— please report it with the command you ran")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
