"""A provider kept outside the package, to prove a provider is added without touching `lib/`."""
