"""The runbooks this package knows: slug → notebook, parameters, actions, causes and sandbox scenarios."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from runbooklib.errors import ConfigError
from runbooklib.params import CommonParams

if TYPE_CHECKING:
    from runbooklib.context import RunContext
    from runbooklib.diagnosis import Needed
    from runbooklib.sandbox.scenario import Scenario

PACKAGE_DIR = Path(__file__).resolve().parent
SCENARIOS_DIR = PACKAGE_DIR / "sandbox" / "scenarios"
SLUGS = ("email_provider_failure", "sms_delivery_failure", "whatsapp_delivery_failure", "high_retry_volume")
"""Runbooks implemented so far (the spec has four; see DESIGN.md)."""


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
class RunbookSpec:
    """Everything the CLI, the run context and tests need to know about one runbook."""

    slug: str
    title: str
    module: ModuleType

    @property
    def params_cls(self) -> type[CommonParams]:
        cls: type[CommonParams] = self.module.Params
        return cls

    @property
    def actions(self) -> tuple[str, ...]:
        names: tuple[str, ...] = self.module.ACTIONS
        return names

    @property
    def causes(self) -> dict[str, str]:
        causes: dict[str, str] = self.module.CAUSES
        return causes

    @property
    def dependencies(self) -> tuple[str, ...]:
        """The outside services this runbook uses (see `settings.DEPENDENCY_LABELS`)."""
        names: tuple[str, ...] = self.module.DEPENDENCIES
        return names

    def needed(self, ctx: RunContext) -> list[Needed]:
        """The checks this runbook's `healthy` rests on, for the run's profile."""
        out: list[Needed] = self.module.needed(ctx)
        return out

    def time_needs(self, params: CommonParams, slot: float) -> dict[str, float]:
        """Seconds this runbook spends on purpose beyond one outside call per cell (sampling, settling), each
        outside call allowed `slot` seconds: part of a headless run's time budget."""
        needs: dict[str, float] = self.module.time_needs(params, slot)
        return needs

    @property
    def default_scenario(self) -> str:
        name: str = self.module.DEFAULT_SCENARIO
        return name

    @property
    def scenario_defaults(self) -> dict[str, Any]:
        """What this runbook's scenarios share (channel, provider, queues), under each scenario file."""
        return dict(getattr(self.module, "SCENARIO_DEFAULTS", {}))

    def load_scenario(self, name_or_path: str | Path) -> Scenario:
        """A scenario by name, or from a file, with this runbook's scenario defaults."""
        from runbooklib.sandbox.scenario import Scenario

        return Scenario.load(self.scenario_path(str(name_or_path)), defaults=self.scenario_defaults)

    @property
    def demo_parameters(self) -> dict[str, object]:
        return dict(getattr(self.module, "DEMO_PARAMETERS", {}))

    @property
    def notebook(self) -> Path:
        return project_root() / "notebooks" / f"{self.slug}.ipynb"

    @property
    def scenarios_dir(self) -> Path:
        return SCENARIOS_DIR / self.slug

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


def get(slug: str) -> RunbookSpec:
    """The runbook called `slug`, or a ConfigError listing the known ones."""
    if slug not in SLUGS:
        raise ConfigError(f"unknown runbook {slug!r}; runbooks: {', '.join(SLUGS)}", parameter="runbook")
    module = importlib.import_module(f"runbooklib.runbooks.{slug}")
    return RunbookSpec(slug=slug, title=module.TITLE, module=module)


def all_runbooks() -> list[RunbookSpec]:
    return [get(s) for s in SLUGS]
