"""One signed POST of an event to the host backend (Standard Webhooks), and nothing more.

Knows nothing of the app (as app/flinks): the caller decides what to send and what a failure
means. The signature is the spec's reference library's (`standardwebhooks`), so any Standard
Webhooks library verifies it: `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`.

The call uses the app's shared httpx client (no redirects followed, verified TLS, its pool)
under a short total deadline, and never reads more of an answer than its status line.
Server-side request forgery: unless private destinations are allowed, the URL's host is
resolved here, every address it has must be public, and the request is sent to the address
checked (the Host header and TLS SNI keep the name), so a DNS answer that changes between the
check and the connection (rebinding) cannot point it inside the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook

USER_AGENT = "flinks-bff-webhooks/1"
Outcome = Literal["delivered", "failed", "refused"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to: `delivered` (a 2xx), `failed` (another status, or no answer
    in time: `status` None, `detail` the error's kind) or `refused` (the destination is not a
    public address). `detail` never quotes the answer's body."""

    outcome: Outcome
    status: int | None = None
    detail: str = ""


def private_address(host: str) -> bool:
    """Whether `host` is a loopback, link-local, private, shared, reserved or multicast address
    (or `localhost`); a name that is none of these literally is judged once resolved."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return _not_public(address)


def _not_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


class DestinationRefused(Exception):
    """The URL's host is, or resolves to, an address that is not public."""


class WebhookSender:
    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        secret: str,
        *,
        timeout: float,
        allow_private: bool,
    ) -> None:
        self._http = http
        self._url = url
        self._signer = Webhook(secret)
        self._timeout = timeout
        self._allow_private = allow_private

    async def send(self, event_id: str, body: str, when: datetime) -> Attempt:
        """POSTs `body` signed for `event_id` at `when` (the `webhook-timestamp`)."""
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": self._signer.sign(event_id, when.astimezone(UTC), body),
        }
        try:
            async with asyncio.timeout(self._timeout):
                url, extensions = await self._destination(headers)
                request = self._http.build_request(
                    "POST",
                    url,
                    content=body.encode(),
                    headers=headers,
                    timeout=self._timeout,
                    extensions=extensions,
                )
                response = await self._http.send(request, stream=True, follow_redirects=False)
                await response.aclose()  # the status is the answer; the body is not read
        except DestinationRefused:
            return Attempt("refused", detail="destination_not_public")
        except TimeoutError:
            return Attempt("failed", detail="timeout")
        except httpx.HTTPError as exc:
            return Attempt("failed", detail=type(exc).__name__)
        except OSError as exc:  # a name that does not resolve
            return Attempt("failed", detail=type(exc).__name__)
        if 200 <= response.status_code < 300:
            return Attempt("delivered", response.status_code)
        return Attempt("failed", response.status_code, detail="status")

    async def _destination(self, headers: dict[str, str]) -> tuple[str, dict[str, object]]:
        """The URL to connect to: as configured, or (private destinations refused) pinned to
        the one public address checked, with the name kept in Host and the TLS SNI."""
        if self._allow_private:
            return self._url, {}
        parts = urlsplit(self._url)
        host = parts.hostname or ""
        if private_address(host):
            raise DestinationRefused
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            return self._url, {}
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses or any(_not_public(address) for address in addresses):
            raise DestinationRefused
        chosen = addresses[0]
        netloc = f"[{chosen}]" if chosen.version == 6 else str(chosen)
        if parts.port is not None:
            netloc += f":{parts.port}"
        headers["host"] = parts.netloc.rpartition("@")[2]
        extensions: dict[str, object] = {"sni_hostname": host} if parts.scheme == "https" else {}
        return urlunsplit(parts._replace(netloc=netloc)), extensions
