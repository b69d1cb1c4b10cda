"""Remove secrets from every piece of log text before it is rendered."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

import regex

MASK = "[REDACTED]"

_SECRETS = regex.compile(
    r"""
    \bhf_[A-Za-z0-9]{30,}                                   # Hugging Face token
    | \bgh[pousr]_[A-Za-z0-9]{30,}                          # GitHub token
    | \bgithub_pat_[A-Za-z0-9_]{40,}
    | \b(?:AKIA|ASIA)[0-9A-Z]{16}\b                         # AWS access key id
    | \bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}                # OpenAI / Anthropic-style key
    | \bxox[abposr]-[A-Za-z0-9-]{10,}                       # Slack token
    """,
    regex.VERBOSE,
)
_ASSIGNED = regex.compile(
    r"""(?ix)
    (?P<key>
        (?:wandb_api_key|hf_token|hugging_face_hub_token|huggingface_token|aws_secret_access_key
          |aws_session_token|openai_api_key|api[_-]?key|access[_-]?token|secret|password|passwd)
        ["']?\s*[=:]\s*["']?
    )
    (?P<value>[^\s"',;]{6,})
    """
)
_WANDB_LOGIN = regex.compile(r"(?i)(wandb login(?: --relogin)?\s+)(?P<value>[0-9a-f]{40})\b")
_BEARER = regex.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]{12,}=*")
_URL_PASSWORD = regex.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@")


def redact_text(text: str) -> str:
    """The text with tokens, keys and passwords replaced by a mask."""
    if not text:
        return text
    text = _SECRETS.sub(MASK, text)
    text = _ASSIGNED.sub(lambda m: m["key"] + MASK, text)
    text = _WANDB_LOGIN.sub(lambda m: m.group(1) + MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", text)


def redact(value: Any) -> Any:
    """A copy of a frozen dataclass tree with every string redacted (enum names are kept)."""
    if isinstance(value, Enum):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: redact(getattr(value, f.name)) for f in dataclasses.fields(value)
                   if f.init}
        return dataclasses.replace(value, **changes)
    return value
