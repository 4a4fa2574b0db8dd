"""Empty defaults for list and dict fields, made fresh per instance by a factory.

A mutable default such as ``tags: list[str] = []`` is deep-copied by pydantic for every
instance that leaves the field out (two thirds of a small model's construction time: issue 11); a
factory makes the empty value directly. The JSON schema still states the default, as it did.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


def empty_list() -> Any:
    """A field default of ``[]``, fresh per instance, shown as ``"default": []`` in the schema."""
    return Field(default_factory=list, json_schema_extra={"default": []})


def empty_dict() -> Any:
    """A field default of ``{}``, fresh per instance, shown as ``"default": {}`` in the schema."""
    return Field(default_factory=dict, json_schema_extra={"default": {}})


def empty_model(model: type[BaseModel]) -> Any:
    """A field default of ``model()`` (every field at its own default), fresh per instance
    rather than deep-copied, shown in the schema as that instance's JSON."""
    return Field(
        default_factory=model,
        json_schema_extra={"default": model().model_dump(mode="json")},
    )
