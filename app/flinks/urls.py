"""Checks on URLs: the configured base URLs, and the Location Flinks redirects to."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit


def checked_base_url(url: str, *, what: str) -> str:
    """`url` itself if it is an absolute http(s) URL with no user-info, query or fragment; a
    ValueError naming `what` otherwise."""
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"{what} must be an http(s) URL without user-info, query or fragment")
    return url


def resolved_location(request_url: str, location: str | None) -> str | None:
    """`location` resolved against the request URL, or None if it is empty, holds whitespace,
    control characters or backslashes (which browsers read as slashes), has user-info, or is
    absolute without a host: anything a browser might read differently from urllib."""
    if not location or not location.isprintable() or any(c.isspace() for c in location):
        return None
    try:
        given = urlsplit(location)
        target = urljoin(request_url, location)
        parts = urlsplit(target)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if "\\" in location or (given.scheme and not given.hostname):
        return None
    return target if parts.hostname and "@" not in parts.netloc else None
