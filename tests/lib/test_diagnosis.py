from __future__ import annotations

import pytest

from runbooklib.diagnosis import Match, Needed, Rule, diagnose
from runbooklib.results import CheckResult

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

NEEDED = [Needed("rate", "the failure rate", "SELECT …"), Needed("smtp", "the SMTP server", "telnet …")]


def _findings(**statuses: str) -> dict[str, CheckResult]:
    return {name: CheckResult(name, name.upper(), status, f"{name} is {status}") for name, status in statuses.items()}


@pytest.mark.parametrize("status", ["error", "skipped"])
def test_a_needed_check_that_could_not_run_is_never_healthy(status: str) -> None:
    d = diagnose("rb", [Rule("a", lambda: None)], CAUSES, incident_present=False, needed=NEEDED,
                 findings=_findings(rate="ok", smtp=status))
    assert (d.cause, d.outcome) == ("inconclusive", "inconclusive")
    assert [(u["check"], u["needed"], u["by_hand"]) for u in d.unchecked] == [("smtp", True, "telnet …")]
    assert "the SMTP server" in d.explanation


def test_a_needed_check_whose_cell_did_not_run_is_named() -> None:
    d = diagnose("rb", [], CAUSES, incident_present=False, needed=NEEDED, findings=_findings(rate="ok"))
    assert d.cause == "inconclusive" and d.unchecked[0]["status"] == "not run"


def test_an_established_cause_wins_and_lists_what_could_not_be_checked() -> None:
    d = diagnose("rb", [Rule("a", lambda: Match("535 from SMTP"))], CAUSES, incident_present=True, needed=NEEDED,
                 findings=_findings(rate="error", smtp="fail"))
    assert (d.cause, d.outcome) == ("a", "cause")
    assert [u["check"] for u in d.unchecked] == ["rate"]
    assert "could not check: the failure rate" in d.headline


def test_a_failed_needed_check_without_a_rule_is_unknown_not_healthy() -> None:
    d = diagnose("rb", [Rule("a", lambda: None)], CAUSES, incident_present=False, needed=NEEDED,
                 findings=_findings(rate="ok", smtp="fail"))
    assert d.cause == "unknown" and any("SMTP" in e for e in d.evidence)


def test_healthy_only_when_every_needed_check_passed_and_other_errors_are_said() -> None:
    found = {**_findings(rate="ok", smtp="warn"), **_findings(backup="error")}
    d = diagnose("rb", [Rule("a", lambda: None)], CAUSES, incident_present=False, needed=NEEDED, findings=found)
    assert d.cause == "healthy" and d.outcome == "healthy"
    assert [(u["check"], u["needed"]) for u in d.unchecked] == [("backup", False)]
    assert "could not check: BACKUP" in d.headline


def test_the_card_of_an_inconclusive_verdict_is_not_green() -> None:
    d = diagnose("rb", [], CAUSES, incident_present=False, needed=NEEDED, findings={})
    card = d._repr_html_()
    assert "#1a7f37" not in card and "Inconclusive — no all-clear" in card and "Could not check" in card
