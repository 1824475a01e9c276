"""Client for the Lineup platform API (httpx, bearer token, a total deadline on every call).

Every call has httpx's connect and read timeouts *and* a total deadline (`Dependency`): a server
that trickles its answer a byte at a time is cut off at the deadline like one that never answers.
Once the API did not answer within its deadline, or refused connections, later calls of the same
client fail at once with that reason.

Endpoints from the runbook spec:
- `GET /api/v1/system-metrics/queues` → a JSON array of `{"queue": name, ...counts}`.
- `PATCH /api/v1/communication/channels/{channel}` with `{"provider": ...}`.

- `POST /api/v1/communication/retry-failed?channel=SMS`.

Assumed endpoints (not in the spec; see docs/assumed-endpoints.md):
- `GET /api/v1/communication/channels/{channel}` → `{"channel", "provider", "tenant_id", ...}`,
  read before a change so that it can be undone; channel calls take the tenant as `tenant_id`.
- `PATCH /api/v1/communication/channels/{channel}` with `{"fallback": {...} | null}`.
- retry-failed bounded: `message_ids` (JSON body) with `created_before` and `max` (query), so that it
  re-queues exactly the approved messages; `exclude_error_codes`, so that permanent and consent
  failures are not retried.
- `GET|POST|DELETE /api/v1/communication/do-not-contact`.
"""

from __future__ import annotations

from typing import Any

import httpx

from runbooklib.channels import NAMES
from runbooklib.deadline import Dependency, RunBudget
from runbooklib.errors import PlatformAPIError, PlatformAuthError, PlatformResponseError, PlatformUnreachable

QUEUES_PATH = "/api/v1/system-metrics/queues"
CHANNEL_PATH = "/api/v1/communication/channels/{channel}"
RETRY_PATH = "/api/v1/communication/retry-failed"
DNC_PATH = "/api/v1/communication/do-not-contact"
CHANNELS = NAMES
COUNTS = ("waiting", "active", "delayed", "failed", "completed")
"""The counts of a metrics entry (whole numbers ≥ 0; `waiting` is required)."""


