"""Runbooks declare themselves: one kept outside `lib/` is listed, runs as a drill and compiles into a review,
and shared modules name no runbook."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runbooklib import catalog
from runbooklib.cli import main
from runbooklib.errors import ConfigError
from runbooklib.runs import EXIT_BAD_PARAMETERS, EXIT_DIAGNOSED

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib" / "runbooklib"
EXTRA = "tests.extra_runbook.email_bounce_watch"


@pytest.fixture
def extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test runbook registered the way an out-of-tree one is: its module named in `$RUNBOOK_MODULES`
    (and importable by the kernel)."""
    monkeypatch.setenv(catalog.MODULES_ENV, EXTRA)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def test_the_extra_runbook_is_listed_runs_as_a_drill_and_is_reviewed(extra: None, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert "email_bounce_watch" in catalog.slugs() and catalog.slugs()[:4] == (
        "email_provider_failure", "sms_delivery_failure", "whatsapp_delivery_failure", "high_retry_volume")
    assert main(["list"]) == 0
    assert re.search(r"^email_bounce_watch  —  Email Bounce Watch$", capsys.readouterr().out, re.M)

    runs = tmp_path / "runs"
    code = main(["demo", "email_bounce_watch", "--incident", "INC-EXT", "--no-progress", "--output", str(runs)])
    out = capsys.readouterr().out
    assert code == EXIT_DIAGNOSED, out
    assert "diagnosis: failures_elevated" in out and "scenario expects: failures_elevated ✓" in out
    [bundle] = (runs / "INC-EXT").iterdir()
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["runbook"] == "email_bounce_watch" and summary["diagnosis"]["cause"] == "failures_elevated"

    assert main(["review", "INC-EXT", "--output", str(runs)]) == 0
    review = (runs / "INC-EXT" / "review.md").read_text()
    assert "Email Bounce Watch" in review or "email_bounce_watch" in review
    assert "failures_elevated" in review


def test_nothing_in_lib_names_the_extra_runbook() -> None:
    assert not [p for p in LIB.rglob("*") if p.is_file() and p.suffix in {".py", ".yaml", ".md"}
                and "email_bounce_watch" in p.read_text(encoding="utf-8")]


def test_a_module_in_runbook_modules_that_cannot_be_imported_is_named(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(catalog.MODULES_ENV, "tests.extra_runbook.no_such_runbook")
    with pytest.raises(ConfigError, match=r"cannot import runbook module 'tests.extra_runbook.no_such_runbook'"):
        catalog.all_runbooks()
    assert main(["list"]) == EXIT_BAD_PARAMETERS
    assert "RUNBOOK_MODULES" in capsys.readouterr().err


def test_a_module_without_a_declaration_is_not_a_runbook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.MODULES_ENV, "tests.extra_runbook")  # a package that declares no RUNBOOK
    assert "extra_runbook" not in catalog.slugs()
    with pytest.raises(ConfigError, match="unknown runbook 'extra_runbook'; runbooks: email_provider_failure"):
        catalog.get("extra_runbook")


def test_shared_modules_name_no_runbook() -> None:
    """Each slug appears only in its own module (and its scenarios); shared code loops over declarations."""
    offenders = []
    for slug in catalog.slugs():
        for path in LIB.rglob("*.py"):
            if path.parent.name == "runbooks" and path.stem == slug:
                continue
            if slug in path.read_text(encoding="utf-8"):
                offenders.append(f"{path.relative_to(LIB)} names {slug}")
    assert not offenders


def test_a_declaration_refuses_an_action_named_like_an_undo() -> None:
    spec = catalog.get("email_provider_failure")
    with pytest.raises(ValueError, match="may not start with 'undo_'"):
        catalog.Runbook(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "actions": ("undo_x",)})
    with pytest.raises(ValueError, match="unknown dependencies smpt; known: database, platform_api, redis"):
        catalog.Runbook(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "dependencies": ("smpt",)})
    assert spec.approvable == ("switch_email_provider", "send_test_email", "undo_switch_email_provider",
                               "undo_send_test_email")


# -- Providers --------------------------------------------------------------------------------------
PROVIDER_OWN = ("endpoints/", "providers/", "runbooks/")
"""Where a provider may be named: its declaration, its client, the runbooks that use it."""
PROVIDER_OWN_FILES = {"channels.py", "errorcodes.py", "sandbox/standins.py", "sandbox/smtp.py"}
"""The channels' declarations (each names its usual provider), the providers' error dictionaries and the
stand-ins' implementations."""


