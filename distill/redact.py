"""Secrets out of everything distill writes or prints.

One function, `redact`, for text: credentials inside URLs (`https://user:pass@host`,
`?api-key=`, `?key=`, `?token=`, `?sig=` ...), credential-shaped strings (Hugging Face,
OpenAI, Anthropic, AWS) and the values of this process's credential-named environment
variables become `<redacted>`. `scrub` applies it through a JSON-like value and also
blanks fields named like credentials (not the `*_env` ones, which name a variable).

The manifest, the published recipe and cards, error messages and the console all go
through here; the publish stage's scan (`distill.publish.stage.find_secrets`) is the second
line behind it.
"""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "<redacted>"

# Shapes of credentials, wherever they appear: Hugging Face, OpenAI, Anthropic, AWS.
SECRET_SHAPES = {
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}"),
    "an OpenAI or Anthropic key": re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}"),
    "an AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
}
# scheme://USERINFO@host: everything up to the authority's last '@'.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s?#]*@")
# A query parameter that carries a credential (names compared without case).
_QUERY_KEYS = (
    r"api[-_]?key|apikey|key|token|access[-_]?token|auth|authorization|sig|signature|"
    r"secret|client[-_]?secret|password|passwd|pwd|x-amz-signature|x-amz-credential|"
    r"x-amz-security-token|code"
)
_QUERY = re.compile(rf"(?i)([?&;](?:{_QUERY_KEYS})=)[^&#\s\"'<>]+")
SECRET_ENV = re.compile(r"(TOKEN|API_KEY|APIKEY|SECRET|PASSWORD|ACCESS_KEY)$", re.I)
# A field named like a credential: `api_key`, `hf_token`, `password`, `Authorization`;
# not `max_new_tokens` or `chunk_tokens` (counts), nor `api_key_env` (a variable's name).
SECRET_FIELD = re.compile(
    r"(?:^|[_-])(?:api[_-]?key|apikey|token|secret|password|passwd|authorization|bearer|"
    r"access[_-]?key|credentials?)$",
    re.I,
)


def env_secrets() -> dict[str, str]:
    """Values of credential-named environment variables (at least 8 characters), as
    value -> '$NAME'."""
    return {v: f"${k}" for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v) >= 8}


def redact(text: str) -> str:
    """The text with every credential it carries replaced by `<redacted>`."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _QUERY.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    for rx in SECRET_SHAPES.values():
        text = rx.sub(REDACTED, text)
    # Longest first, so a value that contains another is replaced whole.
    for value in sorted(env_secrets(), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def scrub(value: Any) -> Any:
    """A JSON-like value without secrets: credential-named fields (not the *_env ones,
    which name a variable) become '<redacted>', every string goes through `redact`."""
    if isinstance(value, dict):
        return {
            k: REDACTED if SECRET_FIELD.search(str(k)) and v else scrub(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value
