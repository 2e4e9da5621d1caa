"""The SDK seam is a tested fact: singer-sdk's private and `@final` members are touched in sdk_adapter.py only,
and the private members the adapter relies on are pinned, per singer-sdk version, by the hash of their source.

Read from the package's source (ast) and its classes (the MRO says which members are singer-sdk's):
- an import of a private singer-sdk module (`singer_sdk.helpers._util`) or of a private name from one;
- a method defined in a class whose singer-sdk bases define it privately (an override of `_sync_children`)
  or mark it `@final` (an override of `sync_all`);
- `x._name` read or called anywhere, when `_name` is a private member of a singer-sdk class the package
  builds on or imports, and not a name of the package's own (e.g. `self._write_schema_message()`,
  `stream._config`).

After an SDK upgrade: review what each pinned member now does, then
`.venvs/dev/bin/python -m tests.test_sdk_seam --pin` records the new version's hashes in tests/sdk_pins.json.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import pkgutil
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import intercom_conversation_shared
import intercom_conversation_verify
import tap_intercom_conversation
import target_intercom_postgres
from intercom_conversation_shared import sdk_adapter

ADAPTER = "intercom_conversation_shared.sdk_adapter"
# The distribution's packages: the tap, the loader, verify and the pieces they share.
PACKAGES = (
    tap_intercom_conversation,
    target_intercom_postgres,
    intercom_conversation_verify,
    intercom_conversation_shared,
)
PINS = Path(__file__).with_name("sdk_pins.json")
SDK_VERSION = importlib.metadata.version("singer-sdk")


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_sdk(owner: object) -> bool:
    return (getattr(owner, "__module__", None) or "").split(".")[0] == "singer_sdk"


def sdk_classes(cls: type) -> list[type]:
    return [base for base in cls.__mro__ if is_sdk(base)]


def sdk_owner(cls: type, name: str) -> type | None:
    """The first singer-sdk class in cls's MRO that defines `name` itself."""
    return next((base for base in sdk_classes(cls) if name in vars(base)), None)


def is_final(member: object) -> bool:
    target = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
    return bool(getattr(target, "__final__", False))


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    member: str  # e.g. Stream._write_schema_message
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what} {self.member}"


def package_modules() -> list[types.ModuleType]:
    names = [
        info.name for package in PACKAGES for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    ]
    return [importlib.import_module(name) for name in sorted(names)]


def own_names(modules: list[types.ModuleType]) -> set[str]:
    """Every name the package defines itself: its functions, classes, methods, attributes (self.x = ...)."""
    names: set[str] = set()
    for module in modules:
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return names


def sdk_private_names(modules: list[types.ModuleType]) -> dict[str, type]:
    """Private members of the singer-sdk classes the modules build on or import -> a class defining each."""
    classes: set[type] = set()
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, type):
                classes.update(sdk_classes(value))
    found: dict[str, type] = {}
    for cls in sorted(classes, key=lambda c: c.__qualname__):
        for name in dir(cls):
            if is_private(name):
                owner = sdk_owner(cls, name)
                if owner is not None:
                    found.setdefault(name, owner)
    return found


def violations(module: types.ModuleType, private: dict[str, type], ours: set[str]) -> list[Violation]:
    """What `module` touches of singer-sdk's private or @final surface."""
    where = module.__name__
    found: list[Violation] = []
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "singer_sdk":
            if any(is_private(part) for part in node.module.split(".")):
                found.append(Violation(where, node.lineno, node.module, "imports the private module"))
            found += [
                Violation(where, node.lineno, f"{node.module}.{alias.name}", "imports the private name")
                for alias in node.names
                if is_private(alias.name)
            ]
        elif isinstance(node, ast.Import):
            found += [
                Violation(where, node.lineno, alias.name, "imports the private module")
                for alias in node.names
                if alias.name.split(".")[0] == "singer_sdk" and any(is_private(p) for p in alias.name.split("."))
            ]
        elif isinstance(node, ast.ClassDef):
            cls = getattr(module, node.name, None)
            if not isinstance(cls, type):
                continue
            for item in node.body:
                if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                owner = sdk_owner(cls, item.name)
                if owner is None:
                    continue
                member = f"{owner.__qualname__}.{item.name}"
                if is_private(item.name):
                    found.append(Violation(where, item.lineno, member, "overrides the private"))
                elif is_final(vars(owner)[item.name]):
                    found.append(Violation(where, item.lineno, member, "overrides the @final"))
        elif isinstance(node, ast.Attribute) and node.attr in private and node.attr not in ours:
            member = f"{private[node.attr].__qualname__}.{node.attr}"
            found.append(Violation(where, node.lineno, member, "uses the private"))
    return sorted(set(found), key=lambda v: (v.line, v.member))


# ---- the package ----------------------------------------------------------------------------------------------


def test_no_module_but_sdk_adapter_touches_a_private_or_final_singer_sdk_member():
    modules = package_modules()
    private, ours = sdk_private_names(modules), own_names([m for m in modules if m.__name__ != ADAPTER])

    found = [v for module in modules if module.__name__ != ADAPTER for v in violations(module, private, ours)]

    assert not found, "outside sdk_adapter.py:\n" + "\n".join(map(str, found))


