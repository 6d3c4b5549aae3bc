"""Request bodies of the serving bench: a new draw for every round, reproducible from the seed."""

from __future__ import annotations

import numpy as np

from benchmarks.cases.serving.bodies import CHUNK, RequestStream, purchase_bodies, recommend_bodies
from benchmarks.cases.serving.deployment import Shop
from benchmarks.load import Payload

SHOP = Shop(
    users=[10, 20, 30, 40],
    sessions=["s10", "s20", "s30", "s40"],
    request_ts=[1010, 1020, 1030, 1040],
    items=[7, 8, 9],
    prices=[1.5, 2.5, 3.5],
)


def numbers(rng: np.random.Generator, n: int) -> list[Payload]:
    return [{"v": v} for v in rng.integers(0, 1 << 40, n).tolist()]


def test_every_batch_is_a_new_draw() -> None:
    stream = RequestStream(numbers, seed=1)
    first, second = stream.next_batch(50), stream.next_batch(50)
    assert [first(k) for k in range(50)] != [second(k) for k in range(50)]
    assert first(0) != second(0)  # the first bodies above all: they were the ones every round re-sent


def test_a_run_is_reproducible_from_the_seed_and_streams_of_other_seeds_differ() -> None:
    one, again, other = RequestStream(numbers, seed=1), RequestStream(numbers, seed=1), RequestStream(numbers, seed=2)
    for _ in range(3):
        a, b, c = one.next_batch(10), again.next_batch(10), other.next_batch(10)
        assert [a(k) for k in range(10)] == [b(k) for k in range(10)] != [c(k) for k in range(10)]


def test_body_k_is_the_same_however_many_bodies_were_drawn_ahead() -> None:
    ahead = RequestStream(numbers, seed=3).next_batch(3 * CHUNK)
    on_demand = RequestStream(numbers, seed=3).next_batch(1)
    assert len(on_demand) == CHUNK
    assert on_demand(2 * CHUNK + 5) == ahead(2 * CHUNK + 5)  # a window that outran the estimate draws more
    assert len(on_demand) == 3 * CHUNK


def test_purchase_bodies_pair_a_user_with_their_last_session_and_items_with_their_prices() -> None:
    batch = RequestStream(purchase_bodies(SHOP, 100), seed=1).next_batch(20)
    for k in range(20):
        body = batch(k)
        u = SHOP.users.index(body["user_id"])
        assert (body["session_id"], body["request_ts"]) == (SHOP.sessions[u], SHOP.request_ts[u])
        assert len(body["items"]) == 100
        assert all(SHOP.prices[SHOP.items.index(i["item_id"])] == i["price"] for i in body["items"])


def test_recommend_bodies_ask_for_ten_items_of_a_users_last_session() -> None:
    body = RequestStream(recommend_bodies(SHOP), seed=1).next_batch(1)(0)
    assert body["k"] == 10 and SHOP.sessions[SHOP.users.index(body["user_id"])] == body["session_id"]
