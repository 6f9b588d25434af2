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


def test_the_documented_limits_are_the_enforced_ones() -> None:
    from kubefixtures import limits

    security = (DOCS / "security.md").read_text()
    options = (DOCS / "options.md").read_text()
    for text in (security, options):
        assert f"at most {limits.MAX_SECONDS} (365 days)" in text
        assert f"from 0 to {limits.MAX_COUNT}" in text
    assert f"{limits.MAX_FILE_BYTES // 2**20} MiB per file" in security
    assert f"expand to at most {limits.MAX_RENDERED_BYTES // 2**20} MiB" in security
    assert f"nesting at most {limits.MAX_YAML_DEPTH} levels" in security
