"""The tables of docs/cause-codes.md that the code declares: thresholds, error class → cause, provider state →
cause, and action → the causes it can fix. Written from the code, so the page cannot drift from it.

    python -m tests.docs_tables            # print the tables
    python -m tests.docs_tables --write    # and put them into docs/cause-codes.md between their markers

`tests/test_docs.py` checks that the page holds exactly what this prints.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import sys
from pathlib import Path

from runbooklib import catalog, thresholds

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cause-codes.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def threshold_rows() -> list[tuple[str, str, str]]:
    """(name, value, what it means) for every constant of `runbooklib.thresholds`, in the module's order."""
    tree = ast.parse(inspect.getsource(thresholds))
    docs: dict[str, str] = {}
    order: list[str] = []
    body = tree.body
    for i, node in enumerate(body):
        targets = []
        if isinstance(node, ast.Assign):
            for target in node.targets:
                targets += [t.id for t in (target.elts if isinstance(target, ast.Tuple) else [target])
                            if isinstance(t, ast.Name)]
        if not targets:
            continue
        after = body[i + 1] if i + 1 < len(body) else None
        doc = (after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) else "")
        for name in targets:
            order.append(name)
            docs[name] = " ".join(str(doc).split())
    return [(name, f"{getattr(thresholds, name):g}", docs[name]) for name in order]


def thresholds_table() -> str:
    rows = ["| threshold | value | what it decides |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {value} | {doc or '(with the one before)'} |" for name, value, doc in threshold_rows()]
    return "\n".join(rows)


def conclusions_tables(slug: str) -> str:
    spec = catalog.get(slug)
    conclusions = getattr(spec.module, "CONCLUSIONS", None)
    out: list[str] = []
    if conclusions is not None:
        out += ["Every error class the channel's classifier gives (`lib/runbooklib/errorcodes.py`) names a cause "
                "(`other`, an error nothing matches, names none: it is cited by `unknown`):", "",
                "| error class | cause |", "| --- | --- |"]
        out += [f"| `{cls}` | `{cause}` |" for cls, cause in sorted(conclusions.classes.items())]
        out += ["", "Every state a provider check reports that is not OK, and what it concludes (each provider module "
                "declares its states in `STATES`; noted states are shown beside the verdict and cited by `unknown`):",
                "", "| check | state | status | concludes |", "| --- | --- | --- | --- |"]
        for state in conclusions.states:
            for status in state.statuses:
                if state.cause is None:
                    what = f"noted — {state.why}"
                elif state.needs_failures:
                    what = f"`{state.cause}` while failures are elevated (else noted)"
                else:
                    what = f"`{state.cause}`"
                out.append(f"| `{state.check}` | `{state.classification}` | {status} | {what} |")
    mitigates = getattr(spec.module, "MITIGATES", {})
    if mitigates:
        out += ["", "| action | proposed only for |", "| --- | --- |"]
        out += [f"| `{action}` | {', '.join(f'`{c}`' for c in sorted(causes))} |" for action, causes in mitigates.items()]
    return "\n".join(out).strip("\n")


def sections() -> dict[str, str]:
    out = {"thresholds": thresholds_table()}
    for spec in catalog.all_runbooks():
        out[f"tables:{spec.slug}"] = conclusions_tables(spec.slug)
    return out


def written(text: str) -> dict[str, str]:
    """What the page holds between each pair of markers."""
    out = {}
    for name in sections():
        begin, end = markers(name)
        if begin in text and end in text:
            out[name] = text.split(begin, 1)[1].split(end, 1)[0].strip("\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write the tables into docs/cause-codes.md")
    args = parser.parse_args(argv)
    text = PAGE.read_text(encoding="utf-8")
    for name, table in sections().items():
        begin, end = markers(name)
        print(f"{begin}\n{table}\n{end}\n")
        if args.write:
            if begin not in text:
                raise SystemExit(f"{PAGE} has no {begin} marker")
            head, rest = text.split(begin, 1)
            text = f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}"
    if args.write:
        PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
