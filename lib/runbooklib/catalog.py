"""The runbooks: each declares itself once (`RUNBOOK = Runbook(...)` in its module) and is discovered here.

Built-in runbooks are the modules of `runbooklib.runbooks` that declare `RUNBOOK`; others are named in
`$RUNBOOK_MODULES`. Nothing outside a runbook's own module names it.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runbooklib.errors import ConfigError
from runbooklib.params import UNDO_PREFIX, CommonParams

if TYPE_CHECKING:
    from runbooklib.context import RunContext
    from runbooklib.diagnosis import Needed
    from runbooklib.sandbox.scenario import Scenario

PACKAGE_DIR = Path(__file__).resolve().parent
SCENARIOS_DIR = PACKAGE_DIR / "sandbox" / "scenarios"
RUNBOOKS_PACKAGE = "runbooklib.runbooks"
"""Built-in runbooks: every module of this package that declares `RUNBOOK` (helpers declare none)."""
MODULES_ENV = "RUNBOOK_MODULES"
"""Comma-separated importable modules that each declare `RUNBOOK`: runbooks kept outside this package."""


def project_root() -> Path:
    """The checkout holding `notebooks/` (RUNBOOK_HOME overrides; else found above the package)."""
    env = os.environ.get("RUNBOOK_HOME")
    if env:
        return Path(env).resolve()
    for parent in PACKAGE_DIR.parents:
        if (parent / "notebooks").is_dir() and (parent / "pyproject.toml").is_file():
            return parent
    raise ConfigError("cannot find the project's notebooks/ folder; set RUNBOOK_HOME to the checkout")


@dataclass(frozen=True)
class Runbook:
    """One runbook, declared once in its own module as `RUNBOOK = Runbook(...)`; the CLI, the run context,
    the review and the tests read it, and none of them names a runbook.

    Attributes:
        slug: The runbook's name (its module's and its notebook's file name).
        title: As the spec titles it.
        channels: The channels it diagnoses (`schema.CHANNELS` names, lower case).
        params_cls: Its parameters (a `CommonParams` subclass; the notebook's parameters cell mirrors it).
        actions: Its gated actions, in the order the notebook offers them.
        causes: Cause code → one-line description (see docs/cause-codes.md).
        dependencies: The outside services it uses (see `settings.dependency_labels()`); a drill starts only
            the stand-ins of these.
        needed_fn: The checks its `healthy` rests on, for the run's profile.
        time_needs_fn: Seconds spent on purpose beyond one outside call per cell (sampling, settling).
        default_scenario: The drill `runbook demo <slug>` runs.
        number: Its section in the runbook spec (docs/runbooks.md); lists are in this order.
        scope: How the review names what it covers (defaults to its channels).
        demo_parameters: Parameters a demo run sets (short sampling intervals).
        scenario_defaults: What its scenarios share (channel, provider, queues), under each scenario file.
        notebook_path: Its notebook (defaults to `notebooks/<slug>.ipynb` in the checkout).
        scenarios_path: Its scenario folder (defaults to `sandbox/scenarios/<slug>/`).
    """

    slug: str
    title: str
    channels: tuple[str, ...]
    params_cls: type[CommonParams]
    actions: tuple[str, ...]
    causes: Mapping[str, str]
    dependencies: tuple[str, ...]
    needed_fn: Callable[[RunContext], list[Needed]]
    time_needs_fn: Callable[[Any, float], dict[str, float]]
    default_scenario: str
    number: int = 99
    scope: str = ""
    demo_parameters: Mapping[str, object] = field(default_factory=dict)
    scenario_defaults: Mapping[str, Any] = field(default_factory=dict)
    notebook_path: Path | None = None
    scenarios_path: Path | None = None

    def __post_init__(self) -> None:
        if not self.slug.isidentifier():
            raise ValueError(f"a runbook slug must be a Python identifier, not {self.slug!r}")
        clash = [a for a in self.actions if a.startswith(UNDO_PREFIX)]
        if clash:
            raise ValueError(f"{self.slug}: action names may not start with {UNDO_PREFIX!r}: {', '.join(clash)}")
        from runbooklib.settings import dependency_labels

        known = dependency_labels()
        unknown = [d for d in self.dependencies if d not in known]
        if unknown:
            raise ValueError(f"{self.slug}: unknown dependencies {', '.join(unknown)}; known: {', '.join(known)}")

    @property
    def module(self) -> ModuleType:
        """The module that declares this runbook (its checks, rules and actions)."""
        return sys.modules[self.params_cls.__module__]

    @property
    def label(self) -> str:
        """What the runbook covers, for the review ("sms", "every channel (DLQ)")."""
        return self.scope or ", ".join(self.channels)

    @property
    def approvable(self) -> tuple[str, ...]:
        """Every name an approval may carry: each action and its undo."""
        return (*self.actions, *(UNDO_PREFIX + a for a in self.actions))

    def needed(self, ctx: RunContext) -> list[Needed]:
        """The checks this runbook's `healthy` rests on, for the run's profile."""
        return self.needed_fn(ctx)

    def time_needs(self, params: CommonParams, slot: float) -> dict[str, float]:
        """Seconds this runbook spends on purpose beyond one outside call per cell (sampling, settling), each
        outside call allowed `slot` seconds: part of a headless run's time budget."""
        return self.time_needs_fn(params, slot)

    def load_scenario(self, name_or_path: str | Path) -> Scenario:
        """A scenario by name, or from a file, with this runbook's scenario defaults."""
        from runbooklib.sandbox.scenario import Scenario

        return Scenario.load(self.scenario_path(str(name_or_path)), defaults=dict(self.scenario_defaults))

    @property
    def notebook(self) -> Path:
        return self.notebook_path or project_root() / "notebooks" / f"{self.slug}.ipynb"

    @property
    def scenarios_dir(self) -> Path:
        return self.scenarios_path or SCENARIOS_DIR / self.slug

    def scenarios(self) -> list[str]:
        return sorted(p.stem for p in self.scenarios_dir.glob("*.yaml"))

    def scenario_path(self, name: str) -> Path:
        if name.endswith((".yaml", ".yml")):
            return Path(name)
        path = self.scenarios_dir / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown scenario {name!r} for {self.slug}; known: {', '.join(self.scenarios())}",
                              parameter="scenario")
        return path


