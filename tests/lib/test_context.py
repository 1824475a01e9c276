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


def _text_of(figure: object) -> str:
    return " ".join(t.get_text() for ax in figure.axes for t in ax.texts)  # type: ignore[attr-defined]


def test_a_chart_drawn_before_its_check_names_the_check_instead_of_drawing_nothing(kernel_sandboxes: None,
                                                                                 tmp_path: Path) -> None:
    """Out of order, as a responder clicking down a notebook might: each plot that draws a check's result says
    which check to run first; once that check ran, the same call draws the data."""
    from runbooklib.runbooks import email_provider_failure as email

    ctx = start(SLUG, {"scenario": "ses_daily_quota_exceeded", "run_dir": str(tmp_path / "run")})
    for plot, check in [(email.plot_top_errors, "check_top_errors"), (email.plot_tenant_split, "check_tenant_split"),
                        (email.plot_queue_trend, "check_queue_trend")]:
        assert f"run {check} first" in _text_of(plot(ctx)), plot.__name__
    early = email.check_top_errors(ctx)  # its classes are compared per message: the failure rate's totals first
    assert early.status == "error" and "check_failure_rate must run" in early.summary
    email.check_failure_rate(ctx)
    email.check_top_errors(ctx)
    drawn = email.plot_top_errors(ctx)
    assert "first" not in _text_of(drawn) and drawn.axes[0].patches  # bars, one per error
