"""The run context a notebook builds in its second cell: validated parameters, endpoints, clients,
the gate, the audit log and the record of findings that becomes `summary.json`.

`start(slug, globals())` is the notebook's entry point. It validates the parameters strictly (a name
in the namespace that is not a declared parameter is an error: that is how a misspelled `-p windw
2h` is caught), resolves the environment profile and, for the demo environment without a sandbox
description, starts an in-kernel sandbox so that the notebook runs as-is in Jupyter.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from runbooklib import catalog
from runbooklib.audit import AuditLog, evidence_seal
from runbooklib.bundle import AUDIT, EVIDENCE, EVIDENCE_INDEX, METRICS, SUMMARY, Summary, bundle_name, default_runs_dir
from runbooklib.db import Database
from runbooklib.deadline import Dependency, RunBudget
from runbooklib.diagnosis import Diagnosis, could_not_check
from runbooklib.errors import ConfigError
from runbooklib.evidence import Evidence
from runbooklib.gates import Gate, GateOutcome, LeaseFactory
from runbooklib.ledger import IncidentLedger
from runbooklib.params import CommonParams, format_duration, validate
from runbooklib.platform_api import PlatformAPI
from runbooklib.redact import REDACTOR
from runbooklib.results import CheckResult
from runbooklib.settings import DEMO, Profile, demo_profile, load_profiles, register_profile_secrets, secret

_KERNEL_SANDBOXES: dict[str, Any] = {}
"""Sandboxes started by notebooks in this process, by scenario file: re-running the first cell in
Jupyter reuses the running sandbox (its state, e.g. a switched provider, is what the world now is)."""
_IGNORED_GLOBALS = {"In", "Out", "exit", "quit", "get_ipython", "display"}


def namespace_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter-like names of a notebook namespace: public, not modules, functions or classes."""
    hidden: set[str] = set()
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            hidden = set(shell.user_ns_hidden)
    except ImportError:
        pass
    out = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in _IGNORED_GLOBALS or name in hidden:
            continue
        if isinstance(value, types.ModuleType | types.FunctionType | types.BuiltinFunctionType | type):
            continue
        out[name] = value
    return out


