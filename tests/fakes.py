"""Fakes shared by every test; they live in clampdown.testing so users can reuse them."""

from clampdown.testing.webhook import Delivery, Reply, WebhookReceiver

__all__ = ["Delivery", "Reply", "WebhookReceiver"]
