"""The Connect iframe URL: allow-listed options only, exact round trip, no injection."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.flinks import (
    CONNECT_OPTIONS,
    RESERVED_PARAMETERS,
    ConnectOptionError,
    build_connect_url,
)

CONNECT = "https://toolbox-iframe.private.fin.ag/v2/"
TOKEN = "d65f1adb-8ebc-48dc-be8b-20c773ba1565"
RETURN = "https://app.example/linked"
ALLOWED = frozenset({RETURN, "https://app.example/other"})
NO_OPTIONS: Mapping[str, object] = MappingProxyType({})


def build(
    options: Mapping[str, object] = NO_OPTIONS,
    *,
    token: str = TOKEN,
    demo: bool = True,
    language: str = "en",
    redirect_url: str | None = RETURN,
    allowed: Collection[str] = ALLOWED,
    tag: str | None = "flow-1",
    js_redirect: bool = True,
) -> str:
    return build_connect_url(
        CONNECT,
        authorize_token=token,
        demo=demo,
        language=language,
        redirect_url=redirect_url,
        allowed_redirect_urls=allowed,
        tag=tag,
        options=options,
        js_redirect=js_redirect,
    )


def url_or_refusal(make: Callable[[], str]) -> str | ConnectOptionError:
    try:
        return make()
    except ConnectOptionError as exc:
        return exc


def parse(url: str) -> list[tuple[str, str]]:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CONNECT
    assert parts.fragment == ""
    return parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)


def own_params(
    *, token: str = TOKEN, redirect_url: str = RETURN, tag: str = "flow-1"
) -> list[tuple[str, str]]:
    return [
        ("authorizeToken", token),
        ("demo", "true"),
        ("language", "en"),
        ("redirectUrl", redirect_url),
        ("jsRedirect", "true"),
        ("tag", tag),
    ]


def test_a_typical_url_reads_as_expected() -> None:
    url = build({"theme": "light", "consentEnable": True, "backgroundColor": "f7f7f7"})

    assert url == (
        "https://toolbox-iframe.private.fin.ag/v2/?authorizeToken=" + TOKEN
        + "&demo=true&language=en&redirectUrl=https%3A%2F%2Fapp.example%2Flinked"
        + "&jsRedirect=true&tag=flow-1&backgroundColor=f7f7f7&consentEnable=true&theme=light"
    )  # fmt: skip


def test_optional_own_parameters_can_be_left_out() -> None:
    url = build(demo=False, redirect_url=None, tag=None, js_redirect=False, language="fr")

    assert parse(url) == [("authorizeToken", TOKEN), ("language", "fr")]


# Each option with a strategy for (value given, value expected in the URL).
def _same(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[object, str]]:
    return strategy.map(lambda v: (v, v))


FLAG = st.booleans().map(lambda b: (b, "true" if b else "false"))
HEX = _same(st.text("0123456789abcdefABCDEF", min_size=6, max_size=6))
NAME = _same(
    st.text(
        st.one_of(st.characters(categories=["L", "N"]), st.sampled_from(" .,'&()-")),
        min_size=1,
        max_size=60,
    ).filter(lambda v: v == v.strip(" "))
)
FEATURES = st.lists(
    st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,12}", fullmatch=True), min_size=1, max_size=10
).map(lambda names: (names, ",".join(names)))


def _choice(*values: str) -> st.SearchStrategy[tuple[object, str]]:
    return _same(st.sampled_from(values))


VALID: dict[str, st.SearchStrategy[tuple[object, str]]] = {
    "consentEnable": st.just((True, "true")),
    "customerName": NAME,
    "theme": _choice("dark", "light"),
    "desktopLayout": FLAG,
    "institutionFilterEnable": FLAG,
    "headerEnable": FLAG,
    "headerImgEnable": FLAG,
    "backEnable": FLAG,
    "staticLoadingEnable": FLAG,
    "removePadding": FLAG,
    "fixedHeightEnable": FLAG,
    "boxLayout": FLAG,
    "loadingType": _choice("dots", "progressbar"),
    "backgroundColor": HEX,
    "foregroundColor1": HEX,
    "foregroundColor2": HEX,
    "productType": _choice("banking", "investment"),
    "accountSelectorEnable": FLAG,
    "accountSelectorMultiple": FLAG,
    "accountSelectorNoTitle": FLAG,
    "accountSelectorCurrency": _choice("cad", "usd"),
    "daysOfTransactions": _choice("Days90", "Days365"),
    "scheduleRefresh": FLAG,
    "maximumRetry": st.integers(1, 10).map(lambda n: (n, str(n))),
    "closeEnable": FLAG,
    "enhancedMFA": FLAG,
    "skipEnhancedMFA": FLAG,
    "features": FEATURES,
}

valid_options = st.lists(st.sampled_from(sorted(VALID)), unique=True).flatmap(
    lambda names: st.fixed_dictionaries({name: VALID[name] for name in names})
)


def test_every_allowed_option_has_a_strategy() -> None:
    assert set(VALID) == set(CONNECT_OPTIONS)
    assert not RESERVED_PARAMETERS & set(CONNECT_OPTIONS)


@given(valid_options)
def test_valid_options_round_trip_exactly(chosen: dict[str, tuple[object, str]]) -> None:
    url = build({name: given for name, (given, _) in chosen.items()})

    expected = sorted((name, in_url) for name, (_, in_url) in chosen.items())
    assert parse(url) == own_params() + expected


ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 20),
    st.floats(),
    st.text(max_size=30),
    st.lists(st.text(max_size=8), max_size=3),
    st.sampled_from(["true", "dark", "Days90", "ffffff", "#ffffff", "1", "cad"]),
)
ANY_NAME = st.one_of(
    st.sampled_from(sorted(CONNECT_OPTIONS) + sorted(RESERVED_PARAMETERS) + ["Tag", "requestId"]),
    st.text(max_size=20),
)


@given(st.dictionaries(ANY_NAME, ANY_VALUE, max_size=5))
def test_nothing_outside_the_allow_list_reaches_the_url(options: dict[str, object]) -> None:
    url = url_or_refusal(lambda: build(options))
    if isinstance(url, ConnectOptionError):
        assert url.option in options or url.option == "(unnamed)"
        return

    params = parse(url)
    assert params[:6] == own_params()
    added = dict(params[6:])
    assert len(added) == len(params) - 6  # no parameter twice
    assert set(added) == set(options) <= set(CONNECT_OPTIONS)
    for name, value in options.items():
        assert added[name] == CONNECT_OPTIONS[name](value)


TRICKY_TEXT = st.text(
    st.one_of(st.sampled_from("&#%=?+/;\n\r\t \x00\u2028\u202e\ufeff"), st.characters()),
    max_size=40,
)


@given(TRICKY_TEXT)
def test_the_token_cannot_inject_parameters(token: str) -> None:
    try:
        url = build(token=token)
    except ValueError:
        assert not token or not token.isprintable()
        return
    assert parse(url) == own_params(token=token)


@given(TRICKY_TEXT)
def test_the_tag_cannot_inject_parameters(tag: str) -> None:
    url = url_or_refusal(lambda: build(tag=tag))
    if isinstance(url, ConnectOptionError):
        assert url.option == "tag"
    else:
        assert parse(url) == own_params(tag=tag)


@given(TRICKY_TEXT)
def test_a_text_option_cannot_inject_parameters(name: str) -> None:
    url = url_or_refusal(lambda: build({"customerName": name}))
    if isinstance(url, ConnectOptionError):
        assert url.option == "customerName"
    else:
        assert parse(url) == [*own_params(), ("customerName", name)]


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@given(
    allowed=st.lists(TRICKY_TEXT, max_size=4, unique=True),
    pick=st.none() | st.integers(0, 3),
    other=TRICKY_TEXT,
)
# A lone surrogate in the allow-list once escaped as a UnicodeEncodeError.
@example(allowed=["\ud800"], pick=0, other="")
def test_redirect_url_only_ever_comes_from_the_allow_list(
    allowed: list[str], pick: int | None, other: str
) -> None:
    """The candidate is an allow-listed URL (when `pick` says so) or any other text."""
    candidate = allowed[pick % len(allowed)] if allowed and pick is not None else other

    url = url_or_refusal(lambda: build(redirect_url=candidate, allowed=frozenset(allowed)))
    if isinstance(url, ConnectOptionError):
        assert url.option == "redirectUrl"
        assert candidate not in allowed or not _encodable(candidate)
    else:
        assert candidate in allowed
        assert parse(url) == own_params(redirect_url=candidate)


@pytest.mark.parametrize(
    "name", [*sorted(RESERVED_PARAMETERS), "Tag", "REDIRECTURL", "AuthorizeToken", "jsredirect"]
)
def test_own_parameters_cannot_be_set_through_options(name: str) -> None:
    with pytest.raises(ConnectOptionError, match="set by the BFF") as caught:
        build({name: "x"})
    assert caught.value.option == name


CANARY = "VALUE-CANARY-7&x\n"


@pytest.mark.parametrize("name", sorted(CONNECT_OPTIONS))
def test_a_refused_value_is_named_but_never_echoed(name: str) -> None:
    with pytest.raises(ConnectOptionError) as caught:
        build({name: CANARY})

    assert caught.value.option == name
    assert name in str(caught.value)
    assert "CANARY" not in str(caught.value)


def test_an_unknown_option_name_that_is_not_an_identifier_is_not_echoed() -> None:
    with pytest.raises(ConnectOptionError) as caught:
        build({"x&authorizeToken=" + CANARY: True})
    assert caught.value.option == "(unnamed)"
    assert "CANARY" not in str(caught.value)


@pytest.mark.parametrize(
    "options",
    [
        {"consentEnable": False},
        {"desktopLayout": "true"},
        {"maximumRetry": True},
        {"maximumRetry": 11},
        {"backgroundColor": "#f7f7f7"},
        {"backgroundColor": "f7f7f7\n"},
        {"theme": "Dark"},
        {"features": "TransactionHistory"},
        {"features": ["Transaction History"]},
        {"customerName": " FinTech"},
        {"customerName": "x" * 61},
        {"termsUrl": "https://example.com/terms"},
    ],
)
def test_strict_rules_refuse_near_misses(options: dict[str, object]) -> None:
    with pytest.raises(ConnectOptionError):
        build(options)


@pytest.mark.parametrize(
    "connect_url",
    [
        "ftp://toolbox-iframe.private.fin.ag/v2/",
        "https://toolbox-iframe.private.fin.ag/v2/?demo=true",
        "https://toolbox-iframe.private.fin.ag/v2/#x",
        "https://user@toolbox-iframe.private.fin.ag/v2/",
        "/v2/",
    ],
)
def test_the_connect_url_must_be_a_plain_base(connect_url: str) -> None:
    with pytest.raises(ValueError, match="connect_url"):
        build_connect_url(
            connect_url,
            authorize_token=TOKEN,
            demo=False,
            language="en",
            redirect_url=None,
            allowed_redirect_urls=(),
            tag=None,
            options={},
        )


def test_misuse_is_refused() -> None:
    with pytest.raises(TypeError):
        build(allowed=RETURN)  # one string is a Collection[str] too: a substring would match
    with pytest.raises(ValueError, match="authorize_token"):
        build(token="")
    with pytest.raises(ConnectOptionError) as caught:
        build(language="de")
    assert caught.value.option == "language"
