"""AWS SES, declared once: region, endpoint override and credential variable names; its stand-in.

Checks, the test send and the error mapper are in `runbooklib.providers.ses` (boto3).
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runbooklib.endpoints import Provider, Secrets, not_set

if TYPE_CHECKING:
    from runbooklib.sandbox import Site, Started


@dataclass(frozen=True)
class SesEndpoint:
    """AWS SES: region, optional endpoint override, and credential variable names (empty: default chain)."""

    region: str
    endpoint_url: str = ""
    access_key_id_env: str = ""
    secret_access_key_env: str = ""
    session_token_env: str = ""
    from_address: str = "runbook@lineup.app"


def _missing(endpoint: SesEndpoint) -> list[str]:
    if endpoint.access_key_id_env:
        why = [not_set(endpoint.access_key_id_env, "AWS access key id"),
               not_set(endpoint.secret_access_key_env, "AWS secret access key")]
        return [w for w in why if w]
    if not _aws_credentials_hinted():
        return ["no AWS credentials in the environment or ~/.aws (an instance role, if any, is only known at the "
                "first call)"]
    return []


def _aws_credentials_hinted() -> bool:
    """Whether boto3's default chain has something to find without asking the network (variables, files)."""
    if any(os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                                             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")):
        return True
    home = Path(os.environ.get("HOME") or "~").expanduser()
    files = (Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws/credentials"),
             Path(os.environ.get("AWS_CONFIG_FILE") or home / ".aws/config"))
    return any(p.is_file() and os.access(p, os.R_OK) for p in files)


def _secrets(endpoint: SesEndpoint) -> Secrets:
    return Secrets(parts=(endpoint.access_key_id_env, endpoint.secret_access_key_env, endpoint.session_token_env),
                   public=(endpoint.from_address,))


def _make_secret(key: str) -> str | None:
    if key == "aws_access_key_id":
        return "AKIA" + secrets.token_hex(8).upper()
    if key == "aws_session_token":  # as long as STS's (650 characters of base64)
        return base64.b64encode(secrets.token_bytes(486)).decode()[:650]
    return None


def _standin(site: Site) -> Started:
    from runbooklib.sandbox import Started
    from runbooklib.sandbox.standins import SesStandIn

    started = Started()
    running = started.add("ses", site.echoing(SesStandIn(scenario=site.scenario.section("ses")).start()))
    started.profile["ses"] = {"region": "us-east-1", "endpoint_url": running.url,
                              "access_key_id_env": site.env("aws_access_key_id"),
                              "secret_access_key_env": site.env("aws_secret_access_key"),
                              "session_token_env": site.env("aws_session_token"), "from_address": "runbook@lineup.app"}
    return started


PROVIDER = Provider(
    kind="ses",
    sections={"ses": "AWS SES"},
    endpoint=SesEndpoint,
    required="region",
    client="runbooklib.providers.ses",
    missing=_missing,
    secrets=_secrets,
    email_endpoint=True,
    scenario={"ses": {"max_24_hour_send": 50000.0, "max_send_rate": 14.0, "sent_last_24_hours": 9100.0,
                      "sending_enabled": True, "enforcement_status": "HEALTHY", "production_access": True,
                      "access_denied": False, "bounce_rate": 0.01, "complaint_rate": 0.0003}},
    demo_secrets={"aws_access_key_id": "RUNBOOK_DEMO_AWS_ACCESS_KEY_ID",
                  "aws_secret_access_key": "RUNBOOK_DEMO_AWS_SECRET_ACCESS_KEY",
                  "aws_session_token": "RUNBOOK_DEMO_AWS_SESSION_TOKEN"},
    make_secret=_make_secret,
    standin=_standin,
)
