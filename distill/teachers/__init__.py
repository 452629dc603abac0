"""Teacher backends, chosen by the prefix of a "provider:model" string. Build one with
distill.teachers.factory.make_teacher (priced, budgeted, cached); tests register a
backend of their own in BACKENDS."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from distill.errors import UserError
from distill.teachers.anthropic import AnthropicTeacher
from distill.teachers.base import Completion, Message, Teacher, Usage
from distill.teachers.fake import FakeTeacher
from distill.teachers.local import LocalTeacher
from distill.teachers.openai import OpenAITeacher

BACKENDS: dict[str, type[Teacher]] = {
    "local": LocalTeacher,
    "openai": OpenAITeacher,
    "anthropic": AnthropicTeacher,
    "fake": FakeTeacher,
}


def parse_spec(spec: str, options: dict[str, Any] | None = None) -> tuple[type[Teacher], str, Any]:
    """(backend class, model, validated options) of `spec`; a one-line UserError when
    the provider is unknown, the model missing or an option wrong. Builds nothing."""
    provider, sep, model = spec.partition(":")
    if not sep or provider not in BACKENDS:
        raise UserError(
            f"unknown teacher '{spec}': write it as PROVIDER:MODEL with PROVIDER one of "
            f"{', '.join(BACKENDS)} (e.g. 'local:smollm2-135m-instruct')"
        )
    if provider != "fake" and not model:
        raise UserError(f"teacher '{provider}:' needs a model, e.g. '{provider}:MODEL_NAME'")
    backend = BACKENDS[provider]
    try:
        opts = backend.Options.model_validate(options or {})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
        )
        known = ", ".join(backend.Options.model_fields) or "none"
        raise UserError(
            f"teacher.options for '{provider}:': {problems} (known options: {known})"
        ) from e
    return backend, model, opts


__all__ = ["BACKENDS", "Completion", "Message", "Teacher", "Usage", "parse_spec"]
