"""The settings knowledge the tap, the loader and verify share: regions, secrets, how a bad setting is named."""

from __future__ import annotations

import decimal
import re
import typing as t

from jsonschema.validators import validator_for

REGION_URLS = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}
SECRET_SETTINGS = frozenset({"access_token"})
_JSON_KINDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
}


def show(value: object) -> str:
    """A value for an error line: its repr (a Decimal from a JSON file as written), at most 60 characters."""
    text = str(value) if isinstance(value, decimal.Decimal) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def schema_problem(schema: dict, config: t.Mapping[str, t.Any], secrets: frozenset[str] = SECRET_SETTINGS) -> str:
    """The first JSON-schema violation in the settings, naming the setting (a secret's value is never shown)."""
    validator = validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return "the settings do not match their schema"
    error = errors[0]
    name = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else str(error.validator_value)
        if missing == "access_token":
            return "access_token is missing: set it (TAP_INTERCOM_CONVERSATION_ACCESS_TOKEN)"
        return f"{missing} is missing"
    shown = "" if name.split(".")[0] in secrets else f" {show(error.instance)}"
    if error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        wanted = " or ".join(_JSON_KINDS.get(kind, str(kind)) for kind in kinds if kind != "null")
        return f"{name}{shown} is not {wanted}"
    if error.validator in ("minimum", "maximum"):
        limits = error.schema
        return f"{name}{shown} is out of range ({limits.get('minimum')} to {limits.get('maximum')})"
    if error.validator == "pattern":
        return f"{name}{shown} is not {error.schema.get('pattern_meaning', 'in the expected form')}"
    if error.validator == "enum":
        return f"{name}{shown} is not one of {', '.join(str(v) for v in error.validator_value)}"
    return f"{name} is invalid" if not shown else f"{name}{shown} is invalid ({error.validator})"


def coerce_strings(config: dict[str, t.Any], schema: dict) -> None:
    """Numbers and booleans written as text ("64", "false"), as a Meltano string setting passes them, made typed.

    Meltano's own integer and boolean kinds cannot be used: it answers "abc" for an integer with a
    100-line traceback and takes "maybe" for a boolean as false. Only plain digits and true/false
    are typed; any other text ("yes", "ten minutes") is left for the schema check to name.
    """
    for name, value in list(config.items()):
        kinds = schema.get("properties", {}).get(name, {}).get("type", [])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(value, str):
            continue
        text = value.strip().lower()
        if "boolean" in kinds and text in {"true", "false"}:
            config[name] = text == "true"
        elif "integer" in kinds and re.fullmatch(r"[+-]?\d+", text):
            config[name] = int(text)
        elif "number" in kinds and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", text):
            config[name] = float(text)
