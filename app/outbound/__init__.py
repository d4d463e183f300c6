"""Events out to the host backend's HTTP endpoint: the signed POST (the app decides when)."""

from app.outbound.sender import Attempt, DestinationRefused, WebhookSender, private_address

__all__ = ["Attempt", "DestinationRefused", "WebhookSender", "private_address"]
