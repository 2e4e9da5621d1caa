"""The README tells the truth about the settings: its table is the tap's own `--about --format=markdown`."""

from __future__ import annotations

from tests.helpers import PACKAGES, REPO, SOURCE, VERIFY_README_COMMANDS, run_tap


def settings_rows(markdown: str) -> list[str]:
    """The rows of the settings table, without the SDK's built-in settings (stream maps, batch, ...)."""
    builtin = ("stream_map", "faker_config", "flattening_", "batch_config", "stream_maps")
    rows = []
    for line in markdown.split("| Setting |", 1)[1].splitlines()[2:]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return [row for row in rows if not row.removeprefix("| ").startswith(builtin)]


def test_the_readme_settings_table_is_the_taps_own():
    about = run_tap(None, None, "--about", "--format=markdown")
    assert about.returncode == 0, about.stderr[-2000:]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert settings_rows(readme) == settings_rows(about.stdout)


def test_the_readme_verify_commands_are_the_ones_the_verify_tests_run():
    """The README's verify block, line for line, is VERIFY_README_COMMANDS (tests/test_verify.py runs each)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in readme.split("```sh\n")[1:]]
    verify_block = next(block for block in blocks if "intercom-conversation-table:verify" in block)
    assert verify_block.strip().splitlines() == VERIFY_README_COMMANDS


def test_the_layout_table_names_every_module_in_its_package_row():
    layout = (REPO / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1]
    rows = {line.split("|")[1].strip(): line for line in layout.splitlines() if line.startswith("| `")}
    for package in PACKAGES:
        row = rows[f"`…/{package}/`"]
        modules = [path.name for path in (SOURCE / package).glob("*.py") if path.name != "__init__.py"]
        missing = [name for name in modules if f"`{name}`" not in row]
        assert not missing, f"README's layout row of {package} does not name {missing}"
