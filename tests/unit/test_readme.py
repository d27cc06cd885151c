"""The README's stage table, event catalog and configuration table are the code's, not a copy that drifts.

The sections come from the registry: each service's manifest names its own (``docs``), plus the event catalog
and the configuration table of every service.
"""

from __future__ import annotations

import re

import pytest

from oms.cli.docs import README, render, sections

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("section", sorted(sections()))
def test_readme_section_matches_the_code(section: str) -> None:
    text = README.read_text()
    block = re.search(rf"<!-- BEGIN {section} -->\n(.*?)\n<!-- END {section} -->", text, re.S)
    assert block, f"README has no generated {section} section"
    assert block.group(1) == sections()[section](), f"README {section} table is stale: run `oms docs --write`"


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


def test_every_service_section_comes_from_its_manifest() -> None:
    from shared.registry import services

    built = sections()
    for spec in services():
        for marker in spec.docs:
            assert marker in built, f"{spec.name} declares README section {marker!r}"
    assert {"stages", "payment-status", "events", "config"} <= set(built)


def test_config_table_lists_every_variable_of_every_settings_class() -> None:
    from shared.registry import settings_classes

    text = README.read_text()
    for service, cls in settings_classes().items():
        for name in cls.model_fields:
            assert f"| `OMS_{name.upper()}` |" in text, f"OMS_{name.upper()} ({service}) missing from the README"
