"""Working evidence is declared: a cell that needs what no earlier cell produced is told which must run first."""

from __future__ import annotations

import pytest

from runbooklib.evidence import Evidence, Key, NotYet

FRAME: Key[list[int]] = Key("tenant_frame", "check_tenant_split", "the window's failures per tenant")


def test_evidence_not_yet_produced_names_what_must_run_first() -> None:
    store = Evidence()
    assert store.find(FRAME) is None and not store.has(FRAME)
    with pytest.raises(NotYet, match="the window's failures per tenant is not on record in this run: "
                                     r"check_tenant_split must run \(and succeed\) first") as info:
        store.get(FRAME)
    assert info.value.key is FRAME
    assert store.put(FRAME, [3, 1]) == [3, 1] and store.get(FRAME) == [3, 1]
    store.drop(FRAME)
    assert not store.has(FRAME)


def test_two_keys_may_not_share_a_name() -> None:
    store = Evidence()
    store.put(FRAME, [1])
    with pytest.raises(ValueError, match="two keys are named 'tenant_frame'"):
        store.put(Key("tenant_frame", "check_other", "something else"), [2])
