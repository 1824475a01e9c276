"""The channels, each declared once: its name in the API and its queue, its value in `message_logs.channel`,
and the provider the platform uses for it in a healthy system.

`schema`, `queues`, `platform_api`, the sandbox and the runbooks read these; none lists the channels
itself. Each channel's error classifier is in `errorcodes` (`classify_<channel>_error`).
"""

from __future__ import annotations

from dataclasses import dataclass


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


CHANNELS = (
    Channel("email", "EMAIL", "Email", "ses"),
    Channel("sms", "SMS", "SMS", "twilio"),
    Channel("whatsapp", "WHATSAPP", "WhatsApp", "meta"),
)
NAMES = tuple(c.name for c in CHANNELS)
"""The API and queue names of every channel, in declaration order."""
LOG_NAMES = tuple(c.log_name for c in CHANNELS)