class PlatformAPI:
    """A thin, typed client over the Lineup API; every error becomes a `PlatformAPIError`."""

    def __init__(self, base_url: str, token: str, *, connect_timeout: float = 5.0, read_timeout: float = 10.0,
                 total_timeout: float | None = None, transport: httpx.BaseTransport | None = None,
                 budget: RunBudget | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.dependency = Dependency("the Lineup API", total_timeout or connect_timeout + read_timeout,
                                     PlatformUnreachable, budget=budget or RunBudget())
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                     "User-Agent": "comms-runbooks"},
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        what = f"{method} {path}"
        try:
            response = self.dependency.call(lambda: self._client.request(method, path, **kwargs), what,
                                            changes=method != "GET", down_on=(httpx.TransportError,))
        except httpx.TimeoutException as exc:
            unsure = "; the change may or may not have been made — read it back before retrying" if method != "GET" else ""
            raise PlatformUnreachable(f"{what}: timed out ({exc.__class__.__name__}){unsure}") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise PlatformUnreachable(f"{what}: {self.base_url} broke the connection mid-answer "
                                      f"({exc.__class__.__name__})") from exc
        except httpx.TransportError as exc:
            raise PlatformUnreachable(f"{what}: cannot connect to {self.base_url} ({exc.__class__.__name__})") from exc
        except httpx.HTTPError as exc:  # an answer that cannot be read: broken compression, a redirect loop
            raise PlatformResponseError(f"{what}: the answer could not be read ({exc.__class__.__name__}: {exc})") from exc
        if response.status_code in (401, 403):
            raise PlatformAuthError(f"{method} {path}: HTTP {response.status_code}, token rejected",
                                    status=response.status_code)
        if response.status_code >= 400:
            raise PlatformResponseError(f"{method} {path}: HTTP {response.status_code}: {_excerpt(response)}",
                                        status=response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise PlatformResponseError(f"{method} {path}: answer is not JSON", status=response.status_code) from exc

    def queue_metrics(self) -> list[dict[str, Any]]:
        """All queues' metrics. Each entry is checked: a name, and counts that are whole numbers ≥ 0 with at least
        `waiting` present — an answer without usable counts is an error, never read as "0 waiting"."""
        data = self._request("GET", QUEUES_PATH)
        if not isinstance(data, list) or not all(isinstance(q, dict) and isinstance(q.get("queue"), str) for q in data):
            raise PlatformResponseError(f"GET {QUEUES_PATH}: expected a JSON array of objects with 'queue'")
        for entry in data:
            problems = [f"{key}={entry[key]!r}" for key in COUNTS if key in entry
                        and (isinstance(entry[key], bool) or not isinstance(entry[key], int) or entry[key] < 0)]
            if "waiting" not in entry:
                problems.append("no 'waiting' count")
            if "paused" in entry and not isinstance(entry["paused"], bool):
                problems.append(f"paused={entry['paused']!r}")
            if problems:
                raise PlatformResponseError(f"GET {QUEUES_PATH}: queue {entry['queue'][:40]!r} has no usable counts "
                                            f"({', '.join(problems)[:200]}); counts are whole numbers ≥ 0")
        return data

    def queue(self, name: str) -> dict[str, Any] | None:
        """One queue's metrics (`None` if the API does not list it)."""
        return next((q for q in self.queue_metrics() if q["queue"] == name), None)

    def get_channel(self, channel: str, tenant_id: str) -> dict[str, Any]:
        """A tenant's channel configuration (assumed endpoint)."""
        data = self._request("GET", CHANNEL_PATH.format(channel=_channel(channel)), params={"tenant_id": tenant_id})
        if not isinstance(data, dict) or "provider" not in data:
            raise PlatformResponseError("channel configuration has no 'provider'")
        return data

    def update_channel(self, channel: str, tenant_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """PATCH a tenant's channel configuration with `changes`."""
        result = self._request("PATCH", CHANNEL_PATH.format(channel=_channel(channel)),
                               params={"tenant_id": tenant_id}, json=changes)
        return result if isinstance(result, dict) else None

    def set_channel_provider(self, channel: str, tenant_id: str, provider: str) -> dict[str, Any] | None:
        """Switch a tenant's channel to `provider` (the spec's PATCH)."""
        return self.update_channel(channel, tenant_id, {"provider": provider})

    def queue_config(self, queue: str) -> dict[str, Any]:
        """A queue's retry configuration, `{"queue", "attempts"}` (assumed endpoint)."""
        data = self._request("GET", f"/api/v1/communication/queues/{queue}")
        if not isinstance(data, dict) or "attempts" not in data:
            raise PlatformResponseError("queue configuration has no 'attempts'")
        return data

    def set_queue_attempts(self, queue: str, attempts: int) -> None:
        """Set how many attempts the platform gives new jobs of `queue` (assumed endpoint)."""
        self._request("PATCH", f"/api/v1/communication/queues/{queue}", json={"attempts": attempts})

    def retry_failed(self, channel: str, *, message_ids: list[str], created_before: str, maximum: int,
                     exclude_error_codes: list[str] | None = None) -> dict[str, Any]:
        """Re-queue exactly `message_ids` of a channel's FAILED messages (the spec's POST, bounded).

        The selection is pinned three ways (assumed parameters, docs/assumed-endpoints.md): the ids in the
        body, `created_before` (nothing newer is touched) and `max` (the platform refuses to re-queue more);
        `exclude_error_codes` keeps permanent and consent failures out even if an id slipped in."""
        params = {"channel": channel.upper(), "created_before": created_before, "max": str(maximum)}
        if exclude_error_codes:
            params["exclude_error_codes"] = ",".join(exclude_error_codes)
        result = self._request("POST", RETRY_PATH, params=params, json={"message_ids": list(message_ids)})
        return result if isinstance(result, dict) else {}

    def do_not_contact(self, channel: str, tenant_id: str) -> list[str]:
        """The recipients a tenant must not contact on a channel (assumed endpoint)."""
        data = self._request("GET", DNC_PATH, params={"channel": channel.upper(), "tenant_id": tenant_id})
        if not isinstance(data, dict) or not isinstance(data.get("recipients"), list):
            raise PlatformResponseError(f"GET {DNC_PATH}: expected {{\"recipients\": [...]}}")
        return [str(r) for r in data["recipients"]]

    def add_do_not_contact(self, channel: str, tenant_id: str, recipients: list[str]) -> None:
        self._request("POST", DNC_PATH, json={"channel": channel.upper(), "tenant_id": tenant_id,
                                              "recipients": recipients})

    def remove_do_not_contact(self, channel: str, tenant_id: str, recipients: list[str]) -> None:
        self._request("DELETE", DNC_PATH, json={"channel": channel.upper(), "tenant_id": tenant_id,
                                                "recipients": recipients})


def _excerpt(response: httpx.Response) -> str:
    """The start of an error body, on one line (a proxy's HTML page is not worth more)."""
    text = " ".join(response.text[:400].split())
    return text[:200] or "(empty body)"


def _channel(channel: str) -> str:
    if channel not in CHANNELS:
        raise PlatformAPIError(f"unknown channel {channel!r}; channels: {', '.join(CHANNELS)}")
    return channel
