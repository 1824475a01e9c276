"""Local HTTP stand-ins on loopback: the Lineup platform API, AWS SES (v1 Query + v2 REST), Twilio's REST
API and its Statuspage, and Meta's Graph API (WhatsApp Cloud API). Each provider's declaration
(`runbooklib.endpoints`) says when the sandbox starts its stand-in.

Each speaks the real wire format so that the production clients (httpx, boto3) run unchanged;
only the endpoint differs. Every request is logged, so tests can prove a dry run changed nothing.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

Response = tuple[int, dict[str, str], bytes]
MUTATING = ("POST", "PUT", "PATCH", "DELETE")


class StandIn:
    """A threaded HTTP server on 127.0.0.1 with a request log; subclasses implement `handle`."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.echo = "off"
        """`errors`: every error answered echoes the request's credentials; `always`: every request is answered so."""
        self.echo_recipients = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with outer.lock:
                    outer.requests.append({"method": self.command, "path": parts.path, "query": query,
                                           "body": body.decode(errors="replace")})
                    status, headers, payload = outer.handle(self.command, parts.path, query,
                                                            dict(self.headers.items()), body)
                    if outer.echo == "always" or (outer.echo == "errors" and status >= 400):
                        status, headers, payload = outer.echoed(dict(self.headers.items()), body, parts.query)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # keep test and demo output quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def mutations(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["method"] in MUTATING]

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
        raise NotImplementedError

    def echoed(self, headers: dict[str, str], body: bytes, query: str) -> Response:
        """An error that echoes what was received, as careless providers and proxies do (each stand-in's shape)."""
        return 502, {"Content-Type": "text/html"}, (
            f"<html><body><h1>502 Bad Gateway</h1><p>upstream refused the request</p><pre>"
            f"{escape(self._echo_text(headers, body, query))}</pre></body></html>").encode()

    def _echo_text(self, headers: dict[str, str], body: bytes, query: str) -> str:
        from runbooklib.sandbox.scenario import RECIPIENT_FORMS

        lines = [f"{k}: {v}" for k, v in headers.items() if k.lower() in ("authorization", "x-amz-security-token")]
        if query:
            lines.append(f"query: {query}")
        if body:
            lines.append(f"body: {body.decode(errors='replace')[:2000]}")
        if self.echo_recipients:
            lines.append("recipients: " + ", ".join(RECIPIENT_FORMS))
        return "\n".join(lines)


def _json(status: int, data: Any) -> Response:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