def test_shared_modules_name_no_provider() -> None:
    """No shared module uses a provider's kind or profile section as a name, an attribute, a keyword or a string
    (a channel called like a provider, `whatsapp`, may be a string: it is the channel's queue and API name)."""
    import ast

    from runbooklib import channels, endpoints

    names = {p.kind for p in endpoints.providers()} | set(endpoints.sections())
    assert {"smtp", "smtp_backup", "ses", "twilio", "whatsapp"} <= names  # the scan looks for the real ones
    offenders = []
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB).as_posix()
        if rel.startswith(PROVIDER_OWN) or rel in PROVIDER_OWN_FILES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            named = (node.value if isinstance(node, ast.Constant) and isinstance(node.value, str)
                     and node.value not in channels.NAMES else
                     node.id if isinstance(node, ast.Name) else
                     node.attr if isinstance(node, ast.Attribute) else
                     node.arg if isinstance(node, ast.keyword) else None)
            if named in names:
                offenders.append(f"{rel}:{getattr(node, 'lineno', '?')} names {named}")
    assert not offenders


@pytest.fixture
def pager(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider kept outside `lib/`, registered the way an out-of-tree one is."""
    from runbooklib import endpoints

    monkeypatch.setenv(endpoints.MODULES_ENV, "tests.extra_provider.pager")
    monkeypatch.delenv("PAGER_KEY", raising=False)


def _profile(tmp_path: Path, pager_section: str) -> Path:
    path = tmp_path / "envs.yaml"
    path.write_text("prod:\n  platform_api: {url: 'https://lineup.test', token_env: LINEUP_API_TOKEN}\n"
                    f"  pager: {pager_section}\n")
    return path


def test_a_provider_kept_outside_lib_is_configured_checked_and_masked(pager: None, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from runbooklib.redact import REDACTOR
    from runbooklib.settings import dependency_labels, load_profiles, register_profile_secrets
    from tests.extra_provider.pager import PagerEndpoint

    profile = load_profiles(str(_profile(tmp_path, "{api_key_env: PAGER_KEY}")))["prod"]
    assert profile is not None and profile.endpoint(PagerEndpoint, "pager") == PagerEndpoint(api_key_env="PAGER_KEY")
    assert dependency_labels()["pager"] == "Pager API"
    assert profile.missing(("pager",)) == [{"dependency": "pager", "label": "Pager API",
                                            "why": "the pager API key is read from $PAGER_KEY, which is not set"}]
    monkeypatch.setenv("PAGER_KEY", "pager-key-4f1d2c9b8a7e")
    assert profile.missing(("pager",)) == []
    register_profile_secrets(profile)
    assert "pager-key-4f1d2c9b8a7e" not in REDACTOR.text("the pager said: bad key pager-key-4f1d2c9b8a7e")
    assert "pages@lineup.app" in REDACTOR.text("sent from pages@lineup.app")  # declared public: readable

    with pytest.raises(ConfigError, match=r"prod\.pager: 'api_key_env' is required"):
        load_profiles(str(_profile(tmp_path, "{base_url: 'https://pager.test'}")))
    with pytest.raises(ConfigError, match=r"prod\.pager: unknown keys \['key'\]; allowed: \['api_key_env'"):
        load_profiles(str(_profile(tmp_path, "{key: x}")))


def test_without_its_declaration_a_providers_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"prod: unknown keys \['pager'\]"):
        from runbooklib.settings import load_profiles

        load_profiles(str(_profile(tmp_path, "{api_key_env: PAGER_KEY}")))


def test_a_drill_of_a_runbook_that_depends_on_the_extra_provider_starts_its_stand_in(pager: None,
                                                                                     tmp_path: Path) -> None:
    import httpx

    from runbooklib.sandbox import Sandbox
    from runbooklib.settings import demo_profile
    from tests.extra_provider.pager import PagerEndpoint

    spec = catalog.get("email_provider_failure")
    with Sandbox(spec.load_scenario("healthy"), workdir=tmp_path / "box",
                 dependencies=("database", "platform_api", "pager")) as box:
        assert set(box.standins) == {"pager"} and box.labels() == ["Pager API", "Lineup API"]
        endpoint = demo_profile(box.describe()).endpoint(PagerEndpoint, "pager")
        assert endpoint is not None and httpx.get(endpoint.base_url, timeout=5).status_code == 200
        assert set(box.describe()["profile"]) == {"database_url_env", "platform_api", "pager", "timeouts"}
    drill = tmp_path / "pager_down.yaml"
    drill.write_text("pager: {mode: sideways}\n")
    with pytest.raises(ConfigError, match=r"pager\.mode: 'sideways'; allowed: ok, down"):
        spec.load_scenario(drill)


@pytest.mark.parametrize("slug", ["sms_delivery_failure", "high_retry_volume"])
def test_a_drill_starts_only_the_stand_ins_its_runbook_depends_on(slug: str, tmp_path: Path) -> None:
    from runbooklib.sandbox import Sandbox

    spec = catalog.get(slug)
    with Sandbox(spec.load_scenario("healthy"), workdir=tmp_path / "box", dependencies=spec.dependencies) as box:
        expected = {"twilio", "statuspage"} if "twilio" in spec.dependencies else set()
        assert set(box.standins) == expected
        assert not {"smtp", "smtp_backup", "ses"} & set(box.describe()["profile"])
        with pytest.raises(AttributeError, match="this sandbox runs no stand-in called 'smtp_backup'"):
            _ = box.smtp_backup


@pytest.mark.parametrize(("source", "words"), [
    ("raise RuntimeError('boom')\n", "cannot be loaded: RuntimeError: boom"),
    ("def broken(:\n", "cannot be loaded: SyntaxError"),
    ("X = 1\n", "declares no PROVIDER = Provider(...)"),
    ("from tests.extra_provider.pager import *\nfrom dataclasses import replace\nPROVIDER = replace(PROVIDER, kind='twilio')\n",
     "declares provider 'twilio', which is already declared"),
    ("from tests.extra_provider.pager import *\nfrom dataclasses import replace\n"
     "PROVIDER = replace(PROVIDER, sections={'redis': 'R'})\n", "sections redis are reserved"),
    ("from tests.extra_provider.pager import *\nfrom dataclasses import replace\n"
     "PROVIDER = replace(PROVIDER, scenario={'statuspage': {}}, choices={})\n",
     "declares scenario sections another provider declares: statuspage"),
    ("from dataclasses import dataclass\nfrom tests.extra_provider.pager import *\nfrom dataclasses import replace\n"
     "@dataclass(frozen=True)\nclass E:\n    api_key_env: str\n    timeout: float = 5.0\n"
     "PROVIDER = replace(PROVIDER, endpoint=E)\n", "endpoint fields of types a profile cannot give: timeout: float"),
])
def test_a_provider_module_that_cannot_be_used_is_named_as_bad_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str],
                                                                        source: str, words: str) -> None:
    from runbooklib import endpoints

    name = f"odd_provider_{abs(hash(source)) % 10**8}"  # a fresh module name: imports are cached per name
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(endpoints.MODULES_ENV, name)
    with pytest.raises(ConfigError, match=re.escape(words)):
        endpoints.providers()
    assert main(["demo", "sms_delivery_failure", "--check-only", "--no-progress"]) == EXIT_BAD_PARAMETERS
    err = capsys.readouterr().err
    assert name in err and "internal error" not in err


def test_a_provider_that_would_replace_the_cores_scenario_defaults_is_refused(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from runbooklib import endpoints

    (tmp_path / "core_clash_provider.py").write_text(
        "from tests.extra_provider.pager import *\nfrom dataclasses import replace\n"
        "PROVIDER = replace(PROVIDER, scenario={'platform': {'x': 1}}, choices={})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(endpoints.MODULES_ENV, "core_clash_provider")
    with pytest.raises(ConfigError, match="provider pager declares scenario sections the core has: platform"):
        catalog.get("email_provider_failure").load_scenario("healthy")


def test_an_unknown_dependency_is_named_not_taken_as_nothing_missing(tmp_path: Path) -> None:
    from runbooklib.sandbox import Sandbox
    from runbooklib.settings import load_profiles

    profile = load_profiles(str(ROOT / "params" / "environments.example.yaml"))["production"]
    assert profile is not None
    with pytest.raises(ConfigError, match="unknown dependency 'smpt'; known: database, platform_api, redis"):
        profile.missing(("smpt",))
    with pytest.raises(ConfigError, match="unknown dependencies smpt; known: database"):
        Sandbox(catalog.get("email_provider_failure").load_scenario("healthy"), workdir=tmp_path / "box",
                dependencies=("smpt",))


def test_each_channel_names_declared_providers_and_each_provider_carries_a_channel() -> None:
    from runbooklib import channels, endpoints
    from runbooklib.errorcodes import classify_sms_error

    kinds = {p.kind for p in endpoints.providers()}
    carried = {kind for c in channels.CHANNELS for kind in c.providers}
    assert carried == kinds
    assert channels.get("SMS").classify is classify_sms_error and channels.get("sms") is channels.get("SMS")
    with pytest.raises(KeyError, match="unknown channel 'fax'; channels: email, sms, whatsapp"):
        channels.get("fax")
