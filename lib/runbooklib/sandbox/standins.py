"""Local HTTP stand-ins on loopback: the Lineup platform API and AWS SES (v1 Query + v2 REST).

Each speaks the real wire format so that the production clients (httpx, boto3) run unchanged;
only the endpoint differs. Every request is logged, so tests can prove a dry run changed nothing.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
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


def _json(status: int, data: Any) -> Response:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


class PlatformStandIn(StandIn):
    """The Lineup API: queue metrics, and per-tenant channel configuration (bearer token checked)."""

    PROVIDERS = ("ses", "smtp", "smtp_backup")

    def __init__(self, *, token: str, scenario: dict[str, Any], tenants: list[str],
                 on_switch: Callable[[str, str, str], None] | None = None) -> None:
        super().__init__()
        self.token = token
        self.queues = {name: dict(counts) for name, counts in scenario["queues"].items()}
        self.channels = {t: {ch: {"channel": ch, "tenant_id": t, "provider": provider}
                             for ch, provider in scenario["providers"].items()} for t in tenants}
        self.initial = json.loads(json.dumps(self.channels))
        self.backlog_step = int(scenario["email_backlog_per_sample"])
        self.backlog_step_mitigated = int(scenario["email_backlog_per_sample_mitigated"])
        self.failing_provider = scenario["providers"].get("email")
        self.on_switch = on_switch

    def _mitigated(self) -> bool:
        return any(c["email"]["provider"] != self.failing_provider for c in self.channels.values() if "email" in c)

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
        if headers.get("Authorization") != f"Bearer {self.token}":
            return _json(401, {"statusCode": 401, "message": "Unauthorized"})
        if path == "/api/v1/system-metrics/queues" and method == "GET":
            out = [{"queue": name, **counts} for name, counts in self.queues.items()]
            step = self.backlog_step_mitigated if self._mitigated() else self.backlog_step
            email = self.queues.get("email")
            if email is not None:
                email["waiting"] = max(0, int(email["waiting"]) + step)
            return _json(200, out)
        prefix = "/api/v1/communication/channels/"
        if path.startswith(prefix):
            channel = path[len(prefix):]
            tenant = query.get("tenant_id", "")
            config = self.channels.get(tenant, {}).get(channel)
            if config is None:
                return _json(404, {"statusCode": 404, "message": f"no {channel} channel for tenant {tenant!r}"})
            if method == "GET":
                return _json(200, config)
            if method == "PATCH":
                try:
                    provider = json.loads(body or b"{}")["provider"]
                except (ValueError, KeyError):
                    return _json(400, {"statusCode": 400, "message": "body must be {\"provider\": ...}"})
                if provider not in self.PROVIDERS:
                    return _json(400, {"statusCode": 400, "message": f"unknown provider {provider!r}"})
                before = config["provider"]
                config["provider"] = provider
                if self.on_switch is not None and provider != before:
                    self.on_switch(tenant, channel, provider)
                return _json(200, config)
        return _json(404, {"statusCode": 404, "message": f"no route {method} {path}"})


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
