"""``modelserve predict MODEL rows.csv -o out.csv``: files scored offline, chunk by chunk."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from modelserve import cli
from modelserve.cli import main
from modelserve.jobs import formats

from .. import models


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offline") / "models"
    iris_inputs = [{"name": n, "type": "number", "minimum": 0} for n in models.IRIS_FEATURES]
    models.write_model(root, "iris", models.iris(), manifest={"inputs": iris_inputs})
    tutorial_inputs = [
        {"name": "feature1", "type": "number"},
        {"name": "feature2", "type": "number"},
        {"name": "feature3", "type": "string"},
    ]
    models.write_model(root, "tutorial", models.tutorial(), manifest={"inputs": tutorial_inputs})
    return root


def _rows() -> pd.DataFrame:
    frame = pd.DataFrame(models.iris().x, columns=list(models.IRIS_FEATURES))
    frame.insert(0, "key", [f"k{i}" for i in range(len(frame))])
    return frame


def _read(path: Path) -> pd.DataFrame:
    fmt = formats.detect_format(path.name, None)
    return pd.concat(list(formats.read_chunks(path, fmt, 1000)), ignore_index=True)


def test_a_csv_is_scored_into_a_csv_with_its_errors_beside(root: Path, tmp_path: Path) -> None:
    rows = _rows().astype({"sepal_width": object})
    rows.at[7, "sepal_width"] = "wide"
    rows.at[100, "petal_length"] = np.nan
    source = tmp_path / "rows.csv"
    rows.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    args = ["predict", str(root), str(source), "-o", str(out), "--id-column", "key"]
    args += ["--model", "iris"]
    result = CliRunner().invoke(main, [*args, "--chunk-rows", "16"])
    assert result.exit_code == 0, result.output
    assert "150 rows: 148 scored, 2 rejected in" in result.output and "rows/s" in result.output
    got = _read(out)
    assert list(got.columns[:3]) == ["key", "row", "prediction"]
    kept = [i for i in range(150) if i not in (7, 100)]
    assert got["key"].tolist() == [f"k{i}" for i in kept] and got["row"].tolist() == kept
    labels, proba = models.iris().expected()
    assert got["prediction"].tolist() == labels[kept].tolist()
    assert proba is not None
    assert np.allclose(got[[f"probability_{c}" for c in range(3)]].to_numpy(), proba[kept])
    errors = [json.loads(line) for line in (tmp_path / "out.csv.errors.jsonl").open()]
    assert errors == [
        {"row": 7, "id": "k7", "reason": 'sepal_width is a string ("wide"), not a number'},
        {"row": 100, "id": "k100", "reason": "petal_length is required"},
    ]


@pytest.mark.parametrize(("src", "dst"), [("jsonl", "parquet"), ("parquet", "jsonl")])
def test_formats_in_and_out(root: Path, tmp_path: Path, src: str, dst: str) -> None:
    source = tmp_path / f"rows.{src}"
    rows = _rows()
    if src == "parquet":
        rows.to_parquet(source, row_group_size=40)
    else:
        with source.open("wb") as fh:
            formats.write_frame(fh, "jsonl", rows)
    out = tmp_path / f"answers.{dst}"
    args = ["predict", str(root), str(source), "-o", str(out), "--chunk-rows", "64", "-q"]
    args += ["--id-column", "key", "--model", "iris"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    got = _read(out)
    assert got["row"].tolist() == list(range(150))
    assert got["prediction"].tolist() == models.iris().expected()[0].tolist()
    assert got["class_name"].tolist()[:1] == ["setosa"]
    assert not (tmp_path / f"answers.{dst}.errors.jsonl").exists()


def test_the_output_defaults_to_the_input_format_beside_it(root: Path, tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    with source.open("wb") as fh:
        formats.write_frame(fh, "jsonl", _rows().drop(columns="key").iloc[:5])
    result = CliRunner().invoke(main, ["predict", str(root), str(source), "--model", "iris"])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "rows.predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["row"] for line in lines] == [0, 1, 2, 3, 4]


def test_the_error_budget_stops_the_run(root: Path, tmp_path: Path) -> None:
    rows = _rows().drop(columns="key")
    rows.loc[rows.index % 3 == 0, "sepal_length"] = -1.0  # below the minimum of 0
    source = tmp_path / "rows.csv"
    rows.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    errors = tmp_path / "rejected.jsonl"
    args = ["predict", str(root), str(source), "-o", str(out), "--errors", str(errors)]
    args += ["--model", "iris"]
    result = CliRunner().invoke(main, [*args, "--max-errors", "5", "--chunk-rows", "10"])
    assert result.exit_code == 1
    assert "more than 5 rows were rejected (--max-errors)" in result.output
    assert not out.exists() and list(tmp_path.glob(".out.csv*")) == []
    rejected = [json.loads(line) for line in errors.open()]
    assert 5 < len(rejected) < 50  # stopped early, not at the end of the file
    assert rejected[0]["reason"] == "sepal_length is -1.0, less than the minimum 0.0"
    within = CliRunner().invoke(main, [*args, "--max-errors", "50"])
    assert within.exit_code == 0 and len(_read(out)) == 100


def test_unusable_files_fail_clearly(root: Path, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    _rows().drop(columns="petal_width").to_csv(source, index=False)
    out = tmp_path / "out.csv"
    iris = ["--model", "iris"]
    result = CliRunner().invoke(main, ["predict", str(root), str(source), "-o", str(out), *iris])
    assert result.exit_code == 1
    assert "Error: The input has no column(s) petal_width: model 'iris' needs" in result.output
    assert not out.exists()
    broken = tmp_path / "rows.jsonl"
    broken.write_text('{"sepal_length": 1}\n{oops\n')
    result = CliRunner().invoke(main, ["predict", str(root), str(broken), *iris])
    assert result.exit_code == 1 and "rows.jsonl line 2: Malformed JSON" in result.output
    missing = CliRunner().invoke(main, ["predict", str(root), str(tmp_path / "nope.csv"), *iris])
    assert missing.exit_code == 2 and "nope.csv: no such file" in missing.output
    xlsx = CliRunner().invoke(main, ["predict", str(root), str(source), "-o", "out.xlsx", *iris])
    assert xlsx.exit_code == 2 and "name the output .csv, .jsonl or .parquet" in xlsx.output


def test_a_category_column_is_read_as_text(root: Path, tmp_path: Path) -> None:
    frame = models.tutorial_frame(60, seed=2)
    expected = models.tutorial().model.predict(frame).tolist()
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "out.jsonl"
    args = ["predict", str(root), str(source), "-o", str(out), "--model", "tutorial", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["prediction"] for line in out.open()] == expected


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with cli._progress_bar(1000, quiet=False) as bar:
        assert bar is not None
        bar.update(1000)
    shown = terminal.getvalue()
    assert "1.00k/1.00k" in shown and "rows/s" in shown
    with cli._progress_bar(1000, quiet=True) as bar:
        assert bar is None
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with cli._progress_bar(1000, quiet=False) as bar:
        assert bar is None
