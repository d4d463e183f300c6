"""HTTP out: the client every outbound call shares, and events out to the host backend's
endpoint (the signed POST; the app decides when)."""

from app.outbound.sender import Attempt, DestinationRefused, WebhookSender, private_address
from app.outbound.transport import Transport, outbound_client

__all__ = [
    "Attempt",
    "DestinationRefused",
    "Transport",
    "WebhookSender",
    "outbound_client",
    "private_address",
]
