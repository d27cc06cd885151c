"""The README's stage table, event catalog and configuration table are the code's, not a copy that drifts."""

from __future__ import annotations

import re

import pytest

from shared.cli.docs import README, SECTIONS, render

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_readme_section_matches_the_code(section: str) -> None:
    text = README.read_text()
    block = re.search(rf"<!-- BEGIN {section} -->\n(.*?)\n<!-- END {section} -->", text, re.S)
    assert block, f"README has no generated {section} section"
    assert block.group(1) == SECTIONS[section](), f"README {section} table is stale: run `oms docs --write`"


def test_stage_table_lists_every_allowed_move_from_the_domain_table() -> None:
    from services.orders.contracts.stages import TRANSITIONS

    text = README.read_text()
    for stage, targets in TRANSITIONS.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `{stage.value}` |"))
        listed = set(re.findall(r"`([a-z_]+)`", row.rsplit("|", 2)[1]))
        assert listed == {t.value for t in targets}, stage


def test_render_is_stable() -> None:
    text = README.read_text()
    assert render(text) == text
