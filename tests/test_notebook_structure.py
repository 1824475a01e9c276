"""Notebooks in git: parameters first and matching the lib, sections in order, thin, outputs stripped."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest

from runbooklib import catalog
from runbooklib.params import declared_parameters

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SECTIONS = ["Symptoms", "Checks", "Diagnosis", "Mitigation (gated)", "Recovery confirmation", "Post-incident"]
SDK_MODULES = {"boto3", "botocore", "smtplib", "httpx", "sqlalchemy", "psycopg", "twilio", "redis", "bullmq",
               "requests", "pandas", "matplotlib"}
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.*\b(FROM|INTO|SET)\b", re.IGNORECASE | re.DOTALL)


def load(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text())


def code_cells(nb: dict) -> list[str]:  # type: ignore[type-arg]
    """Code cells after the parameters cell."""
    return ["".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", [])]


def test_every_runbook_has_its_notebook() -> None:
    assert {p.stem for p in NOTEBOOKS} == set(catalog.slugs())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_first_and_matches_the_params_class(path: Path) -> None:
    nb = load(path)
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert "parameters" in first["metadata"].get("tags", [])
    declared = []
    for node in ast.parse("".join(first["source"])).body:
        assert isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name), "one `name: type = value` a line"
        declared.append((node.target.id, ast.unparse(node.annotation), ast.literal_eval(node.value)))  # type: ignore[arg-type]
    expected = [(p.name, p.declared, p.default) for p in declared_parameters(catalog.get(path.stem).params_cls)]
    assert declared == expected
    lines = "".join(first["source"]).splitlines()
    assert all("  # " in line for line in lines), "every parameter has a help comment"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_sections_mirror_the_spec_in_order(path: Path) -> None:
    headings = [line[3:].strip() for c in load(path)["cells"] if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    assert headings == SECTIONS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_and_run_metadata_are_stripped(path: Path) -> None:
    nb = load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb["metadata"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
        assert "papermill" not in cell["metadata"]
        assert set(cell["metadata"]) <= {"tags"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_thin(path: Path) -> None:
    for source in code_cells(load(path)):
        tree = ast.parse(source)
        for node in ast.walk(tree):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.For | ast.While
                                  | ast.ListComp | ast.DictComp | ast.Lambda), f"logic belongs in the lib: {source!r}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not {n.split(".")[0] for n in names} & SDK_MODULES, f"SDK import in a notebook: {source!r}"
        assert not SQL.search(source), f"SQL in a notebook cell: {source!r}"
        assert len(source.splitlines()) <= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_code_cell_after_the_parameters_is_explained(path: Path) -> None:
    cells = load(path)["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and i > 0 and "parameters" not in cell["metadata"].get("tags", []):
            previous = [c for c in cells[:i] if c["cell_type"] == "markdown"]
            assert previous, "a Markdown cell comes before the code"


def test_make_strip_restores_a_notebook_saved_from_jupyter(tmp_path: Path) -> None:
    """`make strip` turns a notebook as Jupyter and papermill save it back into the one in git."""
    source = ROOT / "notebooks" / "email_provider_failure.ipynb"
    saved = load(source)
    saved["metadata"]["papermill"] = {"parameters": {"incident": "INC-9"}, "duration": 3.2}
    saved["metadata"]["widgets"] = {"state": {}}
    for n, cell in enumerate(saved["cells"]):
        cell["metadata"].update(papermill={"status": "completed"}, collapsed=False, jupyter={"source_hidden": True})
        if cell["cell_type"] == "code":
            cell["metadata"]["execution"] = {"iopub.execute_input": "2026-12-02T03:00:00Z"}
            cell.update(execution_count=n, outputs=[{"output_type": "stream", "name": "stdout", "text": ["x\n"]}])
    dirty = tmp_path / "saved.ipynb"
    dirty.write_text(json.dumps(saved))
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "strip", f"NOTEBOOKS={dirty}"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert load(dirty) == load(source)
