"""The serving request path without HTTP: a lifecycle over real registered versions, outcomes into memory, and the
answer path the service runs (serving.answer), for unit tests of routing, reload, shadow and conversions."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pyarrow as pa

from journey.contracts import PREDICT_PURCHASE
from journey.registry import Registry, RouteVariant
from journey.settings import Settings
from serving.answer import Answers
from serving.schemas import PurchaseRequest, PurchaseResponse
from tests.factories.served import PURCHASE_MODEL

ACTOR = "test"


class MemorySink:
    """A prediction log sink that keeps the tables it is given."""

    location = "memory"

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def write(self, table: pa.Table) -> None:
        self.tables.append(table)

    def read(
        self, *, experiment: str | None, endpoint: str | None, since: datetime | None, until: datetime | None
    ) -> pa.Table:
        return pa.concat_tables(self.tables)

    def close(self) -> None:
        pass

    def rows(self) -> list[dict[str, Any]]:
        return [row for table in self.tables for row in table.to_pylist()]


def purchase_request(user_id: int) -> PurchaseRequest:
    return PurchaseRequest(user_id=user_id, items=[{"item_id": 1, "price": 10.0}, {"item_id": 2, "price": 90.0}])


def ask(answers: Answers, user_id: int) -> PurchaseResponse:
    """One /predict_purchase request through the service's answer path (no store: the degraded path)."""
    return asyncio.run(answers.answer(PREDICT_PURCHASE, purchase_request(user_id), PurchaseResponse))


def set_route(settings: Settings, *variants: tuple[str, int, float], shadow: int | None = None) -> None:
    with Registry(settings) as registry:
        registry.set_route(
            PREDICT_PURCHASE,
            [RouteVariant(name, PURCHASE_MODEL, version, weight) for name, version, weight in variants],
            actor=ACTOR,
            experiment="exp1",
            salt="s1",
            shadow_version=shadow,
        )
