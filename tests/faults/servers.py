"""Misbehaving peers on loopback, one per fault: the production clients meet them over real sockets.

- `closed_port()` — nothing listens (connection refused).
- `Silent` — accepts every connection, reads what it is sent, never answers (a black hole).
- `Trickle` — answers with `payload`, one byte every `every` seconds (defeats per-read timeouts).
- `FixedHTTP` — answers every request with one status, body and content type.
- `RoutedHTTP` — forwards HTTP to a real stand-in, except for paths it answers itself.
- `Proxy` — forwards TCP to a real server and, once the server has sent `freeze_after`, stops
  forwarding in both directions but keeps the connection open (a session that goes silent).
- `SmtpFault` — an SMTP peer that greets with 554, or breaks STARTTLS after agreeing to it.

Every server runs on its own daemon threads, counts the connections it took and stops by `stop()`.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx

from runbooklib.sandbox.ports import free_port
from runbooklib.sandbox.standins import StandIn


def closed_port() -> int:
    """A loopback port nothing listens on (refused at once)."""
    return free_port()


class _TcpServer:
    """A listening socket on 127.0.0.1 and a thread per connection, `serve(conn)` doing the talking."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self._open: list[socket.socket] = []
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._guard, args=(conn,), daemon=True).start()

    def _guard(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except OSError:
            pass

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the server was stopped meanwhile."""
        return self._stopped.wait(seconds)

    def stop(self) -> None:
        self._stopped.set()
        for sock in [self.listener, *self._open]:
            try:
                sock.close()
            except OSError:
                pass


class Silent(_TcpServer):
    """Accepts and reads, never answers: a peer behind a black-holing firewall or a hung process."""

    def serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        while not self._stopped.is_set():
            try:
                if conn.recv(65536) == b"":
                    self.wait(60)
                    return
            except TimeoutError:
                continue


class Trickle(_TcpServer):
    """Sends `payload` one byte every `every` seconds (after reading the request, for HTTP)."""

    def __init__(self, payload: bytes, *, every: float = 2.0, read_first: bool = True) -> None:
        self.payload, self.every, self.read_first = payload, every, read_first
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        if self.read_first:
            conn.settimeout(5)
            try:
                conn.recv(65536)
            except TimeoutError:
                pass
        for byte in self.payload:
            if self.wait(self.every):
                return
            conn.sendall(bytes([byte]))
        self.wait(60)


HTTP_TRICKLE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
                + b"[" + b" " * 1998 + b"]")
SMTP_TRICKLE = b"220 smtp.trickle.test ESMTP ready, eventually\r\n"


class FixedHTTP(StandIn):
    """Answers every request with `status`, `body` and `content_type` (the sandbox's stand-in base logs requests)."""

    def __init__(self, status: int, body: str | bytes, *, content_type: str = "application/json") -> None:
        super().__init__()
        self.status, self.content_type = status, content_type
        self.payload = body.encode() if isinstance(body, str) else body
        self.start()

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        return self.status, {"Content-Type": self.content_type}, self.payload


Route = tuple[int, str, str]
"""(status, body, content type) answered for a path."""
_HOP = ("host", "content-length", "transfer-encoding", "connection", "content-encoding")


class RoutedHTTP(StandIn):
    """Forwards every request to `target` (a real stand-in), except paths matching a route, answered as given."""

    def __init__(self, target: str, routes: dict[str, Route]) -> None:
        super().__init__()
        self.routes = routes
        self.upstream = httpx.Client(base_url=target, timeout=10)
        self.start()

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        route = next((r for prefix, r in self.routes.items() if path.startswith(prefix)), None)
        if route is not None:
            status, text, ctype = route
            return status, {"Content-Type": ctype}, text.encode()
        forwarded = self.upstream.request(method, path, params=query, content=body,
                                          headers={k: v for k, v in headers.items() if k.lower() not in _HOP})
        return (forwarded.status_code, {k: v for k, v in forwarded.headers.items() if k.lower() not in _HOP},
                forwarded.content)


class Proxy(_TcpServer):
    """Forwards to `host:port`; after the server has sent bytes matching `freeze_after`, forwards nothing more
    (both ways) and keeps both connections open. `freeze_after=None` forwards faithfully."""

    def __init__(self, host: str, port: int, *, freeze_after: Callable[[bytes], bool] | None = None,
                 everywhere: bool = False) -> None:
        self.target = (host, port)
        self.freeze_after = freeze_after
        self.everywhere = everywhere
        """Once one connection froze, freeze every connection (else each freezes on its own trigger)."""
        self.frozen = 0
        self._all_frozen = threading.Event()
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(self.target, timeout=10)
        self._open.append(upstream)
        frozen = self._all_frozen if self.everywhere else threading.Event()
        seen = bytearray()

        def pump(src: socket.socket, dst: socket.socket, from_server: bool) -> None:
            src.settimeout(0.5)
            while not self._stopped.is_set():
                if frozen.is_set():
                    self.wait(0.5)
                    continue
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                if frozen.is_set():
                    continue
                try:
                    dst.sendall(data)
                except OSError:
                    return
                if from_server and self.freeze_after is not None:
                    seen.extend(data)
                    if self.freeze_after(bytes(seen)):
                        frozen.set()
                        self.frozen += 1

        threading.Thread(target=pump, args=(upstream, conn, True), daemon=True).start()
        pump(conn, upstream, False)


def after_postgres_ready(data: bytes) -> bool:
    """PostgreSQL's ReadyForQuery ('Z', length 5): the session is set up, the next query will hang."""
    return b"Z\x00\x00\x00\x05" in data


def after_redis_pong(data: bytes) -> bool:
    """Redis answered PING: what follows will hang."""
    return b"+PONG" in data


def after_redis_health_check(data: bytes) -> bool:
    """Redis answered the health check's last command (CONFIG GET maxmemory-policy): what follows will hang."""
    return b"maxmemory-policy" in data


class SmtpFault(_TcpServer):
    """An SMTP peer that misbehaves: `greeting_554` refuses the session at the greeting; `broken_starttls`
    advertises STARTTLS, agrees to it, then sends bytes that are not a TLS handshake."""

    def __init__(self, mode: str) -> None:
        if mode not in ("greeting_554", "broken_starttls"):
            raise ValueError(mode)
        self.mode = mode
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        if self.mode == "greeting_554":
            conn.sendall(b"554 5.3.2 smtp.fault.test no SMTP service here\r\n")
            self._lines(conn, {b"QUIT": b"221 bye\r\n"})
            return
        conn.sendall(b"220 smtp.fault.test ESMTP\r\n")
        self._lines(conn, {b"EHLO": b"250-smtp.fault.test\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n",
                           b"STARTTLS": b"220 2.0.0 Ready to start TLS\r\nthis is not a TLS server hello\r\n" * 3})

    def _lines(self, conn: socket.socket, answers: dict[bytes, bytes]) -> None:
        buffer = b""
        while not self._stopped.is_set():
            chunk = conn.recv(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\r\n" in buffer:
                line, buffer = buffer.split(b"\r\n", 1)
                verb = line.split(b" ", 1)[0].upper()
                conn.sendall(answers.get(verb, b"502 5.5.2 not here\r\n"))


def graph_error(code: int, message: str = "fault") -> str:
    return json.dumps({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "F"}})


def twilio_error(code: int, status: int, message: str = "fault") -> str:
    return json.dumps({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                       "status": status})


SES_THROTTLED = ("<ErrorResponse xmlns=\"http://ses.amazonaws.com/doc/2010-12-01/\"><Error><Type>Sender</Type>"
                 "<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>f</RequestId></ErrorResponse>")


SES_EMPTY = ("<GetSendQuotaResponse xmlns=\"http://ses.amazonaws.com/doc/2010-12-01/\"><GetSendQuotaResult/>"
             "<ResponseMetadata><RequestId>f</RequestId></ResponseMetadata></GetSendQuotaResponse>")


def stop_all(servers: list[Any]) -> None:
    for server in servers:
        try:
            server.stop()
        except OSError:
            pass
