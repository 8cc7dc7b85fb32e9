"""Webhook ingest: an HTTP endpoint taking signed canonical events, Twilio TaskRouter event callbacks
and Amazon Connect contact events (webhook_parser maps them, webhook_source serves them)."""