RunbookSpec = Runbook
"""The name callers used before runbooks declared themselves."""


def _candidates() -> dict[str, str]:
    """slug → module for every place a runbook may be declared (built-in first, then `$RUNBOOK_MODULES`)."""
    package = importlib.import_module(RUNBOOKS_PACKAGE)
    found = {info.name: f"{RUNBOOKS_PACKAGE}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
             if not info.name.startswith("_")}
    for name in filter(None, (part.strip() for part in os.environ.get(MODULES_ENV, "").split(","))):
        found[name.rpartition(".")[2]] = name
    return found


def _declared(module_name: str) -> Runbook | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import runbook module {module_name!r} (from ${MODULES_ENV}): {exc}",
                          parameter="runbook") from exc
    declared = getattr(module, "RUNBOOK", None)
    return declared if isinstance(declared, Runbook) else None


def slugs() -> tuple[str, ...]:
    """The slugs of every declared runbook, in the spec's order."""
    return tuple(r.slug for r in all_runbooks())


def get(slug: str) -> Runbook:
    """The runbook called `slug` (importing only its module), or a ConfigError listing the known ones."""
    module_name = _candidates().get(slug)
    declared = _declared(module_name) if module_name else None
    if declared is None or declared.slug != slug:
        raise ConfigError(f"unknown runbook {slug!r}; runbooks: {', '.join(slugs())}", parameter="runbook")
    return declared


def all_runbooks() -> list[Runbook]:
    """Every declared runbook, in the spec's order (then by slug)."""
    found = (_declared(m) for m in _candidates().values())
    return sorted((r for r in found if r is not None), key=lambda r: (r.number, r.slug))
