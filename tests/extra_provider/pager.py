"""A made-up paging provider, declared the way a built-in one is (see `runbooklib.endpoints`): one profile
section, one secret variable, a scenario section with a fixed set of modes, and an HTTP stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runbooklib.endpoints import Provider, Secrets, not_set

if TYPE_CHECKING:
    from runbooklib.sandbox import Site, Started

MODES = ("ok", "down")


@dataclass(frozen=True)
class PagerEndpoint:
    """Where the pager API is and the name of the variable holding its key."""

    api_key_env: str
    base_url: str = "https://pager.invalid"
    from_address: str = "pages@lineup.app"


def _missing(endpoint: PagerEndpoint) -> list[str]:
    why = not_set(endpoint.api_key_env, "pager API key")
    return [why] if why else []


def _standin(site: Site) -> Started:
    from runbooklib.sandbox import Started
    from runbooklib.sandbox.standins import StandIn

    mode = site.scenario.section("pager")["mode"]

    class PagerStandIn(StandIn):
        def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                   body: bytes) -> tuple[int, dict[str, str], bytes]:
            return (200, {}, b"ok") if mode == "ok" else (503, {}, b"down")

    started = Started()
    server: Any = started.add("pager", site.echoing(PagerStandIn().start()))
    started.profile["pager"] = {"api_key_env": site.env("pager_api_key"), "base_url": server.url}
    return started


PROVIDER = Provider(
    kind="pager",
    sections={"pager": "Pager API"},
    endpoint=PagerEndpoint,
    required="api_key_env",
    client="tests.extra_provider.pager",
    missing=_missing,
    secrets=lambda endpoint: Secrets(parts=(endpoint.api_key_env,), public=(endpoint.from_address,)),
    scenario={"pager": {"mode": "ok"}},
    choices={"pager.mode": MODES},
    demo_secrets={"pager_api_key": "RUNBOOK_DEMO_PAGER_KEY"},
    standin=_standin,
)
