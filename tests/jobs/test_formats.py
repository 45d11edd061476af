"""Batch file formats: fixed-size chunks in file order, resumable, written atomically,
streamed back as one file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelserve.errors import UnsupportedMediaType
from modelserve.jobs import formats
from modelserve.jobs.formats import MalformedFile


def _frame(rows: int = 25) -> pd.DataFrame:
    return pd.DataFrame(
        {"a": np.arange(rows) / 3, "n": np.arange(rows), "s": [f"s{i}" for i in range(rows)]}
    )


def _write_input(path: Path, frame: pd.DataFrame) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, row_group_size=7)  # groups that do not line up with chunks
    else:
        with path.open("wb") as fh:
            formats.write_frame(fh, "jsonl", frame)


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_chunks_are_fixed_size_in_order_and_resume_at_a_chunk(
    tmp_path: Path, fmt: formats.InputFormat
) -> None:
    frame = _frame()
    path = tmp_path / f"in.{fmt}"
    _write_input(path, frame)
    chunks = list(formats.read_chunks(path, fmt, 10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    whole = pd.concat(chunks, ignore_index=True)
    assert whole["a"].tolist() == frame["a"].tolist()  # every digit kept
    assert whole["s"].tolist() == frame["s"].tolist()
    resumed = list(formats.read_chunks(path, fmt, 10, start_chunk=1))
    assert [c["n"].tolist() for c in resumed] == [list(range(10, 20)), list(range(20, 25))]
    assert list(formats.read_chunks(path, fmt, 10, start_chunk=3)) == []
    assert formats.count_rows(path, fmt) == 25


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_chunk_files_stream_back_as_one_file(tmp_path: Path, fmt: formats.InputFormat) -> None:
    frame = _frame()
    paths = []
    for i, start in enumerate(range(0, 25, 10)):
        path = tmp_path / f"chunk-{i}.{fmt}"
        formats.write_chunk(path, fmt, frame.iloc[start : start + 10])
        paths.append(path)
    # A retried chunk replaces its file, and no temporary file is left behind.
    formats.write_chunk(paths[1], fmt, frame.iloc[10:20])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    out = tmp_path / f"all.{fmt}"
    out.write_bytes(b"".join(formats.stream_chunks(paths, fmt)))
    back = pd.concat(list(formats.read_chunks(out, fmt, 100)), ignore_index=True)
    assert back["n"].tolist() == list(range(25))
    assert back["a"].tolist() == frame["a"].tolist()
    if fmt == "csv":
        assert out.read_text().count("a,n,s") == 1


def test_csv_cells_are_numbers_when_they_read_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("x,y,code\n1.5,abc,01\nabc,NA,2\n,3,\n")
    chunk = next(formats.read_chunks(path, "csv", 10, text_columns=["code"]))
    # One bad cell leaves the others of its column numbers; empty cells are missing;
    # NA is text (a category may be called that); a text column keeps its leading zero.
    assert chunk["x"].tolist()[:2] == [1.5, "abc"] and np.isnan(chunk["x"].iat[2])
    assert chunk["y"].tolist()[:2] == ["abc", "NA"] and chunk["y"].iat[2] == 3
    assert chunk["code"].tolist()[:2] == ["01", "2"] and pd.isna(chunk["code"].iat[2])


def test_readers_stream_and_report_malformed_files(tmp_path: Path) -> None:
    bad_jsonl = tmp_path / "in.jsonl"
    bad_jsonl.write_text('{"a": 1}\n\n{"a": 2}\n{"a": NaN}\n')
    chunks = formats.read_chunks(bad_jsonl, "jsonl", 2)
    assert next(chunks)["a"].tolist() == [1, 2]  # read before the bad line is reached
    with pytest.raises(MalformedFile, match="in.jsonl line 4: .*NaN, not a number"):
        next(chunks)
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    with pytest.raises(MalformedFile, match="must be a JSON object"):
        list(formats.read_chunks(tmp_path / "list.jsonl", "jsonl", 2))
    bad_csv = tmp_path / "in.csv"
    bad_csv.write_text("a,b\n1,2\n3,4\n5,6,7\n")
    chunks = formats.read_chunks(bad_csv, "csv", 2)
    assert next(chunks)["a"].tolist() == [1, 3]
    with pytest.raises(MalformedFile, match="in.csv is not a valid CSV file: .*Expected 2 fields"):
        next(chunks)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(MalformedFile, match="empty.csv is empty"):
        list(formats.read_chunks(tmp_path / "empty.csv", "csv", 2))
    (tmp_path / "in.parquet").write_text("a,b\n1,2\n")
    with pytest.raises(MalformedFile, match="not a valid Parquet file"):
        list(formats.read_chunks(tmp_path / "in.parquet", "parquet", 2))


def test_format_detection() -> None:
    assert formats.detect_format("rows.CSV", None) == "csv"
    assert formats.detect_format("upload", "application/x-ndjson; charset=utf-8") == "jsonl"
    assert formats.detect_format("rows.parquet", "application/octet-stream") == "parquet"
    assert formats.output_format("out.jsonl") == "jsonl"
    with pytest.raises(UnsupportedMediaType, match="file name 'rows.txt', content type"):
        formats.detect_format("rows.txt", "text/plain")
    with pytest.raises(UnsupportedMediaType, match=r"name the output \.csv"):
        formats.output_format("out.xlsx")


def test_an_id_column_of_mixed_types_is_written_as_text(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1, "b", None], "row": [0, 1, 2]})
    for fmt in formats.FORMATS:
        path = tmp_path / f"out.{fmt}"
        formats.write_chunk(path, fmt, frame)
        if fmt == "csv":
            assert path.read_text().splitlines()[1:] == ["1,0", "b,1", ",2"]
            continue
        back = next(formats.read_chunks(path, fmt, 10))
        assert back["row"].tolist() == [0, 1, 2]
        assert [str(v) for v in back["id"][:2]] == ["1", "b"] and pd.isna(back["id"].iat[2])
