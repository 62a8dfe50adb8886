"""How a data file is read: one reader for the container and the CLI's token sample."""

from __future__ import annotations

import csv

import pytest

from bertbatch_contract import tables


def _rows(text: str, fmt: str, wanted: tuple[str, ...] = ("sentence", "label"),
          **kwargs: bool) -> list[tuple[int, dict[str, object]]]:
    return list(tables.rows(text, fmt, wanted, **kwargs))


def _error(text: str, fmt: str, wanted: tuple[str, ...] = ("sentence", "label")) -> tables.TableError:
    with pytest.raises(tables.TableError) as exc:
        _rows(text, fmt, wanted)
    return exc.value


@pytest.mark.parametrize(("name", "fmt"), [
    ("train.jsonl", "jsonl"), ("s3://b/k/train.ndjson", "jsonl"), ("train.csv", "csv"), ("train.tsv", "tsv"),
    ("TRAIN.TSV", "tsv"), ("a.JsonL", "jsonl"), ("train.txt", None), ("train.tsv.gz", None), ("tsv", None),
])
def test_the_format_is_the_extension_in_any_case(name: str, fmt: str | None) -> None:
    assert tables.format_of(name) == fmt


def test_formats_lists_every_readable_extension() -> None:
    assert ", ".join(tables.FORMATS) == ".jsonl, .ndjson, .csv, .tsv"
    assert set(tables.FORMATS.values()) == {"jsonl", "csv", "tsv"}


def test_decode_drops_a_byte_order_mark_and_names_the_line_of_a_bad_byte() -> None:
    assert tables.decode("\ufeffsentence\tlabel\n".encode()) == "sentence\tlabel\n"
    with pytest.raises(tables.TableError) as exc:
        tables.decode(b"sentence,label\nok,1\n\xff\xfe,0\n")
    assert (exc.value.line, exc.value.message) == (3, "not UTF-8 text")
    assert exc.value.at("train.csv") == "train.csv line 3: not UTF-8 text"


def test_a_message_without_a_line_is_about_the_whole_file() -> None:
    assert tables.TableError("no data rows").at("--data t.tsv") == "--data t.tsv: no data rows"


@pytest.mark.parametrize(("value", "text"), [("a b", "a b"), ("", ""), (3, "3"), (2.5, "2.5"), (-0.0, "-0.0")])
def test_json_text_takes_a_string_or_a_finite_number(value: object, text: str) -> None:
    assert tables.json_text(value, "sentence") == text


@pytest.mark.parametrize(("value", "message"), [
    ({"a": 1}, "column 'sentence' must be text, not an object"),
    (["a"], "column 'sentence' must be text, not a list"),
    (True, "column 'sentence' must be text, not true/false"),
    (float("nan"), "column 'sentence' must be text, not nan"),
    (float("inf"), "column 'sentence' must be text, not inf"),
    (None, "column 'sentence' is empty"),
])
def test_json_text_refuses_what_would_be_trained_on_as_a_repr(value: object, message: str) -> None:
    with pytest.raises(tables.NotText) as exc:
        tables.json_text(value, "sentence")
    assert exc.value.message == message
    assert exc.value.column == "sentence"
    assert exc.value.value is value
    assert exc.value.line is None  # the caller knows the line


def test_jsonl_rows_keep_their_line_numbers_across_blank_lines() -> None:
    text = '{"sentence": "a", "label": 1, "extra": 0}\n\n   \n{"sentence": 7, "label": "neg"}\n'
    assert _rows(text, "jsonl") == [(1, {"sentence": "a", "label": 1}), (4, {"sentence": 7, "label": "neg"})]


@pytest.mark.parametrize(("text", "line", "message"), [
    ('{"sentence": "a", "label": 1}\n\n{"sentence": oops}\n', 3, "malformed JSON (Expecting value)"),
    ('{"sentence": "a", "label": 1}\n[1, 2]\n', 2, "expected a JSON object, got list"),
    ('"text"\n', 1, "expected a JSON object, got str"),
    ('{"sentence": "a", "label": 1}\n{"text": "b", "label": 0}\n', 2, "missing column 'sentence' (has: text, label)"),
    ('{}\n', 1, "missing column 'sentence' (has: nothing)"),
])
def test_each_jsonl_error_names_its_line(text: str, line: int, message: str) -> None:
    error = _error(text, "jsonl")
    assert (error.line, error.message) == (line, message)


