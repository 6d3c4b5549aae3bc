"""The lean online read path: a feature service read exactly as Feast's `get_online_features(...).to_dict()`.

Feast stays the definition, storage format and write path; only the per-request read is rebuilt: Feast's costs ~6x
the raw Redis floor. cProfile of `get_online_features` (Redis, 1 user x 40 features incl. the python-mode ODFV):
Redis I/O < 20%; the rest is per-request work that never changes between requests or that the answer does not
need: service resolution (cached, but re-keyed and copied per call), entity values -> protos and unique-entity
grouping, `mmh3("<view>:<feature>")` of every field, a `GetOnlineFeaturesResponse` with statuses and per-value
timestamps that `to_dict` walks again, and for the ODFV a second `to_dict` plus a proto round trip of its output.
The same profile of this reader: redis-py's pipeline and the socket are most of it; a `Value` parse + oneof read
~0.8 µs a value (kept: upb is the fast part); Feast's `serialize_entity_key` with its protos ~7 µs a key (so
`_key_codec`, ~0.5 µs, checked against it); `python_values_to_proto_values` ~25 µs a call, so it only runs on
values that its round trip would change (numpy scalars, NaN -> None), and `feast_value_type_to_python_type` only
on rare kinds (UUID, JSON, maps, timestamps); the ODFV UDF itself ~5-15 µs.

Resolution uses Feast's own resolver, so views, features, their order and join keys are exactly Feast's. Note:
Feast orders one view's features by iterating a `set`, so column order varies between processes (string hashing):
select columns by name, never by position. Standalone Redis is read in ONE round trip: a pipeline of one script
call per view that runs the HMGET of each unique entity inside Redis; other stores (SQLite in the `local` profile)
with Feast's `online_read` per view, which for SQLite is already one `SELECT ... IN (...)` per view.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from math import isnan
from struct import Struct
from typing import TYPE_CHECKING, Any, cast

from journey.errors import InvalidInputError, ServiceUnavailableError
from journey.stores.feature_store import feature_service

if TYPE_CHECKING:
    from feast import FeatureStore

Row = dict[str, Any]
Stamps = dict[str, list[datetime | None]]
_Plan = tuple["_View", list[tuple[Any, ...]], list[int]]  # a view, its unique entities, the entity each row reads
_Fetched = tuple[list[datetime | None], list[list[Any]]]  # per unique entity: timestamp, feature values

_SCALARS = frozenset({"int32_val", "int64_val", "double_val", "float_val", "string_val", "bytes_val", "bool_val"})
_LISTS = frozenset(f"{kind[:-4]}_list_val" for kind in _SCALARS)
_SCALAR_MEMO_MAX = 200_000  # distinct serialized scalars kept (a few MB); past it the memo starts over
_MISSING = object()
# Feast turns string payloads of these declared types into uuid.UUID: such views decode through Feast's function.
_UUID_TYPES = frozenset({"UUID", "TIME_UUID", "UUID_LIST", "TIME_UUID_LIST", "UUID_SET", "TIME_UUID_SET"})
# Join key values on which the fast key serialisation must agree with Feast's before it is used.
_KEY_SAMPLES: dict[str, list[Any]] = {"INT64": [0, 1, -1, 2**63 - 1, -(2**63)], "STRING": ["", "s1", "é" * 300]}
# The HMGETs of many entities of one view as ONE command, run inside Redis: redis-py spends tens of µs of Python per
# pipelined command (packing, its response callbacks), which made the 100+ HMGETs of a 100-candidate request a quarter
# of its time (py-spy). Missing fields and keys come back as nil, exactly as HMGET's. Standalone Redis only (the keys
# of one call may live on different cluster slots).
_HMGET_MANY = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, unpack(ARGV)) end
return out
"""


@dataclass(frozen=True, slots=True)
class _View:
    position: int
    name: str  # output/timestamp name (the projection's)
    table: Any  # the FeatureView, for stores read through Feast's online_read
    join_keys: tuple[str, ...]  # storage join keys
    columns: tuple[str, ...]  # entity-row columns holding them (join key aliases applied)
    features: tuple[str, ...]  # requested features, in Feast's order
    kinds: tuple[Any, ...]  # their declared ValueTypes
    fields: tuple[bytes, ...]  # Redis hash fields: mmh3("<view>:<feature>")..., b"_ts:<view>"
    output: tuple[bool, ...]  # whether the service returns the feature (ODFV-only inputs are dropped)
    plain: bool  # no UUID-typed feature: values decode without Feast's converter


