"""The shape of the distribution, drawn from its imports: three wings, the pieces they share, no circle.

Each program is a package: the tap (tap_intercom_conversation), the loader with its table tool
(target_intercom_postgres) and verify (intercom_conversation_verify). intercom_conversation_shared holds the
small modules they share and imports none of them. verify is the one wing that reads the others: it checks
what the tap and the loader produced, through their public functions. Every import counts, at module level,
inside a function or under TYPE_CHECKING: a dashed arrow is still an arrow. No module imports another's
private names, and verify reaches into no private member of the tap's objects: it uses their public API.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from tests.helpers import PACKAGES, REPO, SOURCE

TAP, LOADER, VERIFY, SHARED = PACKAGES
# The wings each package may import besides its own modules.
ALLOWED = {TAP: {SHARED}, LOADER: {SHARED}, VERIFY: {SHARED, TAP, LOADER}, SHARED: set()}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (a `from package import name` that is a module counts as it)."""
    files = {module_name(root, path): path for package in PACKAGES for path in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[module] = {name for name in imported if name in files and name != module}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports, as the modules in order, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for target in sorted(graph[module]):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module)
        if found:  # told from its smallest module, so the same circle always reads the same
            loop = found[:-1]
            start = loop.index(min(loop))
            return [*loop[start:], *loop[:start], loop[start]]
    return None


def private_uses(root: Path) -> list[str]:
    """A private name imported from another module, or verify reaching into a private member of what it holds."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(root, path)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                    found += [f"{module} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
                elif (
                    package == VERIFY
                    and isinstance(node, ast.Attribute)
                    and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self")
                ):
                    found.append(f"{module} uses {ast.unparse(node)}")
    return found


def problems(root: Path) -> list[str]:
    graph = import_graph(root)
    found = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if target.split(".")[0] != module.split(".")[0] and target.split(".")[0] not in ALLOWED[module.split(".")[0]]
    ]
    found += private_uses(root)
    circle = cycle(graph)
    if circle:
        found.append("import circle: " + " -> ".join(circle))
    return found


def test_three_wings_share_only_modules_that_import_none_of_them_and_no_import_goes_in_a_circle():
    assert problems(SOURCE) == []
    graph = import_graph(SOURCE)
    assert {module.split(".")[0] for module in graph} == set(PACKAGES)
    # The drawing is not empty: each wing stands on the shared pieces.
    for wing in (TAP, LOADER, VERIFY):
        assert any(t.startswith(SHARED) for m, ts in graph.items() if m.startswith(wing) for t in ts), wing


@pytest.mark.parametrize(
    ("module", "planted", "expected"),
    [
        (
            "intercom_conversation_shared/schema_files.py",
            "from tap_intercom_conversation import tap",
            "intercom_conversation_shared.schema_files imports tap_intercom_conversation.tap",
        ),
        (
            "target_intercom_postgres/table.py",
            "from tap_intercom_conversation.records import to_iso",
            "target_intercom_postgres.table imports tap_intercom_conversation.records",
        ),
        (
            "tap_intercom_conversation/records.py",
            "import intercom_conversation_verify.verify",
            "tap_intercom_conversation.records imports intercom_conversation_verify.verify",
        ),
        (
            "tap_intercom_conversation/bodies.py",
            "    from tap_intercom_conversation.records import to_iso",
            "import circle: tap_intercom_conversation.bodies -> tap_intercom_conversation.records -> "
            "tap_intercom_conversation.bodies",
        ),
        (
            "intercom_conversation_verify/verify_table.py",
            "from target_intercom_postgres.table import _SCHEME",
            "intercom_conversation_verify.verify_table imports target_intercom_postgres.table._SCHEME",
        ),
        (
            "intercom_conversation_verify/verify.py",
            "    Listing(None).stream._search_ids([])",
            "intercom_conversation_verify.verify uses Listing(None).stream._search_ids",
        ),
    ],
)
def test_a_planted_violation_is_named(tmp_path, module, planted, expected):
    root = tmp_path / "src"
    for package in PACKAGES:
        shutil.copytree(SOURCE / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = root / module
    line = planted if not planted.startswith(" ") else "def _planted():\n" + planted
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + line + "\n", encoding="utf-8")
    assert expected in problems(root)


# ---- the tests: what they share lives in tests/helpers.py --------------------------------------------------------


def imports_of_test_modules(tests: Path) -> list[str]:
    """Each import of a test module (tests/test_*.py) by another module of `tests`, at any depth of the code.

    A helper a test module defines is that module's own; one that two modules need moves to tests/helpers.py.
    """
    test_modules = {path.stem for path in tests.glob("test_*.py")}
    found = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                package = "." * node.level + (node.module or "")
                names = [package] + [f"{package}.{alias.name}".replace("..", ".") for alias in node.names]
            for name in names:
                if name.removeprefix("tests").lstrip(".") in test_modules:
                    found.append(f"tests/{path.name} imports {name.removeprefix('tests').lstrip('.')}")
    return sorted(set(found))


def test_no_test_module_imports_another():
    assert imports_of_test_modules(REPO / "tests") == []


@pytest.mark.parametrize(
    ("module", "planted", "expected"),
    [
        ("test_logs.py", "from tests.test_meltano import project", "tests/test_logs.py imports test_meltano"),
        ("conftest.py", "    from tests.test_meltano import project", "tests/conftest.py imports test_meltano"),
        ("test_spans.py", "import tests.test_concurrency", "tests/test_spans.py imports test_concurrency"),
        ("helpers.py", "from tests import test_verify", "tests/helpers.py imports test_verify"),
        ("test_readme.py", "from .test_parts import deselecting", "tests/test_readme.py imports test_parts"),
    ],
)
def test_a_test_module_imported_by_another_module_is_named(tmp_path, module, planted, expected):
    for path in (REPO / "tests").glob("*.py"):
        shutil.copy(path, tmp_path / path.name)
    line = planted if not planted.startswith(" ") else "def _planted():\n" + planted
    target = tmp_path / module
    target.write_text(target.read_text(encoding="utf-8") + "\n\n" + line + "\n", encoding="utf-8")
    assert imports_of_test_modules(tmp_path) == [expected]
