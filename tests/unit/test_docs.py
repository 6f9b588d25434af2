"""docs/options.md lists every setting, with its ini key and default."""

from __future__ import annotations

from pathlib import Path

from kubefixtures.settings import OPTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_option_is_documented_with_its_ini_key() -> None:
    text = (DOCS / "options.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in text.splitlines() if "| `--" in line}
    assert set(rows) == {option.flag for option in OPTIONS}
    for option in OPTIONS:
        assert f"`{option.ini}`" in rows[option.flag]
        if option.default:
            assert f"`{option.default}`" in rows[option.flag], option.flag
