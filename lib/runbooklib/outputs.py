"""Every output a kernel publishes is redacted as it is made, whatever its kind.

`redact_kernel_outputs()` (called by `context.start`) puts the process-wide redactor in front of the
kernel's messaging session, so that each message it sends to Jupyter or papermill — printed text
(`stream`), rich displays and cell results in every mime type (`display_data`, `execute_result`,
`update_display_data`: text/plain, text/html, application/json …), exceptions and tracebacks
(`error`, and the `execute_reply` of a failed cell) — is masked before it leaves the process. Images
are spared by their mime type when their bytes really are images. Nothing saved later depends on
the final scrub alone. Outside a kernel (plain Python, tests) it does nothing.
"""

from __future__ import annotations

from typing import Any

from runbooklib.redact import REDACTOR

REDACTED = {"stream", "display_data", "execute_result", "update_display_data", "error", "execute_reply"}
"""The message types that carry output."""


def redact_content(kind: str, content: Any) -> Any:
    """A message's content with every output field masked (by structure, as a saved notebook would be)."""
    if not isinstance(content, dict) or kind not in REDACTED:
        return content
    return REDACTOR.output(content)


def redact_kernel_outputs() -> bool:
    """Redact every output this kernel sends from now on; True when a kernel was found (idempotent)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    session = getattr(getattr(shell, "kernel", None), "session", None)
    if session is None:
        return False
    if getattr(session, "_runbook_redacting", False):
        return True
    original = session.send

    def send(stream: Any, msg_or_type: Any, content: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(msg_or_type, dict):
            kind = str(msg_or_type.get("msg_type") or (msg_or_type.get("header") or {}).get("msg_type") or "")
            if kind in REDACTED:
                msg_or_type = {**msg_or_type, "content": redact_content(kind, msg_or_type.get("content"))}
        elif isinstance(msg_or_type, str):
            content = redact_content(msg_or_type, content)
        return original(stream, msg_or_type, content, *args, **kwargs)

    session.send = send
    session._runbook_redacting = True
    return True
