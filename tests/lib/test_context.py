"""The notebook entry point: strict namespace validation, and the in-kernel demo sandbox."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbooklib import context
from runbooklib.context import namespace_parameters, start
from runbooklib.errors import ConfigError

SLUG = "email_provider_failure"


@pytest.fixture
def kernel_sandboxes() -> Iterator[None]:
    yield
    for box in context._KERNEL_SANDBOXES.values():
        box.stop()
    context._KERNEL_SANDBOXES.clear()


def test_namespace_parameters_skip_modules_functions_and_private_names() -> None:
    ns = {"window": "1h", "math": math, "f": lambda: 1, "_hidden": 1, "In": [], "Params": dict}
    assert namespace_parameters(ns) == {"window": "1h"}


def test_a_stray_global_is_an_unknown_parameter() -> None:
    with pytest.raises(ConfigError, match="windw: unknown parameter"):
        start(SLUG, {"windw": "2h"})


def test_missing_sandbox_file_is_named() -> None:
    with pytest.raises(ConfigError, match="written by `runbook demo`"):
        start(SLUG, {"sandbox": "/nonexistent/sandbox.json"})


def test_demo_without_a_sandbox_starts_one_in_the_kernel_and_reuses_it(kernel_sandboxes: None, tmp_path: Path) -> None:
    first = start(SLUG, {"scenario": "healthy", "run_dir": str(tmp_path / "a")})
    second = start(SLUG, {"scenario": "healthy", "run_dir": str(tmp_path / "b")})
    assert first.sandbox is not None and first.sandbox is second.sandbox
    assert first.profile.platform_api_url == first.sandbox.platform.url
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["status"] == "running" and summary["scenario"] == "healthy"
    first.close()
    second.close()


def test_measurements_are_kept_in_the_summary_and_unknown_metrics_refused(kernel_sandboxes: None,
                                                                          tmp_path: Path) -> None:
    ctx = start(SLUG, {"scenario": "healthy", "run_dir": str(tmp_path)})
    ctx.measure("queue_depth", 12, scope="email", basis="sample")
    with pytest.raises(ValueError, match="unknown metric 'queue_waiting'; one of failure_rate"):
        ctx.measure("queue_waiting", 1, scope="email", basis="sample")
    ctx.write_summary()
    kept = json.loads((tmp_path / "summary.json").read_text())["measurements"]
    assert [(m["metric"], m["scope"], m["value"]) for m in kept] == [("queue_depth", "email", 12.0)]
    ctx.close()