class RunContext:
    """One run of one runbook: parameters, endpoints, clients, gate, audit and findings."""

    def __init__(self, spec: catalog.RunbookSpec, params: CommonParams, profile: Profile, *,
                 run_dir: Path, sandbox: Any = None, now: datetime | None = None) -> None:
        self.spec = spec
        self.slug = spec.slug
        self.params = params
        self.profile = profile
        self.sandbox = sandbox
        self.started_at = now or datetime.now(UTC)
        self.until = self.started_at
        self.since = self.until - params.window_delta
        self.baseline_since = self.since - params.baseline_delta
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.budget = RunBudget(datetime.fromisoformat(params.deadline) if params.deadline else None)
        """Every outside call's deadline is capped by it (headless runs; no limit in Jupyter)."""
        self.missing = profile.missing(spec.dependencies)
        """What this profile cannot reach (endpoints not configured, secret variables not set), found before any
        check runs; the run goes on with what it can."""
        self._dependencies: dict[str, Dependency] = {}
        self.audit = AuditLog(run_dir / AUDIT, incident=params.incident, runbook=spec.slug, operator=params.operator)
        self._leases: Any = None
        leases, store = self._lease_store()
        self.gate = Gate(dry_run=params.dry_run, approvals=params.approvals, operator=params.operator,
                         audit=self.audit, known_actions=list(spec.approvable),
                         ledger=IncidentLedger(run_dir.parent, self.audit, run=run_dir.name), leases=leases,
                         lease_store=store, run=run_dir.name, context={"environment": params.environment})
        self.findings: dict[str, CheckResult] = {}
        self.facts: dict[str, Any] = {}
        """The scalar facts `summary.json` keeps: each typed evidence value's (`to_facts()`, written as it is put)
        and a few a check writes itself. Rules read the typed evidence, not this."""
        self.diagnosis: Diagnosis | None = None
        self.measurements: list[dict[str, Any]] = []
        """Key figures with the time they describe (see METRICS), in the order measured."""
        self.extra: dict[str, Any] = {}
        """JSON-ready additions to summary.json (e.g. the filled post-incident checklist)."""
        self.evidence = Evidence(record=self.facts)
        """What one cell hands to the next (frames, clients, samples), by declared key; in memory, never saved."""
        self._evidence_count = 0
        self._register_secrets()
        self.write_summary()

    # -- clients -------------------------------------------------------------------------------
    @cached_property
    def db(self) -> Database:
        return Database(self.profile.resolve_database_url(), statement_timeout=self.profile.statement_timeout,
                        row_cap=self.profile.row_cap, connect_timeout=self.profile.connect_timeout,
                        on_result=self.keep_evidence, budget=self.budget)

    def dependency(self, key: str, make: Callable[[float], Dependency]) -> Dependency:
        """The run's `Dependency` for an outside service (made once by `make(total seconds)`): one total deadline
        per call, capped by the run's budget, and known down for the rest of the run once it did not answer."""
        if key not in self._dependencies:
            made = make(self.profile.total_timeout)
            made.budget = self.budget
            self._dependencies[key] = made
        return self._dependencies[key]

    def keep_evidence(self, sql: str, params: Mapping[str, Any], frame: Any) -> None:
        """Store a query's result (CSV, redacted), its SQL, bound values and a SHA-256 in `evidence/`, so the
        aggregates behind this run's decisions outlive message_logs' retention."""
        folder = self.run_dir / EVIDENCE
        folder.mkdir(exist_ok=True)
        self._evidence_count += 1
        number = self._evidence_count
        text = REDACTOR.text(frame.to_csv(index=False))
        name = f"{number:03d}.csv"
        (folder / name).write_text(text, encoding="utf-8")
        entry = REDACTOR.mapping({"file": name, "sql": sql, "params": {k: str(v) for k, v in params.items()},
                                  "rows": len(frame), "sha256": hashlib.sha256(text.encode()).hexdigest(),
                                  "at": datetime.now(UTC).isoformat(timespec="seconds")})
        with (folder / EVIDENCE_INDEX).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    @cached_property
    def api(self) -> PlatformAPI:
        token = secret(self.profile.platform_api_token_env, what="Lineup API token")
        return PlatformAPI(self.profile.platform_api_url, token, connect_timeout=self.profile.connect_timeout,
                           read_timeout=self.profile.read_timeout, total_timeout=self.profile.total_timeout,
                           budget=self.budget)

    def _lease_store(self) -> tuple[LeaseFactory | None, str]:
        """Where applying takes its leases: the Redis the profile names (the queues' Redis), or nowhere."""
        try:
            url = self.profile.resolve_redis_url() if (self.profile.redis_url or self.profile.redis_url_env) else ""
        except ConfigError:
            url = ""
        if not url:
            return None, ""
        def take(resources: list[str], who: dict[str, Any]) -> Any:
            if self._leases is None:  # connected on the first apply only: a dry run never touches the store
                from runbooklib.leases import Leases

                self._leases = Leases(url, timeout=self.profile.connect_timeout,
                                      total_timeout=min(self.profile.total_timeout, 15.0))
            return self._leases.acquire(resources, who)
        return take, REDACTOR.text(f"redis {url.rsplit('@', 1)[-1]}")

    def _register_secrets(self) -> None:
        """Register every secret the profile names, so that none can reach an output even by accident."""
        register_profile_secrets(self.profile)

    # -- window ---------------------------------------------------------------------------------
    def window_params(self, *, by_tenant: bool | None = None, **extra: Any) -> dict[str, Any]:
        """Bound values for a query over the incident window (tenant-scoped if a tenant was given)."""
        out: dict[str, Any] = {"since": self.since, "until": self.until, **extra}
        if by_tenant if by_tenant is not None else bool(self.params.tenant_id):
            out["tenant_id"] = self.params.tenant_id
        return out

    def baseline_params(self, **extra: Any) -> dict[str, Any]:
        out = self.window_params(**extra)
        out.update(since=self.baseline_since, until=self.since)
        return out

    @property
    def by_tenant(self) -> bool:
        return bool(self.params.tenant_id)

    # -- record -------------------------------------------------------------------------------------
    def record(self, result: CheckResult) -> CheckResult:
        """Keep a check result as a finding (by name) and update summary.json."""
        self.findings[result.name] = result
        self.write_summary()
        return result

    def measure(self, metric: str, value: float, *, scope: str, basis: str, at: datetime | None = None) -> None:
        """Keep one key figure (e.g. the SMS failure rate, the email queue depth) with when it was true.

        `scope` says of what (a channel or queue name), `basis` how it was measured ("last 1h",
        "since mitigation", "sample"); a review places it before or after the incident's mitigations.
        """
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
        self.measurements.append({"metric": metric, "scope": scope, "value": round(float(value), 6), "basis": basis,
                                  "at": (at or datetime.now(UTC)).isoformat(timespec="milliseconds")})

    def describe(self) -> str:
        """What this run is, when it must end, and what it cannot check with this profile (the start cell prints it)."""
        p = self.params
        lines = [f"{p.incident} · {p.environment} · window {self.since:%Y-%m-%d %H:%M} → {self.until:%H:%M} UTC"
                 f" · {'dry run' if p.dry_run else 'LIVE'} · record: {self.run_dir}"]
        if self.budget.ends_at is not None:
            left = format_duration(timedelta(seconds=max(self.budget.remaining() or 0.0, 0.0)))
            lines.append(f"time budget: this run ends by {self.budget.ends_at:%H:%M:%S} UTC ({left} left); every "
                         f"outside call has a total deadline of {self.profile.total_timeout:g}s")
        if self.missing:
            lines.append("cannot check with this profile (the run goes on with what it can):")
            lines += [f"  - {m['label']}: {m['why']}" for m in self.missing]
        return REDACTOR.text("\n".join(lines))

    def record_outcome(self, outcome: GateOutcome) -> GateOutcome:
        self.write_summary()
        return outcome

    def approve(self, action: str, *, operator: str, plan: str) -> str:
        """Approve one action from Jupyter, bound to the plan digest its dry run showed; re-run its cell."""
        approval = self.gate.approve(action, operator=operator, plan=plan)
        return f"approved {approval.action} (plan {approval.plan_digest}) by {operator}; re-run its cell to apply"

    def summary(self, status: str = "running") -> Summary:
        """This run's record as it stands (redacted), the kernel's part of `summary.json`."""
        p = self.params
        parameters = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(p).items()}
        return Summary.from_json(REDACTOR.mapping({
            "runbook": self.slug,
            "title": self.spec.title,
            "incident": p.incident,
            "environment": p.environment,
            "operator": p.operator or None,
            "status": status,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "window": {"since": self.since.isoformat(timespec="seconds"), "until": self.until.isoformat(timespec="seconds"),
                       "length": format_duration(p.window_delta), "baseline": format_duration(p.baseline_delta)},
            "parameters": parameters,
            "scenario": getattr(self.sandbox, "scenario_name", None) or (p.scenario or None),
            "findings": {name: r.to_json() for name, r in self.findings.items()},
            "facts": {k: v for k, v in self.facts.items() if _plain(v)},
            "not_configured": self.missing,
            "deadline": p.deadline or None,
            "diagnosis": self.diagnosis.to_json() if self.diagnosis else None,
            "actions": [o.to_json() for o in self.gate.outcomes],
            "measurements": self.measurements,
            "ledger": {"audit": self.audit.seal(), "evidence": evidence_seal(self.run_dir / EVIDENCE)},
            **self.extra,
        }))

    def write_summary(self, status: str = "running") -> None:
        self.summary(status).write(self.run_dir / SUMMARY)

    def finish(self) -> str:
        """Write the final summary; returns the one-line diagnosis for the notebook's last cell.

        Checks that ran after the diagnosis are taken into its verdict (`Diagnosis.amended`)."""
        if self.diagnosis is not None:
            at = self.diagnosis.at
            self.diagnosis = self.diagnosis.amended([f for f in self.findings.values() if f.at > at])
        self.write_summary("completed")
        cause = self.diagnosis.headline if self.diagnosis else "no diagnosis was made"
        if self.diagnosis is not None and self.diagnosis.cause == "inconclusive":
            cause = f"INCONCLUSIVE — no all-clear; could not check: {could_not_check(self.diagnosis.unchecked)}"
        applied = [o.action for o in self.gate.outcomes if o.changed]
        return REDACTOR.text(f"{self.slug} · {self.params.incident}: {cause}"
                             + (f" · applied: {', '.join(applied)}" if applied else " · nothing changed")
                             + f" · record: {self.run_dir}")

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()
        if "api" in self.__dict__:
            self.api.close()
        if self._leases is not None:
            self._leases.close()


