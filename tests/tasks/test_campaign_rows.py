"""A campaign's rows, as an import validates them (tasks/campaigns/intake.py): a bad row
is refused naming its row and field, the rest stored; blank lines are skipped; shared
fields that fail refuse every row through ``validate`` itself; a content with ``{column}``
fields takes a draft per row. SQLite always; PostgreSQL when NOTIFYQ_TEST_POSTGRES_URL is
set (tests/conftest.py)."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from store.schema import Notification
from tasks.campaigns import intake
from tasks.campaigns.intake import CampaignSpec, Imported, import_campaign
from tasks.runtime import Runtime

N = Notification.__table__

CSV = "\n".join(
    [
        "mobile,name,amount",
        "13800138000,张三,1.00",  # row 2
        "10012345678,李四,2.00",  # row 3: no such number
        "13900139000,a,b,c",  # row 4: four fields
        "",  # a blank line: skipped, still counted
        "13700137000,王五,3,5",  # row 6: four fields
        "13600136000,赵六,3.00",  # row 7
        "13500135000,,4.00",  # row 8: an empty variable
        '13400134000,"x,y",5.00',  # row 9: a comma in a variable
        "+86 133 0013 3000,钱七,6.00",  # row 10: spelt with +86 and spaces
    ]
)


def imported(runtime: Runtime, spec: CampaignSpec, text: str) -> tuple[Imported, list[tuple]]:
    result = import_campaign(runtime, spec, io.StringIO(text))
    with runtime.db.read() as conn:
        rows = conn.execute(
            select(N.c.to, N.c.content, N.c.params).where(N.c.campaign_id == result.id)
        ).all()
    return result, sorted(tuple(row) for row in rows)


def test_bad_rows_are_refused_naming_row_and_field_and_the_rest_stored(runtime: Runtime) -> None:
    spec = CampaignSpec(provider="jumdata", template="1001", options={"playTimes": "2"})
    result, rows = imported(runtime, spec, CSV)
    assert (result.total, result.rejected) == (3, 5)
    assert [(e["row"], e["field"]) for e in result.errors] == [
        (3, "to"),
        (4, "row"),
        (6, "row"),
        (8, "params[0]"),
        (9, "params[0]"),
    ]
    assert result.errors[1]["message"] == "has 4 fields, the header 3"
    for error in result.errors:
        assert "0012345678" not in error["message"]  # no number in a refusal
    assert rows == [
        ("+8613300133000", None, ["钱七", "6.00"]),
        ("+8613600136000", None, ["赵六", "3.00"]),
        ("+8613800138000", None, ["张三", "1.00"]),
    ]


def test_a_refused_shared_field_refuses_every_row_as_validate_does(runtime: Runtime) -> None:
    spec = CampaignSpec(provider="jumdata", template="", options={})
    result, rows = imported(runtime, spec, "mobile,name\n13800138000,张三\n10012345678,李四\n")
    assert rows == []
    assert [(e["row"], e["field"]) for e in result.errors] == [
        (2, "template"),
        (3, "to"),
    ]


def test_a_content_with_fields_is_filled_per_row(runtime: Runtime) -> None:
    spec = CampaignSpec(provider="ihuyi", content="您好{name}，请还款{amount}元")
    text = "name,mobile,amount\n张三,13800138000,1.00\n李四,1381234,2.00\n\n"
    result, rows = imported(runtime, spec, text)
    assert (result.total, result.rejected) == (1, 1)
    assert result.errors[0]["row"] == 3 and result.errors[0]["field"] == "to"
    assert rows == [("+8613800138000", "您好张三，请还款1.00元", [])]


def test_a_one_column_file_skips_its_blank_lines(runtime: Runtime) -> None:
    spec = CampaignSpec(provider="jumdata", template="1001")
    result, rows = imported(runtime, spec, "mobile\n13800138000\n \n\n13900139000\n")
    assert (result.total, result.rejected) == (2, 0)
    assert [row[2] for row in rows] == [[], []]


def test_rows_are_numbered_and_refused_alike_in_chunks_passed_whole_or_row_by_row(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of three: the first and the last pass whole, the second holds a bad row and
    a blank line and is checked row by row; numbers and refusals are the file's."""
    monkeypatch.setattr(intake, "CHUNK", 3)
    spec = CampaignSpec(provider="jumdata", template="1001", options={"playTimes": "2"})
    text = "\n".join(
        [
            "mobile,name,amount",
            "13800138000,张三,1.00",  # row 2
            "13900139000,李四,2.00",  # row 3
            "15000150000,王五,3.00",  # row 4
            "10012345678,赵六,4.00",  # row 5: no such number
            "",  # row 6: blank
            "13600136000,钱七,5.00",  # row 7
            "13500135000,孙八,6.00",  # row 8
            "13400134000,周九,7.00",  # row 9
            "13300133000,吴十,8.00",  # row 10
            "13200132000,,9.00",  # row 11: an empty variable
        ]
    )
    result, rows = imported(runtime, spec, text)
    assert (result.total, result.rejected) == (7, 2)
    assert [(e["row"], e["field"]) for e in result.errors] == [(5, "to"), (11, "params[0]")]
    assert rows == sorted(
        [
            ("+8613800138000", None, ["张三", "1.00"]),
            ("+8613900139000", None, ["李四", "2.00"]),
            ("+8615000150000", None, ["王五", "3.00"]),
            ("+8613600136000", None, ["钱七", "5.00"]),
            ("+8613500135000", None, ["孙八", "6.00"]),
            ("+8613400134000", None, ["周九", "7.00"]),
            ("+8613300133000", None, ["吴十", "8.00"]),
        ]
    )
