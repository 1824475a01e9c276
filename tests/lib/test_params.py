from __future__ import annotations

from datetime import timedelta

import pytest

from runbooklib.errors import ConfigError
from runbooklib.params import Approval, coerce, declared_parameters, format_duration, parse_duration, validate
from runbooklib.runbooks.email_provider_failure import Params

ACTIONS = ["switch_email_provider", "send_test_email", "undo_switch_email_provider"]
ENVS = ["demo", "production"]


def check(**raw: object) -> Params:
    return validate(Params, raw, actions=ACTIONS, environments=ENVS, scenarios=["healthy", "smtp_unreachable"])


def problem(**raw: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check(**raw)
    return info.value


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)), ("2h30m", timedelta(hours=2, minutes=30)),
    ("1d", timedelta(days=1)), ("45s", timedelta(seconds=45)), (" 1H ", timedelta(hours=1)),
])
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "1x", "h", "60", "0m", "1h-5m", "1.5h", "m30"])
def test_bad_durations_are_refused_with_examples(text: str) -> None:
    with pytest.raises(ValueError, match="30m|zero"):
        parse_duration(text)


def test_defaults_validate_and_are_safe() -> None:
    params = check()
    assert params.environment == "demo" and params.dry_run is True and params.approve == ()
    assert params.window_delta == timedelta(hours=1)


def test_command_line_text_is_typed_by_declaration() -> None:
    params = check(dry_run="false", recovery_samples="7", tenant_id="0123",
                   approve=f"switch_email_provider@{'a' * 16},send_test_email@{'b' * 64}", operator="alice")
    assert params.dry_run is False
    assert params.recovery_samples == 7
    assert params.tenant_id == "0123"  # ids stay text: no 0123 -> 123
    assert params.approve == (f"switch_email_provider@{'a' * 16}", f"send_test_email@{'b' * 64}")


def test_unknown_parameter_is_an_error_with_a_suggestion() -> None:
    err = problem(windw="2h")
    assert err.parameter == "windw"
    assert "did you mean 'window'" in str(err)


@pytest.mark.parametrize(("raw", "parameter", "words"), [
    ({"dry_run": "maybe"}, "dry_run", "true or false"),
    ({"recovery_samples": "three"}, "recovery_samples", "whole number"),
    ({"recovery_samples": True}, "recovery_samples", "whole number"),
    ({"window": "1x"}, "window", "not a duration"),
    ({"baseline": "yesterday"}, "baseline", "not a duration"),
    ({"environment": "prod"}, "environment", "known: demo, production"),
    ({"approve": ["switch_provider"], "operator": "a"}, "approve", "no action named 'switch_provider'"),
    ({"approve": [f"switch_email_provider@{'a' * 16}"]}, "operator", "operator's name"),
    ({"approve": ["switch_email_provider@xyz"], "operator": "a"}, "approve", "16 hex characters"),
    ({"approve": [f"switch_email_provider@{'a' * 12}"], "operator": "a"}, "approve", "shorter prefixes are not accepted"),
    ({"approve": ["switch_email_provider@"], "operator": "a"}, "approve", "empty (an unset variable?)"),
    ({"approve": ["switch_email_provider@  "], "operator": "a"}, "approve", "empty (an unset variable?)"),
    ({"approve": ["switch_email_provider"], "operator": "a"}, "approve", "run with dry_run true first"),
    ({"approve": [f"switch_email_provider@{'a' * 16}", f"switch_email_provider@{'b' * 16}"], "operator": "a"},
     "approve", "approved more than once"),
    ({"approve": ["allow_unlocked@zzz"], "operator": "a"}, "approve", "takes no digest"),
    ({"incident": "INC 123/../x"}, "incident", "not an incident id"),
    ({"test_recipient": "not-an-address"}, "test_recipient", "one email address"),
    ({"recovery_samples": 0}, "recovery_samples", "between 1 and 60"),
    ({"scenario": "smtp_down"}, "scenario", "known: healthy, smtp_unreachable"),
])
def test_bad_parameters_name_the_parameter_and_what_is_allowed(raw: dict[str, object], parameter: str,
                                                               words: str) -> None:
    err = problem(**raw)
    assert err.parameter == parameter
    assert words in str(err)


def test_every_problem_is_reported_at_once() -> None:
    err = problem(windw="2h", dry_run="maybe", environment="staging")
    text = str(err)
    assert "windw" in text and "dry_run" in text and "staging" in text


def test_approval_digest_parsing() -> None:
    assert Approval.parse("switch_email_provider@3fa2c1d0e9ab") == Approval("switch_email_provider", "3fa2c1d0e9ab")
    assert Approval.parse("send_test_email").plan_digest is None


def test_coerce_rejects_lists_of_non_text() -> None:
    with pytest.raises(ValueError, match="list of names"):
        coerce("list", [1, 2])


def test_declared_parameters_follow_the_dataclass() -> None:
    names = [p.name for p in declared_parameters(Params)]
    assert names[:4] == ["environment", "environments_file", "incident", "operator"]
    assert "recovery_interval" in names
