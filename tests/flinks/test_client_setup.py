"""FlinksClient's constructor refuses configuration that would send requests somewhere odd."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from app.flinks import FlinksClient, RetryPolicy
from tests.flinks.fakes import API_URL, BANKING_PATH, CUSTOMER_ID, SECRET, FakeFlinks, make_client


@pytest.mark.parametrize(
    "api_url",
    [
        "toolbox-api.private.fin.ag",
        "ftp://toolbox-api.private.fin.ag",
        "https://toolbox-api.private.fin.ag/?x=1",
        "https://toolbox-api.private.fin.ag/#x",
        "https://me:pw@toolbox-api.private.fin.ag",
        "https://",
    ],
)
async def test_api_url_must_be_a_plain_http_base(http: httpx.AsyncClient, api_url: str) -> None:
    with pytest.raises(ValueError, match="api_url"):
        FlinksClient(
            httpx.AsyncClient(),
            api_url=api_url,
            customer_id=CUSTOMER_ID,
            secret_key=SecretStr(SECRET),
        )


@pytest.mark.parametrize("customer_id", ["", "../admin", "a/b", "a?b", "x" * 65])
async def test_customer_id_must_be_a_single_safe_path_segment(
    http: httpx.AsyncClient, customer_id: str
) -> None:
    with pytest.raises(ValueError, match="customer_id"):
        FlinksClient(
            httpx.AsyncClient(),
            api_url=API_URL,
            customer_id=customer_id,
            secret_key=SecretStr(SECRET),
        )


async def test_the_secret_key_must_not_be_empty(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="secret_key"):
        FlinksClient(http, api_url=API_URL, customer_id=CUSTOMER_ID, secret_key=SecretStr(""))


async def test_a_trailing_slash_on_api_url_is_harmless(
    fake: FakeFlinks, http: httpx.AsyncClient, retry: RetryPolicy
) -> None:
    await make_client(http, retry, api_url=API_URL + "/").generate_authorize_token()

    assert fake.requests[0].url.path == f"{BANKING_PATH}/GenerateAuthorizeToken"


def test_the_client_shows_no_secret_in_its_repr(flinks: FlinksClient) -> None:
    assert SECRET not in repr(flinks)
    assert SECRET not in repr(vars(flinks))
