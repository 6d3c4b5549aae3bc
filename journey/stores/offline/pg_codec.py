"""How Arrow columns travel to and from PostgreSQL: column types both ways, the binary and CSV renderings that
`COPY ... FROM STDIN` loads, and the JSON arrays that come back for list columns. Vectorised (Arrow/NumPy), never a
Python loop over rows."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from journey.errors import InvalidInputError


def pg_type(field: pa.Field) -> str:
    """PostgreSQL column type for an Arrow field; the types the feature views and push sources use."""
    t = field.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = t.value_type
        if pa.types.is_int64(inner):
            return "BIGINT[]"
        if pa.types.is_string(inner) or pa.types.is_large_string(inner):
            return "TEXT[]"
    scalar = {
        pa.int64(): "BIGINT",
        pa.int32(): "INTEGER",
        pa.int16(): "SMALLINT",
        pa.float64(): "DOUBLE PRECISION",
        pa.float32(): "REAL",
        pa.bool_(): "BOOLEAN",
        pa.string(): "TEXT",
        pa.large_string(): "TEXT",
        pa.date32(): "DATE",
    }
    if t in scalar:
        return scalar[t]
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz is not None else "TIMESTAMP"
    raise InvalidInputError(
        f"column {field.name!r} has type {t}, which the offline store cannot hold", field=field.name, value=str(t)
    )


# PostgreSQL type (as format_type() spells it) -> Arrow type read back
ARROW_TYPES: dict[str, pa.DataType] = {
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "double precision": pa.float64(),
    "real": pa.float32(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
    "bigint[]": pa.list_(pa.int64()),
    "text[]": pa.list_(pa.string()),
}


def _pg_array_literals(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Render a list<int64|string> column as PostgreSQL array literals (`{1,2}`, `{"a","b\\"c"}`), vectorised."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = arr.cast(pa.list_(pa.string()))
    values = arr.values
    if not pa.types.is_int64(column.type.value_type):
        escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
        values = pc.binary_join_element_wise('"', escaped, '"', "")
    values = pc.fill_null(values, "NULL")
    rebuilt = pa.ListArray.from_arrays(arr.offsets, values, mask=arr.is_null())
    return pc.binary_join_element_wise("{", pc.binary_join(rebuilt, ","), "}", "")


# PostgreSQL's binary COPY format: a signature, flags, an empty header extension; per row a field count, then per
# field its byte length and big-endian value; -1 as field count ends the data. Timestamps count microseconds and
# dates days since 2000-01-01.
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + np.zeros(2, dtype=">i4").tobytes()
BINARY_TRAILER = np.array([-1], dtype=">i2").tobytes()
_PG_EPOCH_US = 946_684_800_000_000
_PG_EPOCH_DAYS = 10_957


def binary_layout(table: pa.Table) -> list[str] | None:
    """Big-endian NumPy type codes of the columns when every column is fixed-width and null-free, else None."""
    codes = []
    for field, column in zip(table.schema, table.columns, strict=True):
        t = field.type
        if column.null_count:
            return None
        if pa.types.is_timestamp(t) or t == pa.int64():
            codes.append(">i8")
        elif t == pa.float64():
            codes.append(">f8")
        elif t in (pa.int32(), pa.date32()):
            codes.append(">i4")
        elif t == pa.float32():
            codes.append(">f4")
        elif t == pa.int16():
            codes.append(">i2")
        elif t == pa.bool_():
            codes.append("u1")
        else:
            return None
    return codes


def binary_rows(batch: pa.RecordBatch, codes: list[str]) -> bytes:
    """One batch in PostgreSQL's binary COPY row format, laid out as a packed NumPy record array."""
    layout = [("fields", ">i2")]
    for j, code in enumerate(codes):
        layout += [(f"n{j}", ">i4"), (f"v{j}", code)]
    rows = np.empty(batch.num_rows, dtype=np.dtype(layout))
    rows["fields"] = len(codes)
    for j, (field, column) in enumerate(zip(batch.schema, batch.columns, strict=True)):
        if pa.types.is_timestamp(field.type):
            values = pc.cast(column, pa.timestamp("us", tz=field.type.tz), safe=False).cast(pa.int64()).to_numpy()
            values = values - _PG_EPOCH_US
        elif pa.types.is_date32(field.type):
            values = column.cast(pa.int32()).to_numpy() - _PG_EPOCH_DAYS
        else:
            values = column.to_numpy(zero_copy_only=False)
        rows[f"n{j}"] = np.dtype(codes[j]).itemsize
        rows[f"v{j}"] = values
    return rows.tobytes()


def csv_ready(table: pa.Table) -> pa.Table:
    """Columns Arrow's CSV writer can render in a form PostgreSQL's COPY (FORMAT csv) parses back exactly."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            columns.append(_pg_array_literals(column))
        elif pa.types.is_timestamp(field.type) and field.type.unit != "us":
            columns.append(pc.cast(column, pa.timestamp("us", tz=field.type.tz), safe=False))
        else:
            columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def parse_json_lists(column: pa.Array, value_type: pa.DataType) -> pa.Array:
    """Parse `array_to_json()` text (null for SQL NULL) into a list column with Arrow's JSON reader."""
    if len(column) == 0:
        return pa.array([], pa.list_(value_type))
    lines = pc.binary_join_element_wise('{"v":', pc.fill_null(column, "null"), "}", "")
    whole = pa.LargeListArray.from_arrays([0, len(lines)], lines.cast(pa.large_string()))
    ndjson = pc.binary_join(whole, pa.scalar("\n", pa.large_string()))[0]
    schema = pa.schema([("v", pa.list_(value_type))])
    parsed = pjson.read_json(
        pa.BufferReader(ndjson.as_buffer()), parse_options=pjson.ParseOptions(explicit_schema=schema)
    )
    return parsed["v"].combine_chunks()


def table_from_copy_csv(buffer: io.BytesIO, schema: pa.Schema, csv_types: dict[str, pa.DataType]) -> pa.Table:
    """Parse `COPY (SELECT ...) TO STDOUT (FORMAT csv)` output into `schema`.

    `csv_types` are the types the select list rendered (timestamps as epoch microseconds, dates as days since 1970,
    lists as JSON text); each column is cast or parsed back to its `schema` type.
    """
    if buffer.tell() == 0:
        return schema.empty_table()
    buffer.seek(0)
    raw = pcsv.read_csv(
        buffer,
        read_options=pcsv.ReadOptions(column_names=schema.names),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types=csv_types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    )
    out = []
    for field in schema:
        col = raw[field.name].combine_chunks()
        if pa.types.is_list(field.type):
            out.append(parse_json_lists(col, field.type.value_type))
        else:
            out.append(pc.cast(col, field.type))
    return pa.Table.from_arrays(out, schema=schema)
