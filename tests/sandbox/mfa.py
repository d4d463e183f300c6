"""The right (and wrong) answers to every challenge the sandbox's test users get, for the tests.

Written out from the README's user table rather than read from app/sandbox, so a change in what
the sandbox asks shows up as a failing test. ImageSelection's right answer is the triangle, read
from the pixels of the PNG it is sent as.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from tests.sandbox.flinks import answer_for

CHOICE_ANSWERS: dict[str, list[str]] = {
    # QuestionAndAnswer with Iterables (test_mfa_question_choices), in English and French.
    "What city were you born in?": ["Montreal"],
    "What is the best country on earth?": ["Canada"],
    "What shape do people like most?": ["Triangle"],
    "Dans quelle ville êtes-vous né?": ["Montreal"],
    "Quel est le meilleur pays au monde?": ["Canada"],
    "Quelle forme les gens préfèrent-ils?": ["Triangle"],
    # MultipleChoice (test_mfa_multiple_choice)
    "Which bank did you open your first account with?": ["Flinks Capital"],
    "What is your lucky number?": ["7"],
    "In which city is your branch?": ["Halifax"],
    "Auprès de quelle banque avez-vous ouvert votre premier compte?": ["Flinks Capital"],
    # MultipleChoiceMultipleAnswers (test_mfa_multiple_answers)
    "Which of these cities have you lived in?": ["Montreal", "Quebec City"],
    "Which of these are your lucky numbers?": ["7", "42"],
    "Which of these shapes do you like?": ["Triangle", "Star"],
}
SECURITY_CODE = "123456"
PHONE = "•••-•••-4242"


def png_rows(encoded: str) -> list[bytes]:
    """The RGB rows of a base64 8-bit RGB PNG without filters (as the sandbox draws them)."""
    data = base64.b64decode(encoded, validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (depth, colour) == (8, 2)
    pixels, at = b"", 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if data[at + 4 : at + 8] == b"IDAT":
            pixels += data[at + 8 : at + 8 + length]
        at += 12 + length
    raw = zlib.decompress(pixels)
    stride = 1 + 3 * width
    return [raw[y * stride + 1 : (y + 1) * stride] for y in range(height)]


def is_triangle(encoded: str) -> bool:
    """Ink widens row by row from a point at the top: a triangle, not a circle/square/diamond."""
    widths = [sum(1 for x in range(0, len(row), 3) if row[x] < 128) for row in png_rows(encoded)]
    inked = [w for w in widths if w]
    return inked[0] <= 2 and inked == sorted(inked) and inked[-1] > 16


def right_responses(challenge: dict[str, Any]) -> dict[str, list[str]]:
    """SecurityResponses that pass one of Flinks' SecurityChallenges entries."""
    kind, prompt = challenge["Type"], challenge["Prompt"]
    if kind == "TextOrCall":
        return {PHONE: ["Text"]}
    if kind == "ImageSelection":
        return {prompt: [next(image for image in challenge["Iterables"] if is_triangle(image))]}
    if prompt.startswith(("Enter the security code", "Entrez le code")):
        return {prompt: [SECURITY_CODE]}
    if "Iterables" in challenge:
        return {prompt: CHOICE_ANSWERS[prompt]}
    return {prompt: [answer_for(prompt)]}


def wrong_responses(challenge: dict[str, Any]) -> dict[str, list[str]]:
    """SecurityResponses keyed right but answering wrong (an offered choice, when there are)."""
    kind, prompt = challenge["Type"], challenge["Prompt"]
    right = right_responses(challenge)
    if kind == "TextOrCall":
        return {PHONE: ["Carrier pigeon"]}
    choices = challenge.get("Iterables") or []
    wrong = [choice for choice in choices if choice not in right[prompt]]
    return {prompt: wrong[:1] or ["Nowhere"]}
