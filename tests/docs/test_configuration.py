"""``docs/configuration.md`` lists every settings key with the type and default the code has."""

from __future__ import annotations

import pytest
from pydantic import Field, create_model

from tests.support.config_doc import COMMAND, PAGE, problems, render
from worker.config import KafkaSettings, Settings


def test_every_key_is_documented_as_the_code_has_it() -> None:
    found = problems(PAGE.read_text(encoding="utf-8"))
    assert not found, (
        f"docs/{PAGE.name} does not match the settings model; run `{COMMAND}` from the repository"
        " root, then write the meaning of each new key in its row:\n  " + "\n  ".join(found)
    )


def test_the_generator_keeps_the_page_as_it_is() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert render(page) == page


def with_kafka_field(**fields: object) -> type[Settings]:
    """``Settings`` whose ``kafka`` section has one more field (a setting not yet documented)."""
    kafka = create_model("KafkaPlus", __base__=KafkaSettings, **fields)  # type: ignore[call-overload]
    return create_model("SettingsPlus", __base__=Settings, kafka=(kafka, kafka()))


def test_an_undocumented_field_is_reported() -> None:
    model = with_kafka_field(dummy_refresh_s=(float, Field(5.0, gt=0)))
    page = PAGE.read_text(encoding="utf-8")
    assert problems(page, model) == ["kafka.dummy_refresh_s is not in the page"]
    # The generator adds its row with an empty meaning; the check then asks for one.
    assert problems(render(page, model), model) == [
        "kafka.dummy_refresh_s has no meaning: write one in its row's last cell"
    ]


def test_a_description_is_the_meaning() -> None:
    model = with_kafka_field(dummy_refresh_s=(float, Field(5.0, description="How often.")))
    written = render(PAGE.read_text(encoding="utf-8"), model)
    assert "| `kafka.dummy_refresh_s` | float | `5.0` |  | How often. |" in written
    assert problems(written, model) == []


@pytest.mark.parametrize(
    ("row", "wrong"),
    [
        ("| `batch.max_events` | int | `512` |", "| `batch.max_events` | int | `256` |"),
        ("| `kafka.group_id` | str | `", "| `kafka.group_id` | int | `"),
        ("| 1 to 100000 |", "| 1 to 1000 |"),
    ],
)
def test_a_wrong_type_default_or_range_is_reported(row: str, wrong: str) -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert page.count(row) == 1
    found = problems(page.replace(row, wrong))
    assert len(found) == 1 and "the settings model says" in found[0]


def test_a_removed_setting_is_reported() -> None:
    page = PAGE.read_text(encoding="utf-8")
    row = "| `batch.max_wait_ms` | int | `20` |"
    assert page.count(row) == 1
    stale = page.replace(row, "| `batch.gone_ms` | int | `20` |")
    assert problems(stale) == [
        "batch.max_wait_ms is not in the page",
        "batch.gone_ms is in the page but not a setting",
    ]
