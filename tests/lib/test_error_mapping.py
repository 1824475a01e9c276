"""Every upstream exception type of every provider SDK is mapped at the boundary, to the most specific class
(as httpx's own tests prove for httpx): walked from each library's exception tree, not listed by hand, so a
new upstream class is covered (or fails here) the day it appears."""

from __future__ import annotations

import inspect
import smtplib
import socket
import ssl
from types import ModuleType
from typing import Any

import botocore.exceptions as bx
import httpx
import pytest
import requests.exceptions as rx
import twilio.base.exceptions as tx

from runbooklib.endpoints.whatsapp import WhatsAppEndpoint
from runbooklib.errors import (
    PlatformAPIError,
    PlatformResponseError,
    PlatformUnreachable,
    ProviderError,
    ProviderResponseError,
    ProviderTimeout,
)
from runbooklib.platform_api import PlatformAPI
from runbooklib.providers import ses, smtp, twilio
from runbooklib.providers.whatsapp import Graph


def tree(root: type[BaseException], *modules: ModuleType) -> list[type[BaseException]]:
    """`root` and every subclass defined in `modules` (the upstream library's own classes)."""
    out, todo = [], [root]
    while todo:
        cls = todo.pop()
        if cls not in out:
            out.append(cls)
            todo += cls.__subclasses__()
    names = tuple(m.__name__.split(".")[0] for m in modules)
    return sorted((c for c in out if c.__module__.startswith(names)), key=lambda c: c.__qualname__)


def instance(cls: type[BaseException], *args: Any) -> BaseException:
    """An instance without running the class's own constructor (some need replies or requests to build)."""
    exc = cls.__new__(cls)
    exc.args = args or ("boom",)
    exc.__dict__["_request"] = None  # httpx reads it while the error passes through the client
    return exc


HTTPX = tree(httpx.HTTPError, httpx)


@pytest.mark.parametrize("cls", HTTPX, ids=lambda c: c.__name__)
def test_every_httpx_error_is_mapped_by_the_platform_api_and_the_graph_api(cls: type[BaseException]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise instance(cls)

    with pytest.raises(PlatformAPIError) as platform:
        PlatformAPI("http://lineup.test", "t", transport=httpx.MockTransport(handler)).queue_metrics()
    endpoint = WhatsAppEndpoint(phone_number_id="1", waba_id="2", access_token_env="WA", graph_url="http://graph.test")
    with pytest.raises(ProviderError) as graph:
        Graph(endpoint, timeout=1, transport=httpx.MockTransport(handler), token="t").request("GET", "/x")
    if issubclass(cls, httpx.TransportError):  # the network: unreachable, and known down for the run
        assert isinstance(platform.value, PlatformUnreachable) and isinstance(graph.value, ProviderTimeout)
    else:  # an answer that cannot be read
        assert isinstance(platform.value, PlatformResponseError) and isinstance(graph.value, ProviderResponseError)


def test_a_real_answer_with_broken_compression_is_a_response_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip"))

    with pytest.raises(PlatformResponseError, match="could not be read"):
        PlatformAPI("http://lineup.test", "t", transport=httpx.MockTransport(handler)).queue_metrics()


BOTOCORE = [c for _, c in inspect.getmembers(bx, inspect.isclass)
            if issubclass(c, Exception) and c.__module__.startswith("botocore")]


@pytest.mark.parametrize("cls", BOTOCORE, ids=lambda c: c.__name__)
def test_every_botocore_error_is_classified_for_ses(cls: type[BaseException]) -> None:
    exc = cls({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetSendQuota") \
        if issubclass(cls, bx.ClientError) else instance(cls)
    classification, detail = ses.classify(exc)
    assert classification in {"permission_denied", "credentials_invalid", "throttled", "sending_disabled",
                              "provider_error", "config", "unreachable", "bad_response"}
    assert detail
    if issubclass(cls, ses.UNREACHABLE):
        assert classification == "unreachable"
    if issubclass(cls, ses.NOT_CONFIGURED):
        assert classification == "config"
    if issubclass(cls, bx.ClientError):
        assert classification != "unreachable"


def test_ses_error_codes_go_to_their_own_class() -> None:
    for code, expected in [("AccessDenied", "permission_denied"), ("InvalidClientTokenId", "credentials_invalid"),
                           ("Throttling", "throttled"), ("AccountSendingPausedException", "sending_disabled"),
                           ("InternalFailure", "provider_error")]:
        assert ses.classify(bx.ClientError({"Error": {"Code": code, "Message": "m"}}, "op"))[0] == expected


TWILIO = tree(rx.RequestException, rx) + [c for _, c in inspect.getmembers(tx, inspect.isclass)
                                          if issubclass(c, Exception) and c.__module__.startswith("twilio")]


@pytest.mark.parametrize("cls", TWILIO, ids=lambda c: f"{c.__module__.split('.')[0]}.{c.__name__}")
def test_every_twilio_and_requests_error_is_mapped(cls: type[BaseException]) -> None:
    if issubclass(cls, tx.TwilioRestException):
        exc: BaseException = cls(401, "https://api.twilio.com/x", msg="Authenticate", code=20003)
    elif cls.__name__ == "TwilioServiceException":
        exc = cls(type_uri="https://www.twilio.com/docs/errors/20003", title="Authenticate", status=401, code=20003)
    else:
        exc = instance(cls)
    mapped = twilio.normalise(exc)
    assert isinstance(mapped, ProviderError) and str(mapped)
    if issubclass(cls, rx.Timeout | rx.ConnectionError):
        assert isinstance(mapped, ProviderTimeout) and mapped.code in ("timeout", "unreachable")
    if issubclass(cls, tx.TwilioRestException) or cls.__name__ == "TwilioServiceException":
        assert mapped.code == "20003" and type(mapped).__name__ == "ProviderAuthError"


SMTP = tree(smtplib.SMTPException, smtplib) + tree(ssl.SSLError, ssl) + [
    socket.gaierror, TimeoutError, ConnectionRefusedError, ConnectionResetError, BrokenPipeError, OSError]


@pytest.mark.parametrize("stage", ["connect", "EHLO", "STARTTLS", "AUTH", "NOOP"])
@pytest.mark.parametrize("cls", SMTP, ids=lambda c: c.__name__)
def test_every_smtplib_ssl_and_socket_error_is_classified(cls: type[BaseException], stage: str) -> None:
    exc = instance(cls)
    for attr, value in (("smtp_code", 535), ("smtp_error", b"5.7.8 rejected")):
        setattr(exc, attr, value)
    classification, detail = smtp.classify(exc, stage)
    assert classification in {smtp.UNREACHABLE, smtp.TLS, smtp.AUTH_REJECTED, smtp.SERVER_ERROR} and detail
    if issubclass(cls, smtplib.SMTPAuthenticationError):
        assert classification == smtp.AUTH_REJECTED
    if issubclass(cls, ssl.SSLError):
        assert classification == smtp.TLS
    if cls in (ConnectionRefusedError, socket.gaierror):
        assert classification == smtp.UNREACHABLE