def test_a_missing_jsonl_column_says_what_the_line_has() -> None:
    error = _error('{"sentence": "a", "label": 1}\n{"text": "b"}\n', "jsonl")
    assert isinstance(error, tables.MissingColumn)
    assert (error.column, error.present, error.in_header, error.line) == ("sentence", ("text",), False, 2)


def test_tsv_is_unquoted_as_glue_writes_it() -> None:
    text = 'sentence\tlabel\nhe said "hi\t1\n"quoted" start\t0\nit\'s 12" long\t1\n'
    assert _rows(text, "tsv") == [
        (2, {"sentence": 'he said "hi', "label": "1"}),
        (3, {"sentence": '"quoted" start', "label": "0"}),
        (4, {"sentence": 'it\'s 12" long', "label": "1"}),
    ]


def test_csv_follows_rfc_4180_quoting() -> None:
    text = 'label,sentence\r\n1,"a, b"\r\n0,"say ""hi"""\r\n1,"two\nlines"\r\n0,plain\r\n'
    assert _rows(text, "csv") == [
        (2, {"sentence": "a, b", "label": "1"}),
        (3, {"sentence": 'say "hi"', "label": "0"}),
        (5, {"sentence": "two\nlines", "label": "1"}),  # the line a row ends on
        (6, {"sentence": "plain", "label": "0"}),
    ]


def test_header_names_are_stripped_and_only_the_wanted_columns_come_back() -> None:
    assert _rows(" id \t sentence \tlabel\n7\tgood\t1\n", "tsv", ("sentence",)) == [(2, {"sentence": "good"})]


def test_blank_and_whitespace_only_lines_are_skipped_with_line_numbers_kept() -> None:
    text = "sentence\tlabel\n\ngood\t1\n \t \n\nbad\t0\n\n"
    assert _rows(text, "tsv") == [(3, {"sentence": "good", "label": "1"}), (6, {"sentence": "bad", "label": "0"})]


def test_a_header_only_file_has_no_rows() -> None:
    assert _rows("sentence,label\n", "csv") == []


@pytest.mark.parametrize(("text", "wanted", "present", "message"), [
    ("text\tlabel\na\t1\n", ("sentence", "label"), ("text", "label"),
     "missing column 'sentence' (header: text, label)"),
    ("sentence\tlabel\na\t1\n", ("sentence", "hypothesis"), ("sentence", "label"),
     "missing column 'hypothesis' (header: sentence, label)"),
    ("", ("sentence",), (), "missing column 'sentence' (header: )"),
])
def test_a_missing_header_column_is_on_line_1(text: str, wanted: tuple[str, ...], present: tuple[str, ...],
                                               message: str) -> None:
    error = _error(text, "tsv", wanted)
    assert isinstance(error, tables.MissingColumn)
    assert (error.line, error.message, error.in_header, error.present) == (1, message, True, present)


@pytest.mark.parametrize(("text", "fmt", "line", "message"), [
    ("sentence\tlabel\na\t1\nb\t0\textra\n", "tsv", 3, "expected 2 fields, found 3"),
    ("sentence\tlabel\na\t1\n\nb\n", "tsv", 4, "expected 2 fields, found 1"),
    ('sentence,label\n"a, b",1\nc,d,0\n', "csv", 3, "expected 2 fields, found 3"),
])
def test_a_row_with_the_wrong_number_of_fields_names_its_line(text: str, fmt: str, line: int, message: str) -> None:
    error = _error(text, fmt)
    assert (error.line, error.message) == (line, message)


