"""``manage.py ml_audit_outcomes FILE``: CSV and JSON lines, bad lines, reruns, batches."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from ml_audit.decision_models import Outcome
from ml_audit.outcomes.bulk import MAX_LINE_BYTES
from tests.outcomes.helpers import predict

pytestmark = pytest.mark.django_db


class Run:
    def __init__(self, out: str, err: str, code: int) -> None:
        self.out, self.err, self.code = out, err, code


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(path: Path, *args: str, stdout: io.StringIO | None = None) -> Run:
    out, err = stdout or io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command(
            "ml_audit_outcomes", str(path), "--by", "tester", *args, stdout=out, stderr=err
        )
    except SystemExit as exc:
        code = int(exc.code or 0)
    return Run(out.getvalue(), err.getvalue(), code)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.fixture
def events() -> list[Any]:
    return [predict(i) for i in range(3)]


def values() -> dict[str, Any]:
    return {
        row.prediction.prediction_id: row.value
        for row in Outcome.objects.select_related("prediction")
    }


def test_csv_lines_are_recorded_and_a_rerun_adds_nothing(tmp_path: Path, events: list[Any]) -> None:
    path = write(
        tmp_path,
        "outcomes.csv",
        "prediction_id,value,observed_at,source\n"
        f"{events[0].prediction_id},defaulted,2026-04-01T09:30:00Z,core\n"
        f"{events[1].prediction_id},1,2026-04-01T09:30:00+02:00,\n"
        f'{events[2].prediction_id},"{{""days_late"": 40}}",2026-04-02T00:00:00Z,core\n',
    )

    first = run(path, "--source", "import-1")

    assert first.code == 0, first.err
    assert "3 lines: recorded 3, already recorded 0, bad 0." in first.out
    assert values() == {
        events[0].prediction_id: "defaulted",
        events[1].prediction_id: 1,
        events[2].prediction_id: {"days_late": 40},
    }
    sources = {row.prediction_id: row.source for row in Outcome.objects.all()}
    assert sources[events[1].pk] == "import-1"  # the line named none: --source
    assert sources[events[0].pk] == "core"
    assert {row.recorded_by for row in Outcome.objects.all()} == {"tester"}

    second = run(path, "--source", "import-1")

    assert second.code == 0
    assert "3 lines: recorded 0, already recorded 3, bad 0." in second.out
    assert Outcome.objects.count() == 3


def test_json_lines_are_recorded_and_a_rerun_adds_nothing(
    tmp_path: Path, events: list[Any]
) -> None:
    lines = [
        {
            "prediction_id": events[0].prediction_id,
            "value": "repaid",
            "observed_at": "2026-04-01T09:30:00Z",
            "source": "core",
        },
        {
            "prediction_id": events[1].prediction_id,
            "value": 12.5,
            "observed_at": "2026-04-01T09:30:00Z",
        },
        {
            "prediction_id": events[2].prediction_id,
            "value": True,
            "observed_at": "2026-04-01T09:30:00Z",
            "source": None,
        },
    ]
    path = write(tmp_path, "o.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")

    assert "recorded 3, already recorded 0, bad 0" in run(path).out
    assert values() == {
        events[0].prediction_id: "repaid",
        events[1].prediction_id: 12.5,
        events[2].prediction_id: True,
    }
    assert "recorded 0, already recorded 3, bad 0" in run(path).out
    assert Outcome.objects.count() == 3


def test_bad_lines_are_reported_by_number_and_the_others_stored(
    tmp_path: Path, events: list[Any]
) -> None:
    good = events[0].prediction_id
    lines = [
        json.dumps({"prediction_id": good, "value": "a", "observed_at": "2026-04-01T00:00:00Z"}),
        json.dumps({"prediction_id": "nope", "value": "a", "observed_at": "2026-04-01T00:00:00Z"}),
        '{"prediction_id": "x", "value": ',
        json.dumps({"prediction_id": good, "value": "a", "observed_at": "2026-13-01"}),
        json.dumps({"prediction_id": good, "value": "a"}),
        json.dumps(
            {
                "prediction_id": good,
                "value": "x" * (MAX_LINE_BYTES + 10),
                "observed_at": "2026-04-01T00:00:00Z",
            }
        ),
        json.dumps({"prediction_id": good, "value": "b", "observed_at": "2026-04-01T00:00:00"}),
        json.dumps(
            {"prediction_id": good, "value": "c", "observed_at": "2026-04-01T00:00:00Z", "extra": 1}
        ),
        json.dumps({"prediction_id": good, "value": None, "observed_at": "2026-04-01T00:00:00Z"}),
        f'{{"prediction_id": "{good}", "value": NaN, "observed_at": "2026-04-01T00:00:00Z"}}',
        "[1, 2]",
        json.dumps(
            {
                "prediction_id": events[1].prediction_id,
                "value": "z",
                "observed_at": "2026-04-01T00:00:00Z",
            }
        ),
    ]
    data = ("\n".join(lines) + "\n").encode() + b'{"prediction_id": "\xff"}\n'
    path = write(tmp_path, "o.jsonl", data)

    result = run(path, "--batch-size", "2")

    assert result.code == 1
    errors = result.err.splitlines()
    assert errors == [
        "o.jsonl: line 2: unknown prediction 'nope' (no prediction has this prediction_id or "
        "primary key)",
        "o.jsonl: line 3: not valid JSON (Expecting value, column 33)",
        "o.jsonl: line 4: observed_at: '2026-13-01' is not an ISO 8601 date-time",
        "o.jsonl: line 5: missing field 'observed_at'",
        f"o.jsonl: line 6: longer than {MAX_LINE_BYTES:,} bytes",
        "o.jsonl: line 7: observed_at: is a naive datetime; give its time zone (e.g. "
        "2026-03-01T09:30:00+00:00) or set ML_AUDIT['NAIVE_DATETIME_POLICY'] = 'utc'",
        "o.jsonl: line 8: unknown field 'extra' (the fields are prediction_id, value, "
        "observed_at, source)",
        "o.jsonl: line 9: value: must not be None: an outcome is an observed value",
        "o.jsonl: line 10: not valid JSON (NaN is not JSON)",
        "o.jsonl: line 11: not a JSON object but list",
        "o.jsonl: line 13: not valid UTF-8 (byte 20)",
    ]
    assert "13 lines: recorded 2, already recorded 0, bad 11." in result.out
    assert values() == {good: "a", events[1].prediction_id: "z"}


def test_csv_bad_lines_are_reported_by_number(tmp_path: Path, events: list[Any]) -> None:
    good = events[0].prediction_id
    path = write(
        tmp_path,
        "o.csv",
        "prediction_id,value,observed_at\n"
        f"{good},a,2026-04-01T00:00:00Z\n"
        f"{good},,2026-04-01T00:00:00Z\n"
        f"{good},b\n"
        f"nope,c,2026-04-01T00:00:00Z\n"
        f'{good},"two\nlines",yesterday\n'
        "\n"
        f"{events[1].prediction_id},d,2026-04-01T00:00:00Z\n",
    )

    result = run(path)

    assert result.code == 1
    assert result.err.splitlines() == [
        "o.csv: line 3: missing field 'value' (the cell is empty)",
        "o.csv: line 4: has 2 fields; the header names 3",
        "o.csv: line 5: unknown prediction 'nope' (no prediction has this prediction_id or "
        "primary key)",
        "o.csv: line 6: observed_at: 'yesterday' is not an ISO 8601 date-time",
    ]
    assert values() == {good: "a", events[1].prediction_id: "d"}


def test_csv_values_are_json_when_they_parse_and_text_otherwise(
    tmp_path: Path, events: list[Any]
) -> None:
    cells = ["0.25", "true", '"""007"""', "defaulted", "NaN"]
    event_ids = [predict(10 + i).prediction_id for i in range(len(cells))]
    path = write(
        tmp_path,
        "o.csv",
        "observed_at,prediction_id,value\n"
        + "".join(
            f"2026-04-01T00:00:00Z,{pid},{cell}\n"
            for pid, cell in zip(event_ids, cells, strict=True)
        ),
    )

    assert run(path).code == 0
    found = values()
    assert [found[pid] for pid in event_ids] == [0.25, True, "007", "defaulted", "NaN"]


def test_a_repeated_line_is_already_recorded_even_across_batches(
    tmp_path: Path, events: list[Any]
) -> None:
    line = f"{events[0].prediction_id},a,2026-04-01T00:00:00Z\n"
    path = write(tmp_path, "o.csv", "prediction_id,value,observed_at\n" + line * 5)

    result = run(path, "--batch-size", "2")

    assert "5 lines: recorded 1, already recorded 4, bad 0." in result.out
    assert Outcome.objects.count() == 1


def test_predictions_may_be_named_by_their_uuid(tmp_path: Path, events: list[Any]) -> None:
    text = f"prediction_id,value,observed_at\n{events[2].pk},a,2026-04-01T00:00:00Z\n"
    path = write(tmp_path, "o.csv", text)
    assert run(path).code == 0
    assert Outcome.objects.get().prediction_id == events[2].pk


def test_dry_run_checks_everything_and_stores_nothing(tmp_path: Path, events: list[Any]) -> None:
    line = f"{events[0].prediction_id},a,2026-04-01T00:00:00Z\n"
    path = write(
        tmp_path,
        "o.csv",
        "prediction_id,value,observed_at\n" + line * 2 + "nope,a,2026-04-01T00:00:00Z\n",
    )

    result = run(path, "--dry-run", "--batch-size", "1")

    assert result.code == 1
    assert "3 lines: would record 1, already recorded 1, bad 1. Dry run" in result.out
    assert "line 4: unknown prediction 'nope'" in result.err
    assert not Outcome.objects.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prediction_id,value\np,1\n", "the CSV header lacks 'observed_at'"),
        ("prediction_id,value,observed_at,note\n", "unknown columns 'note'"),
        ("prediction_id,value,value,observed_at\n", "names a column twice"),
        ("\n", "the first line must be the CSV header"),
    ],
)
def test_a_bad_header_stores_nothing_and_exits_2(
    tmp_path: Path, events: list[Any], text: str, message: str
) -> None:
    path = write(tmp_path, "o.csv", text + f"{events[0].prediction_id},a,2026-04-01T00:00:00Z\n")
    with pytest.raises(CommandError, match=message) as raised:
        call_command("ml_audit_outcomes", str(path), stdout=io.StringIO())
    assert raised.value.returncode == 2
    assert not Outcome.objects.exists()


def test_the_format_comes_from_the_extension_or_the_option(
    tmp_path: Path, events: list[Any]
) -> None:
    line = json.dumps(
        {
            "prediction_id": events[0].prediction_id,
            "value": 1,
            "observed_at": "2026-04-01T00:00:00Z",
        }
    )
    path = write(tmp_path, "outcomes.txt", line + "\n")
    with pytest.raises(CommandError, match="cannot tell the format"):
        call_command("ml_audit_outcomes", str(path), stdout=io.StringIO())

    assert run(path, "--format", "jsonl").code == 0
    assert Outcome.objects.count() == 1


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command("ml_audit_outcomes", str(tmp_path / "none.csv"), stdout=io.StringIO())


def test_json_output_lists_every_bad_line(tmp_path: Path, events: list[Any]) -> None:
    path = write(
        tmp_path, "o.csv", "prediction_id,value,observed_at\nnope,a,2026-04-01T00:00:00Z\n"
    )
    result = run(path, "--json")
    assert result.code == 1
    assert json.loads(result.out) == {
        "dry_run": False,
        "lines": 1,
        "recorded": 0,
        "already_recorded": 0,
        "bad": [
            {
                "line": 2,
                "message": "unknown prediction 'nope' (no prediction has this "
                "prediction_id or primary key)",
            }
        ],
    }


def test_a_progress_bar_is_drawn_on_a_terminal(
    tmp_path: Path, events: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "o.csv",
        "prediction_id,value,observed_at\n"
        + "".join(f"{e.prediction_id},a,2026-04-01T00:00:00Z\n" for e in events),
    )

    run(path, stdout=Terminal())

    bar = capsys.readouterr().err
    assert "outcomes [" in bar
    assert "4/4 rows" in bar  # the header and three lines
    assert "100%" in bar


def test_no_progress_bar_when_not_a_terminal(
    tmp_path: Path, events: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "o.csv",
        f"prediction_id,value,observed_at\n{events[0].prediction_id},a,2026-04-01T00:00:00Z\n",
    )
    run(path)
    assert capsys.readouterr().err == ""


def test_each_batch_costs_a_fixed_number_of_queries(
    tmp_path: Path, django_assert_max_num_queries: Any
) -> None:
    many = [predict(100 + i) for i in range(40)]
    path = write(
        tmp_path,
        "o.csv",
        "prediction_id,value,observed_at\n"
        + "".join(f"{e.prediction_id},{i},2026-04-01T00:00:00Z\n" for i, e in enumerate(many)),
    )
    # Per batch of 20: the predictions, the stored keys, one INSERT (SQLite may split it),
    # and the transaction's savepoint statements.
    with django_assert_max_num_queries(2 * 8):
        result = run(path, "--batch-size", "20")
    assert result.code == 0
    assert Outcome.objects.count() == 40
