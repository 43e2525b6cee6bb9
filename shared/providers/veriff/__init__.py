"""Veriff: its decision and event webhooks with its code tables (`inbound`), and its API client
with the local stand-in (`adapter`). Its line is in `shared.providers.registry.PROVIDERS`."""
