"""One module per runbook: its parameters, checks, diagnosis rules and mitigations."""
