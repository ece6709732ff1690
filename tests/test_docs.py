"""The README tells the truth about the marker keywords and the options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_persist.roundtrip.settings import KEYWORDS

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("keyword", sorted(KEYWORDS))
def test_every_marker_keyword_is_documented(keyword):
    assert re.search(rf"`{keyword}=", README), f"README does not document {keyword}="


def test_every_option_and_ini_name_in_help_is_documented(pytester):
    help_text = pytester.runpytest_subprocess("--help").stdout.str()
    options = sorted(set(re.findall(r"(--persist-[a-z-]+)", help_text)))
    ini_names = sorted(set(re.findall(r"^\s+(persist_[a-z_]+)", help_text, re.MULTILINE)))
    assert len(options) >= 10 and len(ini_names) >= 6, help_text
    missing = [name for name in options if f"`{name}" not in README]
    assert not missing, f"options missing from the README: {missing}"
    missing_ini = [name for name in ini_names if f"`{name}`" not in README]
    assert not missing_ini, f"ini settings missing from the README: {missing_ini}"
