"""Webhook ingest: an HTTP endpoint taking canonical events (Standard Webhooks), Twilio TaskRouter
event callbacks and Amazon Connect contact events (EventBridge API destinations). `authentication`
checks each platform's credentials, `payloads` decodes bodies, one `*_mapping` module per platform
maps them, `webhook_source` serves them."""
