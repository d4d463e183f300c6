"""Server-rendered HTML of the OAuth bank login page (string templates, everything escaped)."""

from __future__ import annotations

from html import escape

from app.sandbox.challenges import (
    IMAGE_SELECTION,
    MULTIPLE_ANSWERS,
    TEXT_OR_CALL,
    TEXT_OR_CALL_METHODS,
    Challenge,
)
from app.sandbox.users import INSTITUTION_DISPLAY_NAME

STRINGS = {
    "en": {
        "title": "Sign in to {bank}",
        "intro": "Sign in to share your account information.",
        "username": "Username",
        "password": "Password",
        "sign_in": "Sign in",
        "deny": "Deny access",
        "invalid_login": "The username or password is incorrect.",
        "mfa_title": "Security question",
        "answer": "Answer",
        "continue": "Continue",
        "invalid_answer": "That answer is incorrect. Please try again.",
        "send_to": "Send the code to",
        "Text": "Text message",
        "Call": "Phone call",
        "gone_title": "Session ended",
        "gone": "This sign-in session has ended or does not exist. "
        "Start again from the application.",
    },
    "fr": {
        "title": "Connexion à {bank}",
        "intro": "Connectez-vous pour partager les informations de votre compte.",
        "username": "Nom d'utilisateur",
        "password": "Mot de passe",
        "sign_in": "Se connecter",
        "deny": "Refuser l'accès",
        "invalid_login": "Le nom d'utilisateur ou le mot de passe est incorrect.",
        "mfa_title": "Question de sécurité",
        "answer": "Réponse",
        "continue": "Continuer",
        "invalid_answer": "Cette réponse est incorrecte. Veuillez réessayer.",
        "send_to": "Envoyer le code au",
        "Text": "Texto",
        "Call": "Appel téléphonique",
        "gone_title": "Session terminée",
        "gone": "Cette session de connexion est terminée ou n'existe pas. "
        "Recommencez depuis l'application.",
    },
}

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

_STYLE = """
body{font-family:system-ui,sans-serif;background:#eef2f6;margin:0;color:#1b2733}
main{box-sizing:border-box;max-width:420px;margin:48px auto;background:#fff;padding:28px;
border-radius:10px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.3rem;margin:0 0 8px}label{display:block;margin:14px 0 4px;font-weight:600}
input{width:100%;min-height:44px;box-sizing:border-box;padding:9px;border:1px solid #b8c4d0;
border-radius:6px;font:inherit;font-size:16px}
.actions{display:flex;flex-wrap:wrap;gap:10px;margin-top:20px}
button{flex:1 1 8em;min-height:44px;padding:10px;border-radius:6px;border:0;font:inherit;
font-size:16px;font-weight:600;cursor:pointer}
button[value=login],button[value=answer]{background:#0b5cad;color:#fff}
button[value=deny]{background:#e4e9ef;color:#1b2733}
.error{background:#fde8e8;color:#8a1c1c;padding:10px;border-radius:6px;margin-top:12px}
.choice{display:flex;gap:8px;align-items:center;min-height:44px;font-weight:400;margin:8px 0;
overflow-wrap:anywhere}
.choice input{flex:none;width:18px;min-height:0;height:18px;margin:0}
.choice img{width:48px;height:48px}
@media (max-width:480px){main{margin:0;min-height:100vh;padding:24px 16px;border-radius:0;
box-shadow:none}}
"""


def _t(language: str) -> dict[str, str]:
    return STRINGS.get(language, STRINGS["en"])


def _page(language: str, title: str, content: str) -> str:
    return (
        f'<!doctype html><html lang="{escape(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{content}</main></body></html>"
    )


def _error(message: str | None) -> str:
    return f'<p class="error" id="error" role="alert">{escape(message)}</p>' if message else ""


def login_page(action: str, language: str, error: str | None = None, username: str = "") -> str:
    t = _t(language)
    title = t["title"].format(bank=INSTITUTION_DISPLAY_NAME)
    content = (
        f"<h1>{escape(title)}</h1><p>{escape(t['intro'])}</p>{_error(error)}"
        f'<form method="post" action="{escape(action)}">'
        f'<label for="username">{escape(t["username"])}</label>'
        f'<input id="username" name="username" autocomplete="username" value="{escape(username)}">'
        f'<label for="password">{escape(t["password"])}</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password">'
        '<div class="actions">'
        f'<button id="sign-in" type="submit" name="action" value="login">{escape(t["sign_in"])}'
        "</button>"
        f'<button id="deny" type="submit" name="action" value="deny">{escape(t["deny"])}</button>'
        "</div></form>"
    )
    return _page(language, title, content)


def _options(name: str, values: list[tuple[str, str]], kind: str = "radio") -> str:
    """Radio buttons or checkboxes: (value, label HTML) pairs; the label is already escaped."""
    return "".join(
        f'<label class="choice" for="{name}-{i}"><input type="{kind}" id="{name}-{i}" '
        f'name="{name}" value="{escape(value)}">{label}</label>'
        for i, (value, label) in enumerate(values)
    )


def _answer_fields(challenge: Challenge, language: str) -> str:
    t = _t(language)
    prompt = f'<p id="prompt"><strong>{escape(challenge.prompt(language))}</strong></p>'
    if challenge.type == TEXT_OR_CALL:
        phones = [(phone, escape(phone)) for phone in challenge.choices]
        methods = [(method, escape(t[method])) for method in TEXT_OR_CALL_METHODS]
        return (
            f"{prompt}<p>{escape(t['send_to'])}</p>{_options('phone', phones)}"
            f"{_options('method', methods)}"
        )
    if challenge.type == IMAGE_SELECTION:
        pictures = [
            (value, f'<img alt="{i + 1}" src="data:image/png;base64,{escape(value)}">')
            for i, value in enumerate(challenge.choices)
        ]
        return prompt + _options("choice", pictures)
    if challenge.choices:
        kind = "checkbox" if challenge.type == MULTIPLE_ANSWERS else "radio"
        return prompt + _options("choice", [(c, escape(c)) for c in challenge.choices], kind)
    return (
        f'<label for="answer" id="prompt">{escape(challenge.prompt(language))}</label>'
        '<input id="answer" name="answer" autocomplete="off">'
    )


def mfa_page(action: str, language: str, challenge: Challenge, error: str | None = None) -> str:
    t = _t(language)
    content = (
        f"<h1>{escape(t['mfa_title'])}</h1>{_error(error)}"
        f'<form method="post" action="{escape(action)}">'
        f"{_answer_fields(challenge, language)}"
        '<div class="actions">'
        f'<button id="continue" type="submit" name="action" value="answer">'
        f"{escape(t['continue'])}</button>"
        f'<button id="deny" type="submit" name="action" value="deny">{escape(t["deny"])}</button>'
        "</div></form>"
    )
    return _page(language, t["mfa_title"], content)


def gone_page(language: str) -> str:
    t = _t(language)
    content = f'<h1>{escape(t["gone_title"])}</h1><p id="gone">{escape(t["gone"])}</p>'
    return _page(language, t["gone_title"], content)


def message(language: str, key: str) -> str:
    return _t(language)[key]
