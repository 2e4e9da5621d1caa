"""A setting is one edit: the tap's config_jsonschema is the source, and every copy of it is held to it.

Meltano reads the settings from meltano.yml (this project) and plugin-definitions/ (another project);
the README's table is checked in test_readme.py. Limits and patterns live only in the schema: the
one-line errors of test_bad_input.py are worded from it.
"""

from __future__ import annotations

import pytest
import yaml
from jsonschema.validators import validator_for

from intercom_conversation_shared.settings import schema_problem
from tap_intercom_conversation.tap import TapIntercomConversation
from tests.helpers import REPO

SCHEMA = TapIntercomConversation.config_jsonschema
PROPERTIES = SCHEMA["properties"]
SDK_BUILTIN = ("stream_maps", "stream_map_config", "faker_config", "flattening_", "batch_config")
OURS = {name: spec for name, spec in PROPERTIES.items() if not name.startswith(SDK_BUILTIN)}


def meltano_extractor_settings() -> dict[str, list[dict]]:
    project = yaml.safe_load((REPO / "meltano.yml").read_text(encoding="utf-8"))
    (extractor,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-intercom-conversation"]
    shipped = yaml.safe_load((REPO / "plugin-definitions" / "tap-intercom-conversation.yml").read_text())
    return {"meltano.yml": extractor["settings"], "plugin-definitions": shipped["settings"]}


@pytest.mark.parametrize("source", ["meltano.yml", "plugin-definitions"])
def test_meltano_declares_each_setting_of_the_tap_with_its_description_and_default(source):
    settings = meltano_extractor_settings()[source]
    assert [s["name"] for s in settings] == list(OURS)
    for setting in settings:
        spec = OURS[setting["name"]]
        assert setting.get("description") == spec["description"], setting["name"]
        # Meltano passes every value as text; the tap types it, so the default is compared as text.
        default = spec.get("default")
        shown = None if default is None else str(default).lower()
        assert (None if "value" not in setting else str(setting["value"]).lower()) == shown, setting["name"]
        assert bool(setting.get("sensitive")) == bool(spec.get("secret")), setting["name"]
        expected_kind = "date_iso8601" if spec.get("format") == "date-time" else "string"
        assert setting["kind"] == expected_kind, setting["name"]


def test_every_numeric_setting_has_its_limits_in_the_schema():
    numeric = [name for name, spec in OURS.items() if {"integer", "number"} & set(spec["type"])]
    assert numeric == ["lookback_window_seconds", "max_concurrent_requests", "request_timeout_seconds"]
    for name in numeric:
        assert "minimum" in OURS[name] and "maximum" in OURS[name], name


def test_an_out_of_range_value_is_worded_from_the_schemas_limits():
    limits = OURS["max_concurrent_requests"]
    config = {"access_token": "t", "max_concurrent_requests": limits["maximum"] + 1}
    assert schema_problem(SCHEMA, config) == (
        f"max_concurrent_requests {limits['maximum'] + 1} is out of range ({limits['minimum']} to {limits['maximum']})"
    )


def test_a_value_outside_the_pattern_is_worded_from_the_schema():
    assert schema_problem(SCHEMA, {"access_token": "t", "api_version": "2.17"}) == (
        f"api_version '2.17' is not {OURS['api_version']['pattern_meaning']}"
    )
    accepted = validator_for(SCHEMA)(SCHEMA)
    assert all(accepted.is_valid({"access_token": "t", "api_version": v}) for v in ("2.0", "2.16", "Unstable", "1.4"))
