"""The channels, each declared once: its name in the API and its queue, its value in `message_logs.channel`,
the classifier of its errors, the provider kinds that carry it, and the provider the platform uses for it in
a healthy system.

`schema`, `queues`, `platform_api`, the sandbox and the runbooks read these; none lists the channels itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runbooklib.errorcodes import classify_email_error, classify_sms_error, classify_whatsapp_error


@dataclass(frozen=True)
class Channel:
    """One channel of the communication system."""

    name: str
    """Its name in the Lineup API and its BullMQ queue (lower case)."""
    log_name: str
    """Its value in `message_logs.channel`."""
    label: str
    default_provider: str
    """The platform's provider name for it in a healthy system (the sandbox's default)."""
    classify: Callable[[str | None, str | None], str]
    """A failure's error class from its `metadata.error` text and `error_code` (see `errorcodes`)."""
    providers: tuple[str, ...]
    """The provider kinds (`runbooklib.endpoints`) that carry it."""


CHANNELS = (
    Channel("email", "EMAIL", "Email", "ses", classify_email_error, ("smtp", "ses")),
    Channel("sms", "SMS", "SMS", "twilio", classify_sms_error, ("twilio",)),
    Channel("whatsapp", "WHATSAPP", "WhatsApp", "meta", classify_whatsapp_error, ("whatsapp",)),
)
NAMES = tuple(c.name for c in CHANNELS)
"""The API and queue names of every channel, in declaration order."""
LOG_NAMES = tuple(c.log_name for c in CHANNELS)


def get(name: str) -> Channel:
    """The channel whose API name or `message_logs` value is `name`."""
    for channel in CHANNELS:
        if name in (channel.name, channel.log_name):
            return channel
    raise KeyError(f"unknown channel {name!r}; channels: {', '.join(NAMES)}")
