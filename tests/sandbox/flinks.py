"""`SandboxApi`: raw calls to the sandbox's Flinks API for the sandbox tests (Flinks' paths,
headers and bodies, nothing more). Not the BFF's `app.flinks.FlinksClient`."""

from __future__ import annotations

from typing import Any

import httpx

from tests.sandbox.server import SandboxHandle

ANSWERS = {
    "What city were you born in?": "Montreal",
    "What is the best country on earth?": "Canada",
    "What shape do people like most?": "Triangle",
    "Dans quelle ville êtes-vous né?": "Montréal",
    "Quel est le meilleur pays au monde?": "Canada",
    "Quelle forme les gens préfèrent-ils?": "Triangle",
}
PASSWORD = "Everyday"


def answer_for(prompt: str) -> str:
    return ANSWERS[prompt]


class SandboxApi:
    def __init__(self, sandbox: SandboxHandle, http: httpx.Client) -> None:
        self.sandbox = sandbox
        self.http = http
        self.api = sandbox.api_url

    def post(self, endpoint: str, body: Any = None, **headers: str) -> httpx.Response:
        return self.http.post(f"{self.api}/{endpoint}", json=body, headers=headers)

    def token(self) -> str:
        response = self.post("GenerateAuthorizeToken", **{"flinks-auth-key": self.secret})
        assert response.status_code == 200, response.text
        token: str = response.json()["Token"]
        return token

    @property
    def secret(self) -> str:
        return self.sandbox.settings.secret_key

    @property
    def api_key(self) -> str:
        return self.sandbox.settings.api_key

    def authorize(self, body: dict[str, Any], token: str | None = None) -> httpx.Response:
        return self.post("Authorize", body, **{"flinks-auth-key": token or self.token()})

    def live(
        self, username: str, password: str = PASSWORD, token: str | None = None, **fields: Any
    ) -> httpx.Response:
        body = {
            "Username": username,
            "Password": password,
            "Institution": "FlinksCapital",
            "MostRecentCached": False,
            **fields,
        }
        return self.authorize(body, token)

    def answer(
        self, challenge: httpx.Response, token: str | None = None, **extra: Any
    ) -> httpx.Response:
        data = challenge.json()
        prompt = data["SecurityChallenges"][0]["Prompt"]
        body = {"RequestId": data["RequestId"], "SecurityResponses": {prompt: [answer_for(prompt)]}}
        return self.authorize({**body, **extra}, token)

    def connect(self, username: str = "greatday_nomfa", **extra: Any) -> dict[str, Any]:
        """A saved, authorized session for the user (answering MFA); returns the 200 body."""
        response = self.live(username, Save=True, **extra)
        while response.status_code == 203:
            response = self.answer(response)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def issue_login(self, username: str) -> str:
        response = self.http.post(
            f"{self.sandbox.base_url}/__sandbox/logins", json={"username": username}
        )
        assert response.status_code == 201, response.text
        login_id: str = response.json()["login_id"]
        return login_id

    def data(self, endpoint: str, body: Any = None, api_key: str | None = None) -> httpx.Response:
        return self.post(endpoint, body, **{"x-api-key": api_key or self.api_key})

    def get(self, path: str, api_key: str | None = None) -> httpx.Response:
        return self.http.get(f"{self.api}/{path}", headers={"x-api-key": api_key or self.api_key})

    def calls(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        params = {"endpoint": endpoint} if endpoint else {}
        response = self.http.get(f"{self.sandbox.base_url}/__sandbox/calls", params=params)
        calls: list[dict[str, Any]] = response.json()
        return calls

    def control(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return self.http.request(method, f"{self.sandbox.base_url}/__sandbox/{path}", json=json)