def test_a_malformed_csv_names_its_line() -> None:
    big = "y" * (csv.field_size_limit() + 1)
    error = _error(f'sentence,label\nx,1\n"{big}",0\n', "csv")
    assert error.line == 3
    assert error.message == f"malformed CSV (field larger than field limit ({csv.field_size_limit()}))"
    assert _error(f"sentence\tlabel\nx\t1\n{big}\t0\n", "tsv").message.startswith("malformed TSV (")


GOOD_TWO = [(2, {"sentence": "x", "label": "1"}), (3, {"sentence": "w", "label": "0"})]


def test_a_partial_text_ends_at_a_csv_error_instead_of_raising() -> None:
    big = "y" * (csv.field_size_limit() + 1)
    text = f'sentence,label\nx,1\nw,0\n"{big}'
    assert _rows(text, "csv", partial=True) == GOOD_TWO
    with pytest.raises(tables.TableError, match="malformed CSV"):
        _rows(text, "csv")


def test_a_partial_text_may_end_inside_a_quoted_csv_field() -> None:
    text = 'sentence,label\nx,1\nw,0\n"cut short\nby the sample\n'
    assert _rows(text, "csv", partial=True) == GOOD_TWO
    assert _error(text, "csv").message == "expected 2 fields, found 1"
    # Only the last row can be cut: a short row before it is still an error, as in a TSV.
    with pytest.raises(tables.TableError, match="expected 2 fields, found 1") as exc:
        _rows("sentence,label\nx,1\nw\nz,0\n", "csv", partial=True)
    assert exc.value.at("t.csv") == "t.csv line 3: expected 2 fields, found 1"
    with pytest.raises(tables.TableError, match="expected 2 fields, found 1"):
        _rows("sentence\tlabel\nx\t1\nw\n", "tsv", partial=True)


@pytest.mark.parametrize(("name", "fmt", "compression"), [
    ("a.jsonl", "jsonl", None), ("a.JSONL.GZ", "jsonl", "gzip"), ("s3://b/p/a.csv.zst", "csv", "zstd"),
    ("a.tsv.zstd", "tsv", "zstd"), ("a.parquet", "parquet", None), ("a.ndjson.gz", "jsonl", "gzip"),
])
def test_data_format_names_format_and_compression(name: str, fmt: str, compression: str | None) -> None:
    assert tables.data_format(name) == tables.DataFormat(fmt, compression)


@pytest.mark.parametrize("name", ["a.txt", "a.gz", "a.parquet.gz", "a.json", "zst"])
def test_other_names_are_not_data(name: str) -> None:
    assert tables.data_format(name) is None


def test_stream_rows_split_lines_at_newline_only() -> None:
    import io
    import json

    texts = ["a\u2028b", "c\u2029d", "e\u0085f", "g\rh"]
    body = "".join(json.dumps({"sentence": t, "label": 1}, ensure_ascii=False) + "\r\n" for t in texts).encode()
    rows = list(tables.stream_rows(io.BytesIO(b"\xef\xbb\xbf" + body), "jsonl", ["sentence"]))
    assert [(n, r["sentence"]) for n, r in rows] == list(enumerate(texts, start=1))
    tsv = "sentence\tlabel\r\nx\u2028y\t1\r\n".encode()
    assert list(tables.stream_rows(io.BytesIO(tsv), "tsv", ["sentence"])) == [(2, {"sentence": "x\u2028y"})]


@pytest.mark.parametrize(("fmt", "body", "line", "message"), [
    ("jsonl", b"\n  \n", None, "file is empty"),
    ("csv", b"", None, "file is empty"),
    ("tsv", b"\n\n", None, "file is empty"),
    ("jsonl", b'{"sentence": "a"}\n\xff\n', 2, "not UTF-8 text"),
    ("csv", b"sentence\nok\n\xff\n", 3, "not UTF-8 text"),
])
def test_stream_rows_errors(fmt: str, body: bytes, line: int | None, message: str) -> None:
    import io

    with pytest.raises(tables.TableError) as exc:
        list(tables.stream_rows(io.BytesIO(body), fmt, ["sentence"]))
    assert (exc.value.line, exc.value.message) == (line, message)