class PlatformStandIn(StandIn):
    """The Lineup API: queue metrics, per-tenant channel configuration, retry-failed, do-not-contact.

    `queue` is the runbook's queue, whose backlog moves by `backlog_per_sample` per metrics call,
    or by `backlog_per_sample_mitigated` once any change was made. `on_change(kind, tenant, channel,
    body)` lets the sandbox reflect a change in `message_logs` and returns a count where one applies.
    """

    PROVIDERS = {"email": ("ses", "smtp", "smtp_backup"), "sms": ("twilio",), "whatsapp": ("meta",)}
    FALLBACK_CHANNELS = ("WHATSAPP", "EMAIL", "SMS")
    KEYS = {"provider", "fallback", "template_fallbacks", "outside_window_template", "access_token"}

    def __init__(self, *, token: str, scenario: dict[str, Any], tenants: list[str], queue: str,
                 on_change: Callable[[str, str, str, Any], int] | None = None,
                 live_queues: Callable[[], list[dict[str, Any]]] | None = None,
                 attempts: dict[str, int] | None = None, tenant_providers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.live_queues = live_queues
        self.attempts = dict(attempts or {})
        self.token = token
        self.queue = queue
        self.queues = {name: dict(counts) for name, counts in scenario["queues"].items()}
        own = tenant_providers or {}
        self.channels = {t: {ch: {"channel": ch, "tenant_id": t,
                                  "provider": own.get(t, provider) if ch == queue else provider, "fallback": None,
                                  **({"template_fallbacks": {}, "outside_window_template": None,
                                      "access_token_updated_at": None} if ch == "whatsapp" else {})}
                             for ch, provider in scenario["providers"].items()} for t in tenants}
        self.access_tokens: dict[str, str] = {}
        """Tokens PATCHed into tenants' WhatsApp config; never echoed back (GET shows when it changed)."""
        self.initial = json.loads(json.dumps(self.channels))
        self.do_not_contact: dict[tuple[str, str], set[str]] = {}
        self.backlog_step = int(scenario["backlog_per_sample"])
        self.backlog_step_mitigated = int(scenario["backlog_per_sample_mitigated"])
        self.mitigated = False
        self.on_change = on_change

    def _changed(self, kind: str, tenant: str, channel: str, body: Any) -> int:
        self.mitigated = True
        return self.on_change(kind, tenant, channel, body) if self.on_change is not None else 0

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return _json(401, {"statusCode": 401, "message": "Unauthorized"})
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return _json(400, {"statusCode": 400, "message": "body is not JSON"})
        if path == "/api/v1/system-metrics/queues" and method == "GET" and self.live_queues is not None:
            return _json(200, self.live_queues())
        if path.startswith("/api/v1/communication/queues/"):
            return self._queue_config(method, path.rsplit("/", 1)[-1], payload)
        if path == "/api/v1/system-metrics/queues" and method == "GET":
            out = [{"queue": name, **counts} for name, counts in self.queues.items()]
            entry = self.queues.get(self.queue)
            if entry is not None:
                step = self.backlog_step_mitigated if self.mitigated else self.backlog_step
                entry["waiting"] = max(0, int(entry["waiting"]) + step)
            return _json(200, out)
        if path == "/api/v1/communication/retry-failed" and method == "POST":
            channel = query.get("channel", "")
            exclude = [c for c in query.get("exclude_error_codes", "").split(",") if c]
            ids = payload.get("message_ids") if isinstance(payload, dict) else None
            try:
                maximum = int(query.get("max", ""))
            except ValueError:
                maximum = -1
            if not isinstance(ids, list) or not query.get("created_before") or maximum < 0:
                return _json(400, {"statusCode": 400, "message": "retry-failed needs message_ids, created_before and max"})
            if len(ids) > maximum:
                return _json(422, {"statusCode": 422, "message": f"{len(ids)} ids exceed max {maximum}"})
            selection = {"exclude": exclude, "ids": [str(i) for i in ids], "created_before": query["created_before"]}
            return _json(200, {"channel": channel, "retried": self._changed("retry", "", channel, selection)})
        if path == "/api/v1/communication/do-not-contact":
            return self._dnc(method, query, payload)
        prefix = "/api/v1/communication/channels/"
        if path.startswith(prefix):
            return self._channel(method, path[len(prefix):], query.get("tenant_id", ""), payload)
        return _json(404, {"statusCode": 404, "message": f"no route {method} {path}"})

    def _queue_config(self, method: str, queue: str, payload: dict[str, Any]) -> Response:
        if queue not in self.attempts:
            return _json(404, {"statusCode": 404, "message": f"no queue {queue!r}"})
        if method == "PATCH":
            attempts = payload.get("attempts")
            if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 50:
                return _json(400, {"statusCode": 400, "message": "attempts: a whole number from 1 to 50"})
            if attempts != self.attempts[queue]:
                self.attempts[queue] = attempts
                self._changed("queue", "", queue, payload)
        elif method != "GET":
            return _json(405, {"statusCode": 405, "message": "GET or PATCH"})
        return _json(200, {"queue": queue, "attempts": self.attempts[queue]})

    def _channel(self, method: str, channel: str, tenant: str, payload: dict[str, Any]) -> Response:
        config = self.channels.get(tenant, {}).get(channel)
        if config is None:
            return _json(404, {"statusCode": 404, "message": f"no {channel} channel for tenant {tenant!r}"})
        if method == "GET":
            return _json(200, config)
        if method != "PATCH" or not payload or set(payload) - self.KEYS:
            return _json(400, {"statusCode": 400, "message": f"PATCH takes some of {sorted(self.KEYS)}"})
        if "access_token" in payload:
            if channel != "whatsapp" or not isinstance(payload["access_token"], str) or not payload["access_token"]:
                return _json(400, {"statusCode": 400, "message": "access_token: a non-empty string, whatsapp only"})
            self.access_tokens[tenant] = payload.pop("access_token")
            config["access_token_updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            self._changed("token", tenant, channel, {})
            if not payload:
                return _json(200, config)
        if "provider" in payload and payload["provider"] not in self.PROVIDERS.get(channel, ()):
            return _json(400, {"statusCode": 400, "message": f"unknown provider {payload['provider']!r}"})
        fallback = payload.get("fallback")
        if "fallback" in payload and fallback is not None and (
                not isinstance(fallback, dict) or fallback.get("channel") not in self.FALLBACK_CHANNELS):
            return _json(400, {"statusCode": 400, "message": "fallback must be null or {\"channel\": ..., ...}"})
        before = dict(config)
        config.update(payload)
        if config != before:
            self._changed("channel", tenant, channel, {"before": before, "after": dict(config)})
        return _json(200, config)

    def _dnc(self, method: str, query: dict[str, str], payload: dict[str, Any]) -> Response:
        if method == "GET":
            key = (query.get("tenant_id", ""), query.get("channel", ""))
            return _json(200, {"tenant_id": key[0], "channel": key[1], "recipients": sorted(self.do_not_contact.get(key, set()))})
        if method not in ("POST", "DELETE") or not isinstance(payload.get("recipients"), list):
            return _json(400, {"statusCode": 400, "message": "body: {channel, tenant_id, recipients: [...]}"})
        key = (str(payload.get("tenant_id", "")), str(payload.get("channel", "")))
        if key[0] not in self.channels:
            return _json(404, {"statusCode": 404, "message": f"unknown tenant {key[0]!r}"})
        current = self.do_not_contact.setdefault(key, set())
        recipients = {str(r) for r in payload["recipients"]}
        if method == "POST":
            current |= recipients
        else:
            current -= recipients
        self._changed("do_not_contact", key[0], key[1], {"method": method, "count": len(recipients)})
        return _json(200, {"tenant_id": key[0], "channel": key[1], "recipients": len(current)})


class SesStandIn(StandIn):
    """AWS SES: the v1 Query actions the runbook uses (XML) and v2 GET /v2/email/account (JSON).

    moto 5 implements neither GetAccountSendingEnabled nor sesv2 GetAccount, and keeps a fixed
    quota; this stand-in lets a scenario set every value, and answer AccessDenied as AWS does.
    """

    NS = "http://ses.amazonaws.com/doc/2010-12-01/"

    def __init__(self, *, scenario: dict[str, Any]) -> None:
        super().__init__()
        self.state = dict(scenario)
        self.sent: list[dict[str, Any]] = []

    def _xml(self, action: str, result: str) -> Response:
        body = (f'<{action}Response xmlns="{self.NS}"><{action}Result>{result}</{action}Result>'
                f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>")
        return 200, {"Content-Type": "text/xml"}, body.encode()

    def _error(self, status: int, code: str, message: str) -> Response:
        body = (f'<ErrorResponse xmlns="{self.NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
                f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
        return status, {"Content-Type": "text/xml"}, body.encode()

    def echoed(self, headers: dict[str, str], body: bytes, query: str) -> Response:
        auth = headers.get("Authorization", "")
        key = re.search(r"Credential=([^/,\s]+)", auth)
        return self._error(403, "AccessDenied", (
            f"User with access key {key.group(1) if key else '?'} and security token "
            f"{headers.get('X-Amz-Security-Token', '(none)')} is not authorized: {self._echo_text(headers, body, query)}"))

    def _denied(self, action: str) -> str:
        return (f"User: arn:aws:iam::123456789012:user/lineup-mailer is not authorized to perform: "
                f"ses:{action} on resource: *")

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
        s = self.state
        if path == "/v2/email/account" and method == "GET":
            if s["access_denied"]:
                return (403, {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException"},
                        json.dumps({"message": self._denied("GetAccount")}).encode())
            return _json(200, {
                "DedicatedIpAutoWarmupEnabled": False, "EnforcementStatus": s["enforcement_status"],
                "ProductionAccessEnabled": bool(s["production_access"]), "SendingEnabled": bool(s["sending_enabled"]),
                "SendQuota": {"Max24HourSend": s["max_24_hour_send"], "MaxSendRate": s["max_send_rate"],
                              "SentLast24Hours": s["sent_last_24_hours"]},
            })
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        action = form.get("Action", "")
        if s["access_denied"]:
            return self._error(403, "AccessDenied", self._denied(action))
        if action == "GetSendQuota":
            return self._xml(action, f"<Max24HourSend>{s['max_24_hour_send']}</Max24HourSend>"
                                     f"<MaxSendRate>{s['max_send_rate']}</MaxSendRate>"
                                     f"<SentLast24Hours>{s['sent_last_24_hours']}</SentLast24Hours>")
        if action == "GetAccountSendingEnabled":
            return self._xml(action, f"<Enabled>{'true' if s['sending_enabled'] else 'false'}</Enabled>")
        if action == "GetSendStatistics":
            return self._xml(action, "<SendDataPoints>" + "".join(self._points()) + "</SendDataPoints>")
        if action == "SendEmail":
            if not s["sending_enabled"]:
                return self._error(400, "AccountSendingPausedException", "Email sending is disabled for this account.")
            if s["max_24_hour_send"] != -1 and s["sent_last_24_hours"] >= s["max_24_hour_send"]:
                return self._error(400, "Throttling", "Daily message quota exceeded.")
            message_id = f"0100018c-{uuid.uuid4()}"
            self.sent.append({"to": form.get("Destination.ToAddresses.member.1"),
                              "subject": form.get("Message.Subject.Data"), "id": message_id})
            s["sent_last_24_hours"] = float(s["sent_last_24_hours"]) + 1
            return self._xml(action, f"<MessageId>{message_id}</MessageId>")
        return self._error(400, "InvalidAction", f"The action {action!r} is not valid for this web service.")

    def _points(self) -> list[str]:
        """96 fifteen-minute points of the last 24 hours (in no particular order, as AWS warns)."""
        s = self.state
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        attempts = max(1, int(float(s["sent_last_24_hours"]) / 96))
        points = []
        for i in range(96):
            ts = (now - timedelta(minutes=15 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            points.append(f"<member><Timestamp>{ts}</Timestamp><DeliveryAttempts>{attempts}</DeliveryAttempts>"
                          f"<Bounces>{round(attempts * float(s['bounce_rate']))}</Bounces>"
                          f"<Complaints>{round(attempts * float(s['complaint_rate']))}</Complaints>"
                          f"<Rejects>0</Rejects></member>")
        return points[::2] + points[1::2]


class TwilioStandIn(StandIn):
    """Twilio's REST API 2010-04-01: account fetch, incoming numbers (paged), message create.

    Answers with Twilio's shapes (RFC 2822 dates, list pages with `next_page_uri`, error bodies
    `{"code", "message", "more_info", "status"}`) and checks HTTP Basic auth.
    """

    def __init__(self, *, sid: str, token: str, scenario: dict[str, Any]) -> None:
        super().__init__()
        self.sid, self.token = sid, token
        self.state = scenario
        self.sent: list[dict[str, Any]] = []
        self._calls: list[float] = []

    def _throttled(self) -> bool:
        """Over the scenario's rate (`throttle.after` requests within `throttle.per_seconds`): answer 429 / 20429."""
        throttle = self.state.get("throttle") or {}
        if throttle.get("after") is None:
            return False
        now = time.monotonic()
        self._calls = [t for t in self._calls if now - t < float(throttle.get("per_seconds", 60))] + [now]
        return len(self._calls) > int(throttle["after"])

    @staticmethod
    def _date(when: datetime | None = None) -> str:
        return format_datetime(when or datetime.now(UTC), usegmt=True).replace("GMT", "+0000")

    def _error(self, status: int, code: int, message: str) -> Response:
        return _json(status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                              "status": status})

    def echoed(self, headers: dict[str, str], body: bytes, query: str) -> Response:
        return self._error(401, 20003, f"Authenticate: {self._echo_text(headers, body, query)}")

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
        expected = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if self.state["auth"] == "reject" or headers.get("Authorization") != expected:
            return self._error(401, 20003, "Authenticate")
        if self._throttled():
            return self._error(429, 20429, "Too Many Requests")
        base = f"/2010-04-01/Accounts/{self.sid}"
        if path == f"{base}.json" and method == "GET":
            return _json(200, {"sid": self.sid, "friendly_name": "Lineup (sandbox)", "status": self.state["account_status"],
                               "type": "Full", "date_created": self._date(datetime(2021, 3, 1, tzinfo=UTC)),
                               "date_updated": self._date(), "owner_account_sid": self.sid, "uri": f"{base}.json"})
        if path == f"{base}/IncomingPhoneNumbers.json" and method == "GET":
            return self._numbers(base, query)
        if path == f"{base}/Messages.json" and method == "POST":
            return self._create(base, {k: v[-1] for k, v in parse_qs(body.decode()).items()})
        return self._error(404, 20404, f"The requested resource {path} was not found")

    def _numbers(self, base: str, query: dict[str, str]) -> Response:
        size, page = int(query.get("PageSize", 50)), int(query.get("Page", 0))
        numbers = self.state["numbers"]
        chunk = numbers[page * size:(page + 1) * size]
        uri = f"{base}/IncomingPhoneNumbers.json"
        records = [{"sid": f"PN{i:032x}", "account_sid": self.sid, "phone_number": n["phone_number"],
                    "friendly_name": n["phone_number"], "status": "in-use", "origin": "twilio",
                    "capabilities": {"voice": True, "sms": bool(n.get("sms", True)), "mms": False, "fax": False},
                    "date_created": self._date(datetime(2022, 1, 1, tzinfo=UTC)), "date_updated": self._date()}
                   for i, n in enumerate(chunk, start=page * size)]
        has_next = (page + 1) * size < len(numbers)
        return _json(200, {"incoming_phone_numbers": records, "page": page, "page_size": size,
                           "start": page * size, "end": page * size + len(records) - 1,
                           "uri": f"{uri}?PageSize={size}&Page={page}",
                           "first_page_uri": f"{uri}?PageSize={size}&Page=0", "previous_page_uri": None,
                           "next_page_uri": f"{uri}?PageSize={size}&Page={page + 1}" if has_next else None})

    def _create(self, base: str, form: dict[str, str]) -> Response:
        if self.state["account_status"] != "active":
            return self._error(401, 20003, "Authenticate")
        if self.state["create_error"]:
            err = self.state["create_error"]
            return self._error(int(err.get("status", 400)), int(err["code"]), str(err.get("message", "error")))
        owned = {n["phone_number"]: n for n in self.state["numbers"]}
        sender = form.get("From", "")
        if sender not in owned or not owned[sender].get("sms", True):
            return self._error(400, 21606, f"The From phone number {sender} is not a valid, SMS-capable inbound phone "
                                           "number or short code for your account.")
        sid = f"SM{uuid.uuid4().hex}"
        self.sent.append({"sid": sid, "to": form.get("To"), "from": sender, "body": form.get("Body")})
        return _json(201, {"sid": sid, "account_sid": self.sid, "to": form.get("To"), "from": sender,
                           "body": form.get("Body"), "status": "queued", "num_segments": "1", "direction": "outbound-api",
                           "error_code": None, "error_message": None, "date_created": self._date(), "date_sent": None,
                           "date_updated": self._date(), "uri": f"{base}/Messages/{sid}.json"})


class StatusPageStandIn(StandIn):
    """An Atlassian Statuspage JSON API (status, components, unresolved incidents)."""

    def __init__(self, *, scenario: dict[str, Any]) -> None:
        super().__init__()
        self.state = scenario

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
        page = {"id": "sandbox", "name": "Twilio (sandbox)", "url": self.url, "time_zone": "Etc/UTC",
                "updated_at": datetime.now(UTC).isoformat()}
        components = [{"id": f"c{i}", "name": name, "status": status, "position": i, "group": False}
                      for i, (name, status) in enumerate(self.state["components"].items())]
        if path == "/api/v2/status.json":
            return _json(200, {"page": page, "status": {"indicator": self.state["indicator"],
                                                        "description": self.state["description"]}})
        if path == "/api/v2/components.json":
            return _json(200, {"page": page, "components": components})
        if path == "/api/v2/incidents/unresolved.json":
            incidents = [{"id": f"i{i}", "name": inc["name"], "status": inc.get("status", "investigating"),
                          "impact": inc.get("impact", "major"), "created_at": datetime.now(UTC).isoformat(),
                          "components": [c for c in components if c["name"] in inc.get("components", [])],
                          "incident_updates": []}
                         for i, inc in enumerate(self.state["incidents"])]
            return _json(200, {"page": page, "incidents": incidents})
        return _json(404, {"error": "not found"})


class GraphStandIn(StandIn):
    """Meta's Graph API for the WhatsApp Cloud API: templates on the WABA (cursor paging, submit),
    phone number fields, debug_token, token exchange, and sending messages — with Meta's error shape
    `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`."""

    def __init__(self, *, token: str, app_id: str, app_secret: str, waba_id: str, phone_id: str,
                 scenario: dict[str, Any]) -> None:
        super().__init__()
        self.tokens = {token}
        self.app_token = f"{app_id}|{app_secret}"
        self.app_id, self.app_secret = app_id, app_secret
        self.waba_id, self.phone_id = waba_id, phone_id
        self.state = scenario
        self.templates = [dict(t, id=str(10**15 + i)) for i, t in enumerate(scenario["templates"])]
        self.submitted: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.issued: list[str] = []

    def _error(self, status: int, code: int, message: str, subcode: int | None = None,
               kind: str = "OAuthException") -> Response:
        err: dict[str, Any] = {"message": message, "type": kind, "code": code, "fbtrace_id": uuid.uuid4().hex[:20]}
        if subcode is not None:
            err["error_subcode"] = subcode
        return _json(status, {"error": err})

    def echoed(self, headers: dict[str, str], body: bytes, query: str) -> Response:
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        return self._error(401, 190, f"Invalid OAuth access token - Cannot parse access token: {token} "
                                     f"({self._echo_text(headers, body, query)})")

    def _token_ok(self, headers: dict[str, str]) -> Response | None:
        token = headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if self.state["token"] == "expired" and token not in self.issued:
            return self._error(401, 190, "Error validating access token: Session has expired.", subcode=463)
        return None

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
        parts = path.strip("/").split("/")
        if len(parts) < 2:
            return self._error(400, 100, "Unsupported request", kind="GraphMethodException")
        _version, rest = parts[0], parts[1:]
        if rest == ["debug_token"]:
            return self._debug_token(headers, query)
        if rest == ["oauth", "access_token"]:
            return self._exchange(query)
        denied = self._token_ok(headers)
        if denied is not None:
            return denied
        if self.state["access_denied"]:
            return self._error(403, 10, "Application does not have permission for this action")
        if self.state["unknown_ids"] and rest[0] in (self.waba_id, self.phone_id):
            return self._error(400, 100, f"Unsupported {method} request. Object with ID '{rest[0]}' does not exist, "
                                         "cannot be loaded due to missing permissions, or does not support this "
                                         "operation", subcode=33, kind="GraphMethodException")
        if rest == [self.waba_id, "message_templates"]:
            return self._templates(method, query, body)
        if rest == [self.phone_id] and method == "GET":
            phone = dict(self.state["phone"])
            phone.update(id=self.phone_id)
            fields = query.get("fields", "id,display_phone_number,verified_name,quality_rating").split(",")
            return _json(200, {k: v for k, v in phone.items() if k in fields})
        if rest == [self.phone_id, "messages"] and method == "POST":
            return self._send(body)
        return self._error(400, 100, f"Unsupported {method} request. Object with ID '{rest[0]}' does not exist",
                           subcode=33, kind="GraphMethodException")

    def _debug_token(self, headers: dict[str, str], query: dict[str, str]) -> Response:
        if headers.get("Authorization", "").removeprefix("Bearer ") != self.app_token:
            return self._error(400, 190, "Invalid OAuth access token signature.")
        token = query.get("input_token", "")
        now = int(datetime.now(UTC).timestamp())
        fresh = token in self.issued
        expired = self.state["token"] == "expired" and not fresh
        data: dict[str, Any] = {
            "app_id": self.app_id, "type": "USER", "application": "Lineup", "is_valid": token in self.tokens and not expired,
            "issued_at": now - 50 * 86400, "data_access_expires_at": now + 40 * 86400,
            "expires_at": now + 60 * 86400 if fresh else (
                0 if self.state["token_expires_in_days"] is None  # a system-user token: never expires
                else now + int(float(self.state["token_expires_in_days"]) * 86400)),
            "scopes": list(self.state["scopes"]), "user_id": "10158221"}
        if expired:
            data["error"] = {"code": 190, "subcode": 463, "message": "Session has expired."}
            data["expires_at"] = now - 3600
        return _json(200, {"data": data})

    def _exchange(self, query: dict[str, str]) -> Response:
        if query.get("client_id") != self.app_id or query.get("client_secret") != self.app_secret:
            return self._error(400, 1, "Error validating client secret.")
        if query.get("fb_exchange_token") not in self.tokens:
            return self._error(400, 190, "Invalid OAuth access token.")
        token = "EAAG" + uuid.uuid4().hex + uuid.uuid4().hex
        self.tokens.add(token)
        self.issued.append(token)
        return _json(200, {"access_token": token, "token_type": "bearer", "expires_in": 60 * 86400})

    def _templates(self, method: str, query: dict[str, str], body: bytes) -> Response:
        if method == "POST":
            payload = json.loads(body or b"{}")
            if not {"name", "language", "category", "components"} <= set(payload):
                return self._error(400, 100, "Invalid parameter: name, language, category and components are required",
                                   kind="OAuthException")
            template = dict(payload, id=str(10**15 + len(self.templates)), status="PENDING")
            self.templates.append(template)
            self.submitted.append(payload)
            return _json(200, {"id": template["id"], "status": "PENDING", "category": payload["category"]})
        limit = int(query.get("limit", 25))
        start = int(query.get("after", "0") or 0)
        chunk = self.templates[start:start + limit]
        paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + len(chunk))}}
        if start + limit < len(self.templates):
            paging["next"] = f"{self.url}/message_templates?after={start + len(chunk)}"
        return _json(200, {"data": chunk, "paging": paging})

    def _send(self, body: bytes) -> Response:
        payload = json.loads(body or b"{}")
        if self.state["send_error"]:
            err = self.state["send_error"]
            return self._error(int(err.get("status", 400)), int(err["code"]), str(err.get("message", "error")))
        if payload.get("type") == "template":
            name = payload.get("template", {}).get("name")
            matches = [t for t in self.templates if t.get("name") == name]
            if not any(t.get("status") == "APPROVED" for t in matches):
                return self._error(404, 132001, f"Template name ({name}) does not exist in the translation or is not "
                                                "approved")
        wamid = "wamid.HBgL" + uuid.uuid4().hex.upper()
        self.sent.append({"to": payload.get("to"), "type": payload.get("type"), "id": wamid,
                          "template": payload.get("template", {}).get("name")})
        return _json(200, {"messaging_product": "whatsapp", "contacts": [{"input": payload.get("to"),
                                                                          "wa_id": payload.get("to")}],
                           "messages": [{"id": wamid}]})
