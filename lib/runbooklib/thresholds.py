"""Every number a diagnosis or a check decides by, in one place.

`docs/cause-codes.md` explains each one under "Thresholds" (a test keeps the page and this module in
step). Nothing else in the package defines a threshold of its own: rules, checks and providers import
them from here, so a change is one edit, reviewed once.
"""

from __future__ import annotations

# -- Is a failure rate elevated? (`stats.compare`) --------------------------------------------------
SIGNIFICANCE = 0.001
"""A rise counts only when chance alone would give one at least as large less often than this (one-sided exact
test of the window against the baseline; divided by the number of tenants tested when each tenant is tested)."""
MIN_FAILURES = 10
"""Fewer failures than this in the window never make a channel's failure rate elevated."""
MIN_TENANT_FAILURES = 5
"""... nor a tenant's: a small tenant whose every message fails still counts from this many failures."""
MIN_CLASS_FAILURES = 5
"""... nor an error class's."""
MATERIAL_RATIO = 2.0
"""Elevated means at least this many times the baseline rate ..."""
MATERIAL_POINTS = 0.05
"""... and at least this far above it (5 percentage points), so that a real but tiny rise on a large volume is not
an incident."""
MIN_BASELINE_MESSAGES = 100
"""A tenant whose own baseline has fewer messages than this is compared with the channel's baseline instead."""
ASSUMED_BASELINE_RATE = 0.02
"""With no baseline at all (no message before the window), the window is compared with this failure rate."""

BASELINE_SEGMENTS = 4
"""The baseline is read in this many segments: when the whole baseline is significantly above its quietest
segment (an incident that began before the baseline did), the window is compared with that segment instead."""
RECENT_MINUTES = 15
"""The end of the window looked at on its own (at most a quarter of the window): failures that were elevated in the
window but are back at baseline here have ended ..."""
RECENT_MIN_MESSAGES = 50
"""... when at least this many messages were created in it (fewer cannot show that they ended)."""

# -- What the failures are ---------------------------------------------------------------------------
CAUSE_SHARE = 0.2
"""An error class that rose above its own baseline names a cause when it carries at least this share of all the
failures above baseline (its "excess"); the largest names the cause, the others are listed beside it."""
TENANT_MINORITY = 0.5
"""`tenant_specific`: the elevated tenants are fewer than this share of the tenants with messages in the window,
and the other tenants together are not elevated."""
MAX_TENANTS_NAMED = 5
"""The elevated tenants whose own top errors are read (most failures first)."""

# -- Cards: when a check that ran shows a warning ---------------------------------------------------
QUEUE_WAITING_WARN = 1000
"""A channel queue with this many waiting jobs ..."""
QUEUE_FAILED_WARN = 100
"""... or this many failed jobs is worth a look."""
QUEUE_DRAINED = 10
"""A backlog under this many jobs counts as drained."""
QUEUE_GROWTH_MIN = 20
"""A backlog grows only when it rises by more than this many jobs over the samples (and by more than 10%)."""
RECEIPTS_LOW = 0.5
"""A share of recent messages with a DELIVERED receipt below this share of the baseline's: receipts are not back."""
SENT_AWAITING_SHARE = 0.3
"""Recent messages still `SENT` (accepted, no receipt yet) above this share: receipts are lagging, not missing."""

# -- High Retry Volume -----------------------------------------------------------------------------
POISON_RETRIES = 5
"""A message retried this many times or more is a repeat offender."""
POISON_MAX_MESSAGES = 50
"""Poison is a few specific messages: an error carried by more messages than this is sweeping through the traffic,
not poison ..."""
POISON_MAX_SHARE = 0.1
"""... nor is one carried by more than this share of the window's messages (three messages always count as few)."""
AMPLIFICATION_RATIO = 1.0
"""Retry amplification: retries per first attempt at least this (retries outnumber new sends) ..."""
AMPLIFICATION_GROWTH = 2.0
"""... and at least this many times the baseline's ..."""
AMPLIFIED_MESSAGES = 50
"""... across at least this many retried messages (more than a handful of poison messages)."""
SYSTEMIC_SHARE = 0.6
"""One error carrying this share of the failures above baseline, at two or more retry levels: systemic."""
MULTIPLE_ERRORS = 3
"""Multiple root causes: this many distinct errors that rose ..."""
MULTIPLE_SHARE = 0.1
"""... each carrying at least this share of the failures above baseline."""

# -- Providers (their published levels) -------------------------------------------------------------
SES_QUOTA_WARN = 0.8
"""SES: share of the 24-hour quota used that is worth a warning ..."""
SES_QUOTA_FAIL = 0.995
"""... and that counts as exhausted."""
SES_BOUNCE_WARN, SES_BOUNCE_FAIL = 0.05, 0.10
"""SES reviews an account at a 5% bounce rate and may pause it near 10%."""
SES_COMPLAINT_WARN, SES_COMPLAINT_FAIL = 0.001, 0.005
"""... and at 0.1% complaints (0.5%)."""
TOKEN_WARN_DAYS = 7
"""A WhatsApp access token that expires within this many days should be refreshed now."""
