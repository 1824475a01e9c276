"""Post-incident material: the runbook's checklist, filled with what the data already answers."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from runbooklib.redact import REDACTOR


@dataclass
class Checklist:
    """A titled list of (item, answer from the data, done?) — `done` means the data shows it is in order."""

    title: str
    items: list[tuple[str, str, bool]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return REDACTOR.mapping({"title": self.title,
                              "items": [{"item": i, "answer": a, "ok": ok} for i, a, ok in self.items]})

    def to_markdown(self) -> str:
        lines = [f"### {self.title}"]
        for item, answer, ok in self.items:
            lines.append(f"- [{'x' if ok else ' '}] **{item}** — {REDACTOR.text(answer)}")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<li>{'☑' if ok else '☐'} <b>{html.escape(item)}</b> — {html.escape(REDACTOR.text(answer))}</li>"
            for item, answer, ok in self.items
        )
        return f"<div><b>{html.escape(self.title)}</b><ul style='list-style:none'>{rows}</ul></div>"
