from __future__ import annotations

import pytest

from runbooklib.diagnosis import Match, Rule, diagnose

CAUSES = {"healthy": "", "a": "", "b": "", "unknown": ""}


def test_first_rule_that_holds_names_the_cause_and_others_are_listed() -> None:
    rules = [Rule("a", lambda: None), Rule("b", lambda: Match("b holds", ["ev1"])), Rule("a", lambda: Match("a too"))]
    d = diagnose("rb", rules, CAUSES, incident_present=True)
    assert (d.cause, d.explanation, d.evidence) == ("b", "b holds", ["ev1"])
    assert d.others == [{"cause": "a", "explanation": "a too"}]


@pytest.mark.parametrize(("present", "cause"), [(True, "unknown"), (False, "healthy")])
def test_no_rule_holds(present: bool, cause: str) -> None:
    d = diagnose("rb", [Rule("a", lambda: None)], CAUSES, incident_present=present, incident_evidence=["rate 40%"])
    assert d.cause == cause and d.evidence == ["rate 40%"]


def test_a_rule_for_an_undocumented_cause_is_a_bug() -> None:
    with pytest.raises(ValueError, match="not documented"):
        diagnose("rb", [Rule("zzz", lambda: None)], CAUSES, incident_present=False)