@dataclass(frozen=True, slots=True)
class _Odfv:
    udf: Callable[[dict[str, Any]], dict[str, Any]]
    hidden: frozenset[str]  # inputs Feast hides from the UDF: features of views it did not declare (#6158)
    aliases: tuple[tuple[str, str], ...]  # (view__feature, feature) of its declared sources
    outputs: dict[str, Any]  # requested output -> ValueType


def _plan_view(position: int, table: Any, features: Sequence[str], wanted: Any, versioned: bool) -> _View:
    """What the reader needs of one feature view, worked out once: its Redis hash fields, kinds and join keys."""
    from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name

    storage = compute_versioned_name(table, versioned)
    kinds = {f.name: f.dtype.to_value_type() for f in table.features}
    return _View(
        position=position,
        name=table.projection.name_to_use(),
        table=table,
        join_keys=tuple(table.join_keys),
        columns=tuple(table.projection.join_key_map.get(k, k) for k in table.join_keys),
        features=tuple(features),
        kinds=tuple(kinds[f] for f in features),
        fields=(*(_mmh3(f"{storage}:{f}") for f in features), f"_ts:{storage}".encode()),
        output=tuple(f in wanted for f in features),
        plain=not any(kinds[f].name in _UUID_TYPES for f in features),
    )


