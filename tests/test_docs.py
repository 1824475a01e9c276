"""Every cause code a runbook can name is documented; the assumed endpoints are written down."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbooklib import catalog

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("slug", catalog.slugs())
def test_cause_codes_are_documented(slug: str) -> None:
    text = (ROOT / "docs" / "cause-codes.md").read_text()
    section = text.split(f"## {slug}", 1)[1].split("\n## ", 1)[0]
    for cause in catalog.get(slug).causes:
        assert f"| `{cause}` |" in section, f"{cause} is not in docs/cause-codes.md"


def test_assumed_endpoints_are_listed() -> None:
    text = (ROOT / "docs" / "assumed-endpoints.md").read_text()
    assert "GET /api/v1/communication/channels/{channel}?tenant_id=" in text


def test_the_readme_reliability_table_is_the_fault_matrix() -> None:
    """Every fault × runbook of the matrix is in the README's table with the verdict the matrix expects (the table
    is written from the matrix's own results: `python -m tests.faults.report --readme`)."""
    from tests.faults.matrix import ALL, FAULTS

    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- fault-matrix:begin -->", 1)[1].split("<!-- fault-matrix:end -->", 1)[0]
    rows = {line.split("(`", 1)[1].split("`)", 1)[0]: [c.strip() for c in line.strip("|").split("|")[2:]]
            for line in table.splitlines() if line.startswith("|") and "(`" in line}
    assert set(rows) == {f.name for f in FAULTS}
    for fault in FAULTS:
        for slug, cell in zip(ALL, rows[fault.name], strict=True):
            expected = fault.expected(slug) if slug in fault.runbooks else "—"
            assert cell.split(" (")[0] == expected, (fault.name, slug, cell)
            assert "✗" not in cell and "healthy" not in cell
    assert "0 ended `healthy`, 0 crashed, 0 went past their time budget" in table


def test_every_document_the_readme_and_docs_point_to_is_in_the_repository() -> None:
    """A clone has every page it is sent to: no `../` paths, and every `docs/…`/Markdown link resolves."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "../shared" not in text, f"{page.name} points outside the repository"
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", text):
            if not (page.parent / target).is_file():
                missing.append(f"{page.name} → {target}")
        for target in re.findall(r"`(docs/[\w.-]+\.md)`", text):
            if not (ROOT / target).is_file():
                missing.append(f"{page.name} → {target}")
    assert not missing
    spec = (ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    for runbook in catalog.all_runbooks():  # each runbook's `number` is its section of the spec
        assert f"### {runbook.number}. {runbook.title}" in spec


def test_the_cause_code_tables_are_what_the_code_declares() -> None:
    """Thresholds, error class → cause, provider state → cause and action → causes in docs/cause-codes.md are written
    from the code (`python -m tests.docs_tables --write`); a change to either without the other fails here."""
    from tests.docs_tables import PAGE, sections, written

    assert written(PAGE.read_text(encoding="utf-8")) == sections()


def test_the_scenario_format_page_names_every_key_a_scenario_may_set() -> None:
    from runbooklib.sandbox.scenario import DEFAULTS

    text = (ROOT / "docs" / "scenarios.md").read_text()
    for section, keys in DEFAULTS.items():
        if isinstance(keys, dict):
            for key in keys:
                assert f"{key}:" in text or f"{key}" in text, f"{section}.{key} is not in docs/scenarios.md"
        assert f"{section}" in text, section
