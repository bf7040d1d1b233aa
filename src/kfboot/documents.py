"""The JSON documents commands print with ``-o json``: typed, serialized and described in one place.

A command's document is a :class:`Document` (a pydantic model; its field aliases are the JSON keys) or a
plain dataclass (its field names are the keys). :func:`dump` turns either into what is printed;
:func:`json_schema` gives the JSON schema of the type — the same serializer walks both, so a document
always matches its schema. Which command prints which type is listed in ``kfboot.cli.documents``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    Printable = BaseModel | DataclassInstance
else:
    Printable = object


class Document(BaseModel):
    """A command's JSON document (or a part of one). Fields are in the order they are printed; a field
    whose key is not its Python name carries the key as ``alias``. A dataclass inside a document is
    printed and described with the same rules."""

    #: no key but its fields, each always printed (``null`` when unset) unless it says otherwise
    model_config = ConfigDict(
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        json_schema_serialization_defaults_required=True,
    )


def absent(value: object) -> bool:
    """For ``Field(exclude_if=absent)``: a key printed only when it has a value."""
    return value is None


def dump(doc: Printable) -> Any:
    """``doc`` as JSON-ready data (dicts, lists, strings, numbers), keys as printed."""
    return TypeAdapter(type(doc)).dump_python(doc, mode="json", by_alias=True)


def json_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of what :func:`dump` makes of a value of type ``tp`` (a
    :class:`Document`, a dataclass, or a union of them)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        schema: dict[str, Any] = TypeAdapter(tp).json_schema(mode="serialization", by_alias=True)
    else:  # a dataclass takes its config from what holds it: a list does, with a Document's
        listed = TypeAdapter(list[tp], config=Document.model_config).json_schema(mode="serialization", by_alias=True)
        schema = {**listed["items"], "$defs": listed.get("$defs", {})}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