def start(slug: str, namespace: Mapping[str, Any], *, now: datetime | None = None) -> RunContext:
    """Validate a notebook's parameters and build its run context (the notebook's second cell).

    From here on every output the kernel publishes is redacted as it is made (`outputs`)."""
    from runbooklib.outputs import redact_kernel_outputs

    redact_kernel_outputs()
    spec = catalog.get(slug)
    raw = namespace_parameters(namespace)
    environments_file = raw.get("environments_file") or ""
    profiles = load_profiles(str(environments_file)) if isinstance(environments_file, str) else {DEMO: None}
    params = validate(spec.params_cls, raw, actions=list(spec.approvable),
                      environments=profiles, scenarios=spec.scenarios())
    REDACTOR.set_scope(params.incident)
    REDACTOR.add_public(params.operator)
    sandbox = None
    if params.environment == DEMO:
        if params.sandbox:
            path = Path(params.sandbox)
            if not path.is_file():
                raise ConfigError(f"sandbox description {params.sandbox!r} does not exist; "
                                  "it is written by `runbook demo` while its sandbox runs", parameter="sandbox")
            profile = demo_profile(json.loads(path.read_text()))
        else:
            from runbooklib.sandbox import Sandbox

            path = spec.scenario_path(params.scenario or spec.default_scenario).resolve()
            sandbox = _KERNEL_SANDBOXES.get(str(path))
            if sandbox is None:
                sandbox = _KERNEL_SANDBOXES[str(path)] = Sandbox(spec.load_scenario(path),
                                                                      dependencies=spec.dependencies).start()
            profile = demo_profile(sandbox.describe())
    else:
        found = profiles[params.environment]
        assert found is not None
        profile = found
    when = now or datetime.now(UTC)
    run_dir = Path(params.run_dir) if params.run_dir else (
        default_runs_dir() / params.incident / (bundle_name(slug, when) + "-interactive"))
    return RunContext(spec, params, profile, run_dir=run_dir, sandbox=sandbox, now=when)


def minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60


def _plain(value: Any) -> bool:
    """Whether a fact is plain data summary.json can keep as it is (scalars, and lists and mappings of them); a
    frame or a client is working evidence, kept in `ctx.evidence`, not a fact."""
    if isinstance(value, str | int | float | bool | type(None)):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
