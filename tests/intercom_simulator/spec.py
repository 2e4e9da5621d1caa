"""Validate payloads against Intercom's OpenAPI 2.16 description (JSON Schema 2020-12).

The OpenAPI 3.0 schemas are converted once: ``$ref`` to ``#/$defs/...``,
``nullable: true`` to ``anyOf [null, schema]`` (also next to a ``$ref``: the
spec's own examples carry nulls there, e.g. ``ai_agent``, ``email_message_metadata``),
and in strict mode every object schema with ``properties`` and no
``additionalProperties`` gets ``unevaluatedProperties: false``, so a field the
spec does not declare is an error (this is what keeps the simulator honest).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# Intercom's OpenAPI description, vendored (MIT, its LICENSE.md beside it): these tests run on any clone.
SPEC_DIR = Path(os.environ.get("INTERCOM_OPENAPI_DIR", Path(__file__).resolve().parents[1] / "intercom_openapi"))
SPEC_PATH = SPEC_DIR / "2.16" / "api.intercom.io.yaml"
EXAMPLES_DIR = SPEC_DIR / "examples"
_COMPOSITE = ("allOf", "anyOf", "oneOf")


def convert(node: Any, strict: bool) -> Any:
    if isinstance(node, list):
        return [convert(item, strict) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/$defs/")
        elif key in ("example", "examples", "nullable") or key.startswith("x-"):
            continue
        elif key == "properties":
            out[key] = {name: convert(sub, strict) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = convert(value, strict)
        elif key in _COMPOSITE:
            out[key] = [convert(sub, strict) for sub in value]
        else:
            out[key] = value
    if strict and "properties" in out and "additionalProperties" not in out:
        out["unevaluatedProperties"] = False
    if node.get("nullable") is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


class Spec:
    """The loaded description; build it once per test session (the YAML is 1.3 MB)."""

    def __init__(self, path: Path = SPEC_PATH) -> None:
        with open(path, encoding="utf-8") as fh:
            self.raw: dict[str, Any] = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        self._validators: dict[tuple[Any, ...], jsonschema.Draft202012Validator] = {}

    @cached_property
    def _defs(self) -> dict[bool, dict[str, Any]]:
        schemas = self.raw["components"]["schemas"]
        return {strict: {name: convert(s, strict) for name, s in schemas.items()} for strict in (False, True)}

    def _validator(self, key: tuple[Any, ...], schema: Any, strict: bool) -> jsonschema.Draft202012Validator:
        if key not in self._validators:
            root = {"$defs": self._defs[strict], **convert(schema, strict)}
            self._validators[key] = jsonschema.Draft202012Validator(root)
        return self._validators[key]

    def validate(self, payload: Any, schema_name: str, strict: bool = True) -> None:
        """Raise jsonschema.ValidationError unless payload conforms to components/schemas/<name>."""
        ref = {"$ref": f"#/components/schemas/{schema_name}"}
        self._validator(("schema", schema_name, strict), ref, strict).validate(payload)

    def response_schema(self, path: str, method: str, status: int) -> Any | None:
        responses = self.raw["paths"][path][method.lower()]["responses"]
        response = responses.get(str(status))
        if response is None:
            return None
        return response["content"]["application/json"]["schema"]

    def validate_response(self, path: str, method: str, status: int, payload: Any, strict: bool = True) -> None:
        """Validate against the operation's documented response, else (errors) components/schemas/error."""
        schema = self.response_schema(path, method, status)
        if schema is None:
            if status < 400:
                raise AssertionError(f"{method} {path} documents no {status} response")
            schema = {"$ref": "#/components/schemas/error"}
        self._validator(("response", path, method, status, strict), schema, strict).validate(payload)

    def operation(self, path: str, method: str) -> dict[str, Any]:
        return self.raw["paths"][path][method.lower()]
