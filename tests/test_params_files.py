"""Every parameter file in params/ validates against the runbooks it is meant for."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runbooklib import catalog
from runbooklib.params import validate
from runbooklib.settings import load_profiles

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params"


def check(slug: str, *files: str) -> None:
    spec = catalog.get(slug)
    raw: dict[str, object] = {}
    for name in files:
        raw.update(yaml.safe_load((PARAMS / name).read_text()) or {})
    if "environments_file" in raw:
        raw["environments_file"] = str(ROOT / str(raw["environments_file"]))
    profiles = load_profiles(str(raw.get("environments_file") or ""))
    validate(spec.params_cls, raw, actions=list(spec.approvable),
             environments=profiles, scenarios=spec.scenarios())


@pytest.mark.parametrize("slug", catalog.slugs())
def test_shared_files_fit_every_runbook(slug: str) -> None:
    check(slug, "production.example.yaml")
    check(slug, "demo.yaml")


@pytest.mark.parametrize("slug", catalog.slugs())
def test_each_runbook_has_its_own_example_file(slug: str) -> None:
    check(slug, "production.example.yaml", f"{slug}.example.yaml")
