"""Reading the YAML files users hand us (parameter files, environment profiles, drill scenarios) safely.

Safe loading only, a size cap, UTF-8 required, and no aliases: an alias (`*name`) can expand a small
file into gigabytes (a "billion laughs" bomb), and nothing we read needs one. Errors name the file
and say what is allowed; they never quote the file's expanded content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from runbooklib.errors import ConfigError

MAX_BYTES = 1_000_000


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases before anything is expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in this file", mark)
        return super().compose_node(parent, index)


def load_yaml(path: Path, what: str, *, parameter: str | None = None) -> Any:
    """The parsed content of the YAML file at `path` (`what` names it in errors, e.g. "parameter file")."""
    try:
        if not path.is_file():
            raise ConfigError(f"{what} {str(path)!r} does not exist or is not a file", parameter=parameter)
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{what} {str(path)!r} is {size:,} bytes; at most {MAX_BYTES:,} are read",
                              parameter=parameter)
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start} cannot be read)",
                          parameter=parameter) from exc
    except (OSError, ValueError) as exc:  # permission, a name too long, a NUL in the path
        raise ConfigError(f"{what} {str(path)[:200]!r} cannot be read: {exc.__class__.__name__}",
                          parameter=parameter) from exc
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML{where}: {problem}", parameter=parameter) from exc
    except RecursionError as exc:
        raise ConfigError(f"{what} {str(path)!r} nests too deeply to read", parameter=parameter) from exc
    except (ValueError, OverflowError) as exc:  # e.g. an integer of thousands of digits
        raise ConfigError(f"{what} {str(path)!r} holds a value that cannot be read: {str(exc)[:120]}",
                          parameter=parameter) from exc