class OnlineFeatureReader:
    """Reads one feature service online: `read(rows)` == `store.get_online_features(service, rows).to_dict()`.

    Built once at start-up (after `feast apply`, build a new one: the registry is not re-read). Safe for concurrent
    reads: no per-call shared state, redis-py's pool gives each call a connection, the key LRU is thread-safe.
    `timeout_s` bounds each Redis connect and read (one immediate retry: worst case ~2x), so an unreachable or
    hung store fails fast with ServiceUnavailableError, which serving turns into a degraded answer. After a failure
    the store is not asked again for `retry_after_s` (reads fail at once, degraded): serving reads on its event loop
    (no thread hop: reports/perf-notes.md), and a hung Redis must not stall the loop for `timeout_s` per request.
    """

    def __init__(
        self, store: FeatureStore, service: str, *, timeout_s: float = 0.5, retry_after_s: float = 0.5
    ) -> None:
        from feast import utils as feast_utils
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
        from feast.value_type import ValueType
        from google.protobuf.timestamp_pb2 import Timestamp

        self.service, self._config, self._project = service, store.config, store.project.encode()
        self._serialize, self._entity_key = serialize_entity_key, EntityKey
        self._version = store.config.entity_key_serialization_version
        self._parse, self._parse_ts = Value.FromString, Timestamp.FromString
        self._scalar_memo: dict[bytes, Any] = {}  # serialized scalar Value -> Python value (_fetch_redis)
        self._to_protos, self._to_python = python_values_to_proto_values, feast_value_type_to_python_type
        self._unknown = ValueType.UNKNOWN
        # python types that Feast's proto round trip returns unchanged, per declared type (FLOAT/INT32 may not)
        self._kept: dict[Any, type] = {
            ValueType.INT64: int,
            ValueType.DOUBLE: float,
            ValueType.STRING: str,
            ValueType.BOOL: bool,
        }
        self._inferred = {int: ValueType.INT64, float: ValueType.DOUBLE, str: ValueType.STRING, bool: ValueType.BOOL}
        self._key_protos: dict[Any, Callable[[Any], Any]] = {
            ValueType.INT64: lambda v: Value(int64_val=v),
            ValueType.STRING: lambda v: Value(string_val=v),
        }
        context = feast_utils._get_online_request_context(
            store.registry, store.project, feature_service(store, service), False
        )
        refs, odfvs, _, self._key_types, join_keys, grouped, wanted, request, entityless = context
        unsupported = [o.name for o in odfvs if o.mode != "python" or o.singleton or o.aggregations]
        if entityless or unsupported or any(o.write_to_online_store for o in odfvs):
            raise NotImplementedError(f"{service}: entityless views or ODFVs {unsupported} are read by Feast only")
        versioned = store.config.registry.enable_online_feature_view_versioning
        self._views = tuple(
            _plan_view(i, table, features, wanted, versioned) for i, (table, features) in enumerate(grouped)
        )
        self._join_keys, self._request = frozenset(join_keys) - set(request), frozenset(request)
        self._odfvs = tuple(self._plan_odfv(o, refs, odfvs) for o in odfvs)
        self._online_read: Callable[..., Any] = store._get_provider().online_store.online_read
        self._redis_keys = tuple(self._key_codec(view) for view in self._views)
        self._redis: Any = None
        self._retry_after_s, self._down_until = retry_after_s, 0.0  # monotonic time before which Redis is not asked
        self._connect_redis(store.config.online_store, timeout_s)

    def _connect_redis(self, cfg: Any, timeout_s: float) -> None:
        """A standalone Redis is read directly (one round trip per request); other stores through Feast."""
        from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, RedisType

        if not (isinstance(cfg, RedisOnlineStoreConfig) and cfg.redis_type == RedisType.redis):
            return
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        nodes, params = RedisOnlineStore._parse_connection_string(cfg.connection_string)  # as Feast parses it
        params.update(socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        # one immediate retry (a pooled connection that Redis closed); redis-py's default backs off for seconds
        params["retry"] = Retry(NoBackoff(), 1)
        self._redis = redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **params)
        self._redis_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._no_script = redis.exceptions.NoScriptError
        self._hmget_sha = hashlib.sha1(_HMGET_MANY.encode()).hexdigest()  # what SCRIPT LOAD answers

    @staticmethod
    def _plan_odfv(odfv: Any, refs: Sequence[str], odfvs: Sequence[Any]) -> _Odfv:
        """What Feast's `_augment_response_with_on_demand_transforms` works out on every request, once."""
        sources = {p.name for p in odfv.source_feature_view_projections.values()}
        odfv_names = {o.projection.name_to_use() for o in odfvs}
        hidden: set[str] = set()
        for view, _, feature in (ref.partition(":") for ref in refs):
            if view not in odfv_names and view not in sources:
                hidden |= {feature, f"{view}__{feature}"}
        for other in odfvs:
            for p in other.source_feature_view_projections.values():
                if p.name not in sources:
                    hidden |= {name for f in p.features for name in (f.name, f"{p.name}__{f.name}")}
        types = {f.name: f.dtype.to_value_type() for f in odfv.schema}
        name = odfv.projection.name_to_use()
        projections = odfv.source_feature_view_projections.values()
        return _Odfv(
            udf=odfv.feature_transformation.udf,
            hidden=frozenset(hidden),
            aliases=tuple((f"{p.name}__{f.name}", f.name) for p in projections for f in p.features),
            outputs={f: types[f] for view, _, f in (r.partition(":") for r in refs) if view == name},
        )

    def read(self, entity_rows: list[Row]) -> dict[str, list[Any]]:
        """Values per column, one per entity row (None where the entity is unknown); Feast's keys, order and types."""
        return self._read(entity_rows, None)

    def read_with_timestamps(self, entity_rows: list[Row]) -> tuple[dict[str, list[Any]], Stamps]:
        """`read`, plus each view's event timestamp per row (None: no row in the online store), for freshness."""
        stamps: Stamps = {}
        return self._read(entity_rows, stamps), stamps

    def _as_feast(self, values: list[Any], kind: Any) -> list[Any]:
        """`values` as they come out of Feast's python -> proto -> python round trip; as is when that is a no-op."""
        guess = self._inferred.get(type(values[0])) if kind == self._unknown else kind  # Feast infers request data
        kept = self._kept.get(guess)
        # C-speed checks (they run on 100-row columns); Feast turns NaN into None
        if kept is not None and set(map(type, values)) == {kept} and (kept is not float or not any(map(isnan, values))):
            return values
        return [self._to_python(p) for p in self._to_protos(values, kind)]

    def _read(self, rows: list[Row], stamps: Stamps | None) -> dict[str, list[Any]]:
        if not rows:
            raise InvalidInputError("no entity rows", field="entity_rows", value=rows)
        try:
            columns = {k: [row[k] for row in rows] for k in rows[0]}
        except KeyError as exc:
            raise InvalidInputError(f"entity rows must all have the keys {list(rows[0])}", field=exc.args[0]) from exc
        if missing := sorted(self._request - columns.keys()):
            raise InvalidInputError(f"{self.service} needs request data {missing} in the entity rows", field=missing[0])
        types = self._key_types
        out = {k: self._as_feast(v, types.get(k, self._unknown)) for k, v in columns.items() if k in self._join_keys}
        plans: list[_Plan] = []
        for view in self._views:
            if missing := [c for c in view.columns if c not in out]:
                raise InvalidInputError(f"{self.service} needs {missing} in the entity rows", field=missing[0])
            unique: dict[tuple[Any, ...], int] = {}
            keys = zip(*(out[c] for c in view.columns), strict=True)
            row_to_unique = [unique.setdefault(key, len(unique)) for key in keys]
            plans.append((view, list(unique), row_to_unique))
        if self._redis is not None:
            fetched = self._fetch_redis(plans, stamps is not None)
        else:
            fetched = [self._fetch_feast(*plan) for plan in plans]
        # the ODFV input: what Feast's response holds before it drops unrequested columns, in its order
        inputs = {**out, **{name: self._as_feast(columns[name], self._unknown) for name in self._request}}
        for (view, _, row_to_unique), (stamp, values) in zip(plans, fetched, strict=True):
            if len(row_to_unique) == 1:  # the common case: one entity row
                by_feature: Any = ([value] for value in values[0])
            else:  # transpose: entity rows -> feature columns
                by_feature = map(list, zip(*(values[u] for u in row_to_unique), strict=True))
            for feature, keep, column in zip(view.features, view.output, by_feature, strict=True):
                inputs[feature] = column
                if keep:
                    out[feature] = column
            if stamps is not None:
                stamps[view.name] = [stamp[u] for u in row_to_unique]
        for odfv in self._odfvs:
            given = {k: v for k, v in inputs.items() if k not in odfv.hidden}
            args, added = dict(given), set()
            for full, short in odfv.aliases:  # both names of a source feature, as OnDemandFeatureView.transform_dict
                if full in given or short in given:
                    src, dst = (full, short) if full in given else (short, full)
                    args[dst] = given[src]
                    added.add(dst)
            for name, values in odfv.udf(args).items():
                if name in odfv.outputs and name not in added:
                    out[name] = self._as_feast(values if isinstance(values, list) else [values], odfv.outputs[name])
        return out

    def _key(self, view: _View, values: tuple[Any, ...]) -> Any:
        """The EntityKey proto Feast builds for these join key values (already normalised by `_as_feast`)."""
        protos = []
        for column, value in zip(view.columns, values, strict=True):
            kind = self._key_types.get(column, self._unknown)
            make = self._key_protos.get(kind)
            protos.append(make(value) if make else self._to_protos([value], kind)[0])
        return self._entity_key(join_keys=view.join_keys, entity_values=protos)

    def _key_codec(self, view: _View) -> Callable[[tuple[Any, ...]], bytes]:
        """The Redis key of an entity: `serialize_entity_key(...) + project`, as Feast's redis store writes it.

        Feast's function costs ~7 µs a key (a third of the reader's own time for one user). For one INT64 or STRING
        join key its output is a constant head + the packed value, so the head is taken from Feast's function and
        the result checked against it at start-up on edge values; anything else calls Feast's function per key.
        """
        project, version = self._project, self._version

        def feast(values: tuple[Any, ...]) -> bytes:
            return bytes(self._serialize(self._key(view, values), version)) + project

        key_type = self._key_types.get(view.columns[0]) if len(view.columns) == 1 else None
        kind = key_type.name if key_type is not None else ""
        samples = _KEY_SAMPLES.get(kind, [])
        tail = 8 if kind == "INT64" else 4  # the packed value, or the packed length of the utf-8 string
        head = feast((samples[0],))[: -tail - len(project)] if samples else b""
        pack_int, pack_len = Struct("<q").pack, Struct("<I").pack

        def fast(values: tuple[Any, ...]) -> bytes:
            if kind == "INT64":
                return head + pack_int(values[0]) + project
            raw: bytes = values[0].encode()
            return head + pack_len(len(raw)) + raw + project

        return fast if samples and all(fast((v,)) == feast((v,)) for v in samples) else feast

    def _decode(self, value: Any, kind: Any, plain: bool) -> Any:
        """A parsed ValueProto as `feast_value_type_to_python_type` returns it, minus its branch ladder."""
        which = value.WhichOneof("val")
        if plain and which in _SCALARS:
            return getattr(value, which)
        if plain and which in _LISTS:
            return list(getattr(value, which).val)
        return None if which is None else self._to_python(value, kind)

    def _hmget_views(self, plans: list[_Plan]) -> list[list[list[bytes | None]]]:
        """Per view, per unique entity: its HMGET reply. One round trip, one EVALSHA per view (see _HMGET_MANY)."""

        def execute() -> list[list[list[bytes | None]]]:
            pipe = self._redis.pipeline(transaction=False)  # an executed pipeline is empty: one per attempt
            for view, unique, _ in plans:
                key = self._redis_keys[view.position]
                pipe.evalsha(self._hmget_sha, len(unique), *(key(values) for values in unique), *view.fields)
            return cast(list[list[list[bytes | None]]], pipe.execute())

        if (left := self._down_until - time.monotonic()) > 0:
            raise ServiceUnavailableError(f"online store (Redis) failed just now: asked again in {left:.2f} s")
        try:
            try:
                return execute()
            except self._no_script:  # a restarted or flushed Redis forgot the script: load it again, once
                self._redis.script_load(_HMGET_MANY)
                return execute()
        except self._redis_errors as exc:
            self._down_until = time.monotonic() + self._retry_after_s
            raise ServiceUnavailableError(f"online store (Redis) unreachable or too slow: {exc}") from exc

    def _fetch_redis(self, plans: list[_Plan], with_stamps: bool) -> list[_Fetched]:
        """Decode the replies. Scalar values repeat a lot (counts, prices, flags of 100 candidates): a plain view's
        scalar is looked up by its serialized bytes before it is parsed: a 100-candidate read 3.46 -> 3.05 ms
        (interleaved A/B in one process, reports/perf-notes.md). The memo is bounded and shared by threads (dict
        reads and writes are atomic; a race only parses a value twice)."""
        parse, decode, scalars, fetched = self._parse, self._decode, _SCALARS, []
        memo = self._scalar_memo
        if len(memo) > _SCALAR_MEMO_MAX:
            memo.clear()
        for (view, _, _), replies in zip(plans, self._hmget_views(plans), strict=True):
            stamp: list[datetime | None] = []
            rows: list[list[Any]] = []
            plain, kinds = view.plain, view.kinds
            for reply in replies:
                if (raw_ts := reply[-1]) is None or not with_stamps:  # no `_ts:<view>`: no row for this view
                    stamp.append(None)
                else:
                    ts = self._parse_ts(raw_ts)  # as Feast's redis online_read converts it
                    stamp.append(datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC))
                row: list[Any] = []
                append = row.append
                for raw, kind in zip(reply, kinds):  # noqa: B905 (the reply has one more field: the timestamp)
                    if raw is None:
                        append(None)
                    elif plain and (known := memo.get(raw, _MISSING)) is not _MISSING:
                        append(known)
                    else:  # the fast case of _decode, inlined: most values are scalars
                        value = parse(raw)
                        which = value.WhichOneof("val")
                        if plain and which in scalars:
                            memo[raw] = python = getattr(value, which)
                            append(python)
                        else:
                            append(decode(value, kind, plain))
                rows.append(row)
            fetched.append((stamp, rows))
        return fetched

    def _fetch_feast(self, view: _View, unique: list[tuple[Any, ...]], _: list[int]) -> _Fetched:
        keys = [self._key(view, values) for values in unique]
        found = self._online_read(
            config=self._config, table=view.table, entity_keys=keys, requested_features=list(view.features)
        )
        rows = []
        for _, got in found:  # None when the entity has no row; a missing feature reads as None too
            pairs = zip(view.features, view.kinds, strict=True)
            rows.append(
                [None if got is None or f not in got else self._decode(got[f], k, view.plain) for f, k in pairs]
            )
        return [stamp for stamp, _ in found], rows
