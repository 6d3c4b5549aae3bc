"""Rows into the online store in Feast's format: `write_online` for any store, and for Redis a writer that encodes
column by column instead of value by value.

Redis keeps Feast's storage format (key = serialised entity key + project, field = mmh3("<view>:<feature>"), value =
serialised ValueProto, `_ts:<view>` = serialised Timestamp), so Feast reads what this module writes. Feast's own
write builds a ValueProto object and an mmh3 hash per value; here doubles are encoded as fixed 9-byte records in one
numpy pass and integers through a cache of their distinct values, and the RESP commands are packed by hand.

Writes are upserts that never replace a newer row (the stored `_ts` is compared first), which is what makes
materialisation and pushes safe to repeat.

Feast and protobuf are imported inside the functions that use them: importing the core does not load Feast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

WRITE_BATCH = 2_000  # entities per Redis pipeline: bounded memory, few round trips
_DOUBLE_TAG = np.uint8(0x29)  # ValueProto.double_val: field 5, wire type 1 (64-bit)


def write_online(store: FeatureStore, view_name: str, rows: pa.Table) -> int:
    """Upsert rows (entity key, `event_timestamp`, features) into the online store in Feast's format.

    Redis goes through `RedisWriter` (no registry round trips: Feast's `push` lists every feature service in the
    SQL registry on each call, ~130 ms here); other stores through Feast's `write_to_online_store`.
    """
    view = store.get_feature_view(view_name, allow_registry_cache=True)
    if store.config.online_store.type == "redis":
        ts = pc.cast(rows["event_timestamp"], pa.int64())
        return RedisWriter(store).write(view, rows.append_column("event_ts_us", ts))
    if "created" not in rows.column_names:
        rows = rows.append_column("created", rows["event_timestamp"])
    store.write_to_online_store(view_name, rows.to_pandas())
    return int(rows.num_rows)


def encode_doubles(values: np.ndarray, head: bytes = b"") -> list[bytes]:
    """`head` + RESP bulk of ValueProto(double_val=v) per value; NaN -> an empty value (Feast's encoding of NaN).

    Doubles are fixed-width (tag 0x29 + 8 bytes little-endian), so every record is built in one numpy pass.
    """
    values = np.ascontiguousarray(values, dtype="<f8")
    prefix = np.frombuffer(head + b"$9\r\n" + bytes([_DOUBLE_TAG]), dtype=np.uint8)
    width = prefix.size + 8 + 2
    records = np.empty((values.size, width), dtype=np.uint8)
    records[:, : prefix.size] = prefix
    records[:, prefix.size : prefix.size + 8] = values.view(np.uint8).reshape(-1, 8)
    records[:, -2:] = np.frombuffer(b"\r\n", dtype=np.uint8)
    blob = records.tobytes()
    out = [blob[i : i + width] for i in range(0, len(blob), width)]
    empty = head + b"$0\r\n\r\n"
    for i in np.flatnonzero(np.isnan(values)):
        out[i] = empty
    return out


def encode_with(encode_one: Callable[[Any], bytes], values: np.ndarray) -> list[bytes]:
    """Encode each distinct value once (counts and ids repeat a lot), then fan out."""
    uniques, inverse = np.unique(values, return_inverse=True)
    table = np.array([encode_one(v) for v in uniques.tolist()], dtype=object)
    return list(table[inverse])


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def framed_column(column: pa.ChunkedArray | pa.Array, dtype: Any, head: bytes = b"") -> list[bytes]:
    """`head` + RESP bulk string of each value's serialised ValueProto (Feast's online encoding)."""
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto  # lazy: see the module docstring
    from feast.type_map import python_values_to_proto_values
    from feast.types import Float64, Int64

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if dtype == Float64:
        return encode_doubles(np.asarray(pc.fill_null(pc.cast(arr, pa.float64()), np.nan).to_numpy()), head)
    if dtype == Int64:
        ints = np.asarray(pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy())
        out = encode_with(lambda v: head + _bulk(ValueProto(int64_val=int(v)).SerializeToString()), ints)
        for i in np.flatnonzero(np.asarray(arr.is_null().to_numpy(zero_copy_only=False))):
            out[i] = head + b"$0\r\n\r\n"
        return out
    # lists and other types: Feast's own converter, value by value (real-time pushes write few rows)
    protos = python_values_to_proto_values(arr.to_pylist(), dtype.to_value_type())
    return [head + _bulk(p.SerializeToString()) for p in protos]


def _timestamp_proto(us: int) -> bytes:
    from google.protobuf.timestamp_pb2 import Timestamp  # lazy: see the module docstring

    encoded: bytes = Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000).SerializeToString()
    return encoded


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(_bulk(p) for p in parts)


class RedisWriter:
    """Upserts rows into Feast's Redis layout, skipping entities whose stored row is newer.

    Commands are packed as RESP by hand and sent in one write per batch: redis-py's pipeline spends ~10 us of Python
    per command on packing and bookkeeping, which capped throughput near 400k values/s here.
    """

    def __init__(self, store: FeatureStore) -> None:
        from feast.infra.online_stores.helpers import _mmh3  # lazy: see the module docstring

        self.store = store
        self.config = store.config
        self.client = store._get_provider().online_store._get_client(self.config.online_store)  # type: ignore[attr-defined]
        self._mmh3 = _mmh3

    def write(self, view: FeatureView, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        key = view.join_keys[0]
        ts_field = f"_ts:{view.name}".encode()
        heads = [_bulk(self._mmh3(f"{view.name}:{f.name}")) for f in view.features]
        columns = [framed_column(rows[f.name], f.dtype, head) for f, head in zip(view.features, heads, strict=True)]
        ts_us = np.asarray(rows["event_ts_us"].to_numpy())
        columns.append(encode_with(lambda us: _bulk(ts_field) + _bulk(_timestamp_proto(int(us))), ts_us))
        keys = self._entity_keys(key, rows[key])
        command_head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * len(columns))
        ttl = self.config.online_store.key_ttl_seconds
        written = 0
        for begin in range(0, rows.num_rows, WRITE_BATCH):
            stop = min(begin + WRITE_BATCH, rows.num_rows)
            newer = self._stored_is_newer(keys[begin:stop], ts_field, ts_us[begin:stop])
            commands: list[bytes] = []
            for i in range(begin, stop):
                if newer[i - begin]:
                    continue
                commands.append(command_head + _bulk(keys[i]) + b"".join([c[i] for c in columns]))
                if ttl:
                    commands.append(_command(b"EXPIRE", keys[i], str(ttl).encode()))
                written += 1
            self._send(commands)
        return written

    def _send(self, commands: list[bytes]) -> list[Any]:
        """One write of pre-encoded RESP commands, then one reply read each (errors raise like redis-py's)."""
        if not commands:
            return []
        connection = self.client.connection_pool.get_connection()
        try:
            connection.send_packed_command([b"".join(commands)])
            return [connection.read_response() for _ in commands]
        finally:
            self.client.connection_pool.release(connection)

    def _entity_keys(self, join_key: str, values: pa.ChunkedArray) -> list[bytes]:
        """Feast's serialised entity key + project per value; int64 keys are built in one numpy pass."""
        from feast.infra.key_encoding_utils import serialize_entity_key  # lazy: see the module docstring
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value as ValueProto

        project = self.config.project.encode()
        version = self.config.entity_key_serialization_version

        def feast_key(v: Any) -> bytes:
            field = "string_val" if isinstance(v, str) else "int64_val"
            proto = EntityKey(join_keys=[join_key], entity_values=[ValueProto(**{field: v})])
            return serialize_entity_key(proto, entity_key_serialization_version=version) + project

        if not pa.types.is_integer(values.type) or len(values) < 2:
            return [feast_key(v) for v in values.to_pylist()]
        # Feast's layout ends with the 8 little-endian value bytes before the project: derive the prefix, check it
        zero = feast_key(0)
        prefix = zero[: len(zero) - len(project) - 8]
        ints = np.asarray(values.combine_chunks().to_numpy(), dtype="<i8")
        raw = ints.view(np.uint8).reshape(-1, 8)
        keys = [prefix + row.tobytes() + project for row in raw]
        if keys[0] != feast_key(int(ints[0])) or keys[-1] != feast_key(int(ints[-1])):
            return [feast_key(int(v)) for v in ints]  # layout changed in a Feast release: stay correct
        return keys

    def _stored_is_newer(self, keys: list[bytes], ts_field: bytes, new_us: np.ndarray) -> list[bool]:
        from google.protobuf.timestamp_pb2 import Timestamp  # lazy: see the module docstring

        stored = self._send([_command(b"HGET", k, ts_field) for k in keys])
        out = []
        for raw, new in zip(stored, new_us.tolist(), strict=True):
            if not raw:
                out.append(False)
                continue
            ts = Timestamp.FromString(raw)
            out.append(ts.seconds * 1_000_000 + ts.nanos // 1000 > new)
        return out
