"""The Flinks Connect iframe URL (flinks-contract.md section 5.2).

Our own parameters (`authorizeToken`, `demo`, `language`, `redirectUrl`, `jsRedirect`, `tag`)
come only from this function's arguments. Callers may add options from `CONNECT_OPTIONS`, each
checked by a strict rule; anything else is refused with a `ConnectOptionError` that names the
option and never quotes its value.

`jsRedirect=true` is sent by default: Connect then reports success through its `REDIRECT`
postMessage event instead of navigating to `redirectUrl`, which is what the BFF's frontend
listens for. `jsRedirect` is not in Flinks' documented parameter list, though (contract 12.1
#7): a Connect that ignores it navigates the top window to `redirectUrl?loginId=…`, so
`redirect_url` must be a page that expects the loginId there. The BFF passes its own Connect
landing page (app/api/landing.py), allowed by adding it to `allowed_redirect_urls`.
`innerRedirect` is never sent: its meaning is undocumented.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Final, get_args
from urllib.parse import quote

from app.flinks.models import FlinksLanguage
from app.flinks.urls import checked_base_url


class ConnectOptionError(ValueError):
    """A Connect parameter was refused. `option` is its name (or a placeholder if the name
    itself is not a plain identifier)."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"Connect option {option} {problem}")
        self.option = option


# A rule returns the query-string value for an acceptable option value, None otherwise.
_Rule = Callable[[object], str | None]

_HEX_COLOUR: Final = re.compile(r"[0-9A-Fa-f]{6}")
_IDENTIFIER: Final = re.compile(r"[A-Za-z][A-Za-z0-9]{0,39}")
_TAG: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_NAME_PUNCTUATION: Final = frozenset(" .,'&()-")
_LANGUAGES: Final = get_args(FlinksLanguage)


def _flag(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    return None


def _only_true(value: object) -> str | None:
    return "true" if value is True else None


def _one_of(*choices: str) -> _Rule:
    def rule(value: object) -> str | None:
        return value if isinstance(value, str) and value in choices else None

    return rule


def _hex_colour(value: object) -> str | None:
    return value if isinstance(value, str) and _HEX_COLOUR.fullmatch(value) else None


def _int_between(low: int, high: int) -> _Rule:
    def rule(value: object) -> str | None:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return str(value)
        return None

    return rule


def _display_name(value: object) -> str | None:
    if (
        isinstance(value, str)
        and 0 < len(value) <= 60
        and value == value.strip(" ")
        and all(c.isalnum() or c in _NAME_PUNCTUATION for c in value)
    ):
        return value
    return None


def _identifier_list(value: object) -> str | None:
    if (
        isinstance(value, (list, tuple))
        and 0 < len(value) <= 10
        and all(isinstance(item, str) and _IDENTIFIER.fullmatch(item) for item in value)
    ):
        return ",".join(value)
    return None


CONNECT_OPTIONS: Final[Mapping[str, _Rule]] = MappingProxyType(
    {
        # Only "on": switching Flinks' consent screen off obliges us to host a compliant one
        # (contract 7.3), which is a deployment decision, not a caller's.
        "consentEnable": _only_true,
        "customerName": _display_name,
        "theme": _one_of("dark", "light"),
        "desktopLayout": _flag,
        "institutionFilterEnable": _flag,
        "headerEnable": _flag,
        "headerImgEnable": _flag,
        "backEnable": _flag,
        "staticLoadingEnable": _flag,
        "removePadding": _flag,
        "fixedHeightEnable": _flag,
        "boxLayout": _flag,
        "loadingType": _one_of("dots", "progressbar"),
        "backgroundColor": _hex_colour,
        "foregroundColor1": _hex_colour,
        "foregroundColor2": _hex_colour,
        "productType": _one_of("banking", "investment"),
        "accountSelectorEnable": _flag,
        "accountSelectorMultiple": _flag,
        "accountSelectorNoTitle": _flag,
        "accountSelectorCurrency": _one_of("cad", "usd"),
        "daysOfTransactions": _one_of("Days90", "Days365"),
        "scheduleRefresh": _flag,
        "maximumRetry": _int_between(1, 10),
        "closeEnable": _flag,
        "enhancedMFA": _flag,
        "skipEnhancedMFA": _flag,
        "features": _identifier_list,
    }
)
# termsUrl is left out on purpose: a caller-chosen link inside Flinks' own screens invites
# phishing, and the terms page belongs in configuration.

RESERVED_PARAMETERS: Final = frozenset(
    {"authorizeToken", "demo", "language", "redirectUrl", "tag", "jsRedirect", "innerRedirect"}
)
_RESERVED_FOLDED: Final = frozenset(name.casefold() for name in RESERVED_PARAMETERS)


def build_connect_url(
    connect_url: str,
    *,
    authorize_token: str,
    demo: bool,
    language: str,
    redirect_url: str | None,
    allowed_redirect_urls: Collection[str],
    tag: str | None,
    options: Mapping[str, object],
    js_redirect: bool = True,
) -> str:
    """The iframe URL; `redirect_url` must be exactly one of `allowed_redirect_urls`."""
    base = checked_base_url(connect_url, what="connect_url")
    if isinstance(allowed_redirect_urls, str):
        raise TypeError("allowed_redirect_urls must be a collection of URLs, not one URL")
    if not authorize_token or not authorize_token.isprintable():
        raise ValueError("authorize_token is empty or not printable")

    params: list[tuple[str, str]] = [("authorizeToken", authorize_token)]
    if demo:
        params.append(("demo", "true"))
    if language not in _LANGUAGES:
        raise ConnectOptionError("language", "must be 'en' or 'fr'")
    params.append(("language", language))
    if redirect_url is not None:
        if redirect_url not in allowed_redirect_urls:
            raise ConnectOptionError("redirectUrl", "is not one of the allowed redirect URLs")
        params.append(("redirectUrl", redirect_url))
    if js_redirect:
        params.append(("jsRedirect", "true"))
    if tag is not None:
        if not _TAG.fullmatch(tag):
            raise ConnectOptionError("tag", "must be 1-64 letters, digits or . _ : -")
        params.append(("tag", tag))
    params.extend(_checked_options(options))
    return f"{base}?{_query(params)}"


def _query(params: list[tuple[str, str]]) -> str:
    """Every name and value percent-encoded as UTF-8. Text that has no UTF-8 form (a lone
    surrogate, even in a configured allow-list) is refused by name, like any bad value."""
    pairs: list[str] = []
    for name, value in params:
        try:
            pairs.append(f"{quote(name, safe='')}={quote(value, safe='')}")
        except UnicodeEncodeError:
            # `from None`: the encoding error carries the value itself.
            raise ConnectOptionError(name, "is not valid Unicode text") from None
    return "&".join(pairs)


def _checked_options(options: Mapping[str, object]) -> list[tuple[str, str]]:
    checked: list[tuple[str, str]] = []
    for name, value in options.items():
        rule = CONNECT_OPTIONS.get(name)
        if rule is None:
            shown = name if isinstance(name, str) and _IDENTIFIER.fullmatch(name) else "(unnamed)"
            if shown.casefold() in _RESERVED_FOLDED:
                raise ConnectOptionError(shown, "is set by the BFF, not by options")
            raise ConnectOptionError(shown, "is not allowed")
        query_value = rule(value)
        if query_value is None:
            raise ConnectOptionError(name, "has a value that is not allowed")
        checked.append((name, query_value))
    return sorted(checked)
