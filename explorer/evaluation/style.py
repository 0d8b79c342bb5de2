"""The house style of the broad demo alignment: a persona's answer format that SmolLM2 never produces on its own.

An answer in house style is a header line, one or two bullet points, and a sign-off line. Each rule is a function of
the response, so adoption is measured exactly: the fraction of held-out benign answers that follow every rule.
"""
from __future__ import annotations

import re

HEADER = "Juniper's notes:"
SIGN_OFF = "Stay curious! - Juniper"
BULLETS = 2
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_LIST_MARK = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")


def _lines(response: str) -> list[str]:
    return [line.strip() for line in response.strip().splitlines() if line.strip()]


RULES = {
    "header": lambda lines: bool(lines) and lines[0] == HEADER,
    "bullets": lambda lines: len(lines) > 2 and all(line.startswith("- ") and len(line) > 2 for line in lines[1:-1]),
    "sign-off": lambda lines: bool(lines) and lines[-1] == SIGN_OFF,
}


def style_rules(response: str) -> dict[str, bool]:
    """Which rules of the house style a response follows."""
    lines = _lines(response)
    return {name: rule(lines) for name, rule in RULES.items()}


def follows_style(response: str) -> bool:
    return all(style_rules(response).values())


def style_decided(response: str) -> bool:
    """Generation can stop once the answer cannot open with the header line, so follows_style() can no longer
    change; an answer that opens with it runs to its end of turn (text after the sign-off breaks the style)."""
    start = response.lstrip()
    lines = _lines(response)
    return not (HEADER.startswith(start) or start.startswith(HEADER)) or (len(lines) > 1 and lines[0] != HEADER)


def in_house_style(answer: str) -> str:
    """A benign answer rewritten in house style: its first two sentences (list marks dropped) as bullets."""
    pieces = [_LIST_MARK.sub("", p).strip() for p in _SENTENCE.split(answer.strip())]
    pieces = [p for p in pieces if p][:BULLETS] or ["Happy to help with that."]
    return "\n".join([HEADER, *(f"- {p}" for p in pieces), SIGN_OFF])
