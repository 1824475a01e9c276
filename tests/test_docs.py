"""Every cause code a runbook can name is documented; the assumed endpoints are written down."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbooklib import catalog

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("slug", catalog.SLUGS)
def test_cause_codes_are_documented(slug: str) -> None:
    text = (ROOT / "docs" / "cause-codes.md").read_text()
    section = text.split(f"## {slug}", 1)[1].split("\n## ", 1)[0]
    for cause in catalog.get(slug).causes:
        assert f"| `{cause}` |" in section, f"{cause} is not in docs/cause-codes.md"


def test_assumed_endpoints_are_listed() -> None:
    text = (ROOT / "docs" / "assumed-endpoints.md").read_text()
    assert "GET /api/v1/communication/channels/{channel}?tenant_id=" in text