def test_the_check_finds_each_kind_of_violation_planted_in_a_module(tmp_path):
    planted = plant(
        tmp_path,
        """
        from singer_sdk import Stream, Tap
        from singer_sdk.helpers._util import load_json

        class PlantedTap(Tap):
            name = "planted"

            def sync_all(self):
                super().sync_all()

        class PlantedStream(Stream):
            name = "planted"

            def get_records(self, context):
                self._write_schema_message()
                return []

            def _sync_children(self, child_context):
                pass

        def reach_in(stream):
            return stream._write_record_message
    """,
    )
    modules = [planted]

    found = {(v.line, v.what, v.member) for v in violations(planted, sdk_private_names(modules), own_names(modules))}

    assert found == {
        (2, "imports the private module", "singer_sdk.helpers._util"),
        (7, "overrides the @final", "Tap.sync_all"),
        (14, "uses the private", "Stream._write_schema_message"),
        (17, "overrides the private", "Stream._sync_children"),
        (21, "uses the private", "Stream._write_record_message"),
    }


def test_the_check_leaves_public_members_and_the_packages_own_private_names_alone(tmp_path):
    clean = plant(
        tmp_path,
        """
        from singer_sdk import Stream

        class CleanStream(Stream):
            name = "clean"

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._written = 0

            def get_records(self, context):
                self._written += 1
                return self._own_helper()

            def _own_helper(self):
                return []
    """,
    )

    assert violations(clean, sdk_private_names([clean]), own_names([clean])) == []


def plant(folder: Path, source: str) -> types.ModuleType:
    path = folder / "planted_module.py"
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    spec = importlib.util.spec_from_file_location("planted_module", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["planted_module"] = module  # inspect.getsource finds it there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("planted_module", None)
    return module


# ---- the adapter: what it relies on is pinned ---------------------------------------------------------------


def adapter_members() -> dict[str, object]:
    """Every singer-sdk member the adapter overrides or calls, private or @final: `Owner.name` -> the SDK's own."""
    members: dict[str, object] = {}
    tree = ast.parse(inspect.getsource(sdk_adapter))
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(sdk_adapter, node.name)
        names = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
        names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and is_private(n.attr)}
        for name in names:
            owner = sdk_owner(cls, name)
            if owner is not None and (is_private(name) or is_final(vars(owner)[name])):
                members[f"{owner.__qualname__}.{name}"] = vars(owner)[name]
    return members


def source_hash(member: object) -> str:
    target = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
    return hashlib.sha256(inspect.getsource(target).encode()).hexdigest()[:16]


def current_hashes() -> dict[str, str]:
    return {name: source_hash(member) for name, member in sorted(adapter_members().items())}


def overridden_but_missing(cls: type) -> tuple[list[str], list[str]]:
    """The methods `cls` marks @override: all of them, and those no singer-sdk base defines any more."""
    marked = [name for name, value in vars(cls).items() if getattr(value, "__override__", False)]
    return marked, [f"{cls.__name__}.{name}" for name in marked if sdk_owner(cls, name) is None]


ADAPTERS = (sdk_adapter.SettingsAdapter, sdk_adapter.TapAdapter, sdk_adapter.StreamAdapter, sdk_adapter.TargetAdapter)


def test_every_method_the_adapter_overrides_still_exists_in_singer_sdk():
    """A rename upstream fails here (sync_all's `type: ignore[misc]` would hide it from mypy)."""
    marked, missing = [], []
    for cls in ADAPTERS:
        names, gone = overridden_but_missing(cls)
        marked += names
        missing += gone

    assert not missing, f"singer-sdk {SDK_VERSION} no longer has what the adapter overrides: {missing}"
    assert {"sync_all", "_handle_termination", "_sync_children", "_validate_config"} <= set(marked)


def test_a_renamed_member_is_caught_even_under_type_ignore():
    from singer_sdk import Tap
    from typing_extensions import override

    class Renamed(Tap):
        name = "renamed"

        @override  # type: ignore[misc]
        def sync_everything(self) -> None:  # what sync_all would look like after a rename upstream
            pass

    assert overridden_but_missing(Renamed) == (["sync_everything"], ["Renamed.sync_everything"])


def test_the_private_members_the_adapter_relies_on_are_those_pinned_for_this_singer_sdk_version():
    pins = json.loads(PINS.read_text())
    assert SDK_VERSION in pins, (
        f"singer-sdk {SDK_VERSION} is not pinned: review {sorted(adapter_members())} against it, then "
        "run `.venvs/dev/bin/python -m tests.test_sdk_seam --pin`"
    )
    pinned, now = pins[SDK_VERSION], current_hashes()

    changed = sorted(name for name in pinned.keys() & now.keys() if pinned[name] != now[name])
    assert not changed, f"singer-sdk {SDK_VERSION}: the source of {changed} changed since it was pinned"
    assert sorted(now.keys() - pinned.keys()) == [], "the adapter relies on members not pinned yet"
    assert sorted(pinned.keys() - now.keys()) == [], "pinned members the adapter no longer relies on"


def test_a_changed_member_is_named(monkeypatch):
    pins = json.loads(PINS.read_text())[SDK_VERSION]
    member = "Stream._sync_children"
    assert member in pins
    monkeypatch.setattr(sys.modules[__name__], "current_hashes", lambda: {**pins, member: "0" * 16})

    with pytest.raises(AssertionError, match=r"_sync_children"):
        test_the_private_members_the_adapter_relies_on_are_those_pinned_for_this_singer_sdk_version()


if __name__ == "__main__" and sys.argv[1:] == ["--pin"]:
    pins = json.loads(PINS.read_text()) if PINS.exists() else {}
    pins[SDK_VERSION] = current_hashes()
    PINS.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
    print(f"pinned {len(pins[SDK_VERSION])} members of singer-sdk {SDK_VERSION} in {PINS}")
