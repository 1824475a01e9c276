"""A runbook kept outside the package, to prove a runbook is added without touching `lib/`."""
