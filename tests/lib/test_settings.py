from __future__ import annotations

from pathlib import Path

import pytest

from runbooklib.endpoints.ses import SesEndpoint
from runbooklib.endpoints.smtp import SmtpEndpoint
from runbooklib.errors import ConfigError
from runbooklib.redact import REDACTOR
from runbooklib.settings import load_profiles, register_profile_secrets, secret

EXAMPLE = Path(__file__).resolve().parents[2] / "params" / "environments.example.yaml"


def test_example_profiles_load() -> None:
    profiles = load_profiles(str(EXAMPLE))
    assert set(profiles) == {"demo", "production"}
    prod = profiles["production"]
    assert prod is not None
    smtp = prod.endpoint(SmtpEndpoint, "smtp")
    assert smtp is not None and prod.endpoint(SesEndpoint, "ses") is not None
    assert smtp.verify_tls is True and prod.provider_kind("smtp_backup") == "smtp_backup"
    with pytest.raises(TypeError, match="holds SmtpEndpoint, not SesEndpoint"):
        prod.endpoint(SesEndpoint, "smtp")
    assert prod.platform_api_token_env == "LINEUP_API_TOKEN"


def test_without_a_file_only_demo_exists() -> None:
    assert load_profiles("") == {"demo": None}


@pytest.mark.parametrize(("body", "words"), [
    ("prod:\n  platform_api: {url: x, token_env: T}\n  smpt: {host: a}\n", "unknown keys ['smpt']"),
    ("prod:\n  platform_api: {url: x}\n", "needs 'url' and 'token_env'"),
    ("prod:\n  platform_api: {url: 'https://x.test', token_env: T}\n  smtp: {host: a, security: tls}\n",
     "prod.smtp.security: 'tls'; allowed: starttls, ssl, none"),
    ("demo:\n  platform_api: {url: x, token_env: T}\n", "reserved"),
    ("- a\n- b\n", "must map profile names"),
])
def test_bad_profiles_say_what_is_wrong(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "envs.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        load_profiles(str(path))


def test_missing_file_names_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_profiles(str(tmp_path / "nope.yaml"))
    assert info.value.parameter == "environments_file"


def test_secret_names_the_variable_when_unset() -> None:
    with pytest.raises(ConfigError, match=r"\$LINEUP_API_TOKEN, which is not set"):
        secret("LINEUP_API_TOKEN", what="Lineup API token")


def test_secrets_read_or_named_are_registered_for_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-pass-registered-1")
    monkeypatch.setenv("RUNBOOK_DATABASE_URL", "postgresql://ro:db-pass-registered-2@db:5432/lineup")
    profile = load_profiles(str(EXAMPLE))["production"]
    assert profile is not None
    register_profile_secrets(profile)
    assert "smtp-pass-registered-1" in REDACTOR.secrets
    assert "db-pass-registered-2" in REDACTOR.secrets
    assert "db-pass-registered-2" not in REDACTOR.text("postgresql://ro:db-pass-registered-2@db:5432/lineup")


@pytest.mark.parametrize(("section", "message"), [
    ("smtp: {host: h, port: '587'}", "envs.yaml:prod.smtp.port: expected a whole number, got text '587'"),
    ("smtp: {host: h, security: tls}", "envs.yaml:prod.smtp.security: 'tls'; allowed: starttls, ssl, none"),
    ("whatsapp: {access_token_env: W}", "envs.yaml:prod.whatsapp: 'waba_id', 'phone_number_id' are required"),
    ("whatsapp: {access_token_env: W, waba_id: x1, phone_number_id: '1'}",
     "envs.yaml:prod.whatsapp.waba_id must be the numeric id as text"),
])
def test_a_bad_section_value_is_named_once_with_where_it_is(tmp_path: Path, section: str, message: str) -> None:
    path = tmp_path / "envs.yaml"
    path.write_text(f"prod:\n  platform_api: {{url: 'https://x.test', token_env: T}}\n  {section}\n")
    with pytest.raises(ConfigError) as caught:
        load_profiles(str(path))
    text = str(caught.value)
    assert text.startswith(str(path)) and text.endswith(message.split("envs.yaml")[1]) or message in text
    assert text.count(str(path)) == 1 and text.count("prod.") == 1, text
