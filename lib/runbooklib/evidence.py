"""What one cell hands to the next, declared: each piece of working evidence has a typed `Key` that names the
check (or step) producing it, so a cell that needs it says so, and a cell run too early is told what must run
first instead of drawing an empty chart or deciding on a silent default.

```python
TENANT_FRAME: Key[pd.DataFrame] = Key("tenant_frame", "check_tenant_split", "the failures per tenant")
ctx.evidence.put(TENANT_FRAME, frame)       # in check_tenant_split
frame = ctx.evidence.get(TENANT_FRAME)      # elsewhere: NotYet("... check_tenant_split must run ... first")
frame = ctx.evidence.find(TENANT_FRAME)     # where its absence is a decision of its own (None)
```

Working evidence lives in the kernel only (frames, clients, samples); what a record keeps is written by the
checks into `summary.json` and `evidence/`. Keys are declared beside the code that produces them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True)
class Key(Generic[T]):
    """One kind of working evidence: its name, the check or step that produces it, and what it is."""

    name: str
    produced_by: str
    what: str


class NotYet(LookupError):
    """A cell needs evidence that no earlier cell of this run produced: the message says which to run first."""

    def __init__(self, key: Key[Any]) -> None:
        super().__init__(f"{key.what} is not on record in this run: {key.produced_by} must run (and succeed) first")
        self.key = key


class Evidence:
    """The run's working evidence, by declared key."""

    def __init__(self, record: dict[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = {}
        self._keys: dict[str, Key[Any]] = {}
        self._record = record
        """Where what a value adds to the record's facts (`to_facts()`) is written as it is put (`ctx.facts`)."""

    def put(self, key: Key[T], value: T) -> T:
        known = self._keys.setdefault(key.name, key)
        if known != key:
            raise ValueError(f"two keys are named {key.name!r}: {known} and {key}")
        self._values[key.name] = value
        to_facts = getattr(value, "to_facts", None)
        if self._record is not None and callable(to_facts):
            self._record.update(to_facts())
        return value

    def get(self, key: Key[T]) -> T:
        """The value, or `NotYet` naming what must run first."""
        if key.name not in self._values:
            raise NotYet(key)
        return cast(T, self._values[key.name])

    def find(self, key: Key[T]) -> T | None:
        """The value, or None when nothing produced it yet."""
        return cast(T | None, self._values.get(key.name))

    def has(self, key: Key[Any]) -> bool:
        return key.name in self._values

    def drop(self, key: Key[Any]) -> None:
        self._values.pop(key.name, None)
