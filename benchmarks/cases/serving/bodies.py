"""Request bodies for the serving case, drawn fresh for every round from seeded generators.

Every load run numbers its requests from 0. When request k was always the k-th of one pre-built list, every round and
every warm-up re-sent the same first bodies, so the figures were of requests the server had just answered. Here a
`RequestStream` hands out a new `Batch` for every round (and for each warm-up and check): batch i is drawn from a
generator seeded with `(seed, i)`, so a run is reproducible and no batch is another's replay. Users and items are
drawn with replacement from the whole shop, as before, so a user can come back by chance, as in live traffic.

All servers of one round get the same batch (request k of the round is the same body on each): the servers compared
do the same work (the same users, sessions and items), so their ratio measures the servers, not the luck of two
draws. The batch is as fresh for the second server as for the first: nothing one server process keeps is seen by
another, and the one thing they share, Redis, holds every key in memory anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.cases.serving.deployment import Shop
from benchmarks.load import Payload

Draw = Callable[[np.random.Generator, int], list[Payload]]  # n bodies from a generator
CHUNK = 256  # bodies drawn at a time: a batch always grows by whole chunks, so body k depends on the seed alone


class Batch:
    """The bodies of one round: request k carries body k. Drawn before the round (`size`); a timed window that
    outruns the estimate gets more bodies drawn on demand from the same generator."""

    def __init__(self, draw: Draw, rng: np.random.Generator, size: int) -> None:
        self._draw, self._rng = draw, rng
        self._bodies: list[Payload] = []
        self.ensure(size)

    def ensure(self, size: int) -> None:
        while len(self._bodies) < size:
            self._bodies.extend(self._draw(self._rng, CHUNK))

    def __len__(self) -> int:
        return len(self._bodies)

    def __call__(self, number: int) -> Payload:
        if number >= len(self._bodies):
            self.ensure(number + 1)
        return self._bodies[number]


@dataclass
class RequestStream:
    """A new batch of bodies at every `next_batch`, batch i drawn with a generator seeded `(seed, i)`."""

    draw: Draw
    seed: int
    drawn: int = 0

    def next_batch(self, size: int) -> Batch:
        rng = np.random.default_rng([self.seed, self.drawn])
        self.drawn += 1
        return Batch(self.draw, rng, size)


def purchase_bodies(shop: Shop, candidates: int) -> Draw:
    """`/predict_purchase`: a random user with their last session, `candidates` random items with their prices."""

    def draw(rng: np.random.Generator, n: int) -> list[Payload]:
        users = rng.integers(0, len(shop.users), n)
        picks = rng.integers(0, len(shop.items), (n, candidates))
        return [
            {
                "user_id": shop.users[u],
                "session_id": shop.sessions[u],
                "request_ts": shop.request_ts[u],
                "items": [{"item_id": shop.items[i], "price": shop.prices[i]} for i in row],
            }
            for u, row in zip(users.tolist(), picks.tolist(), strict=True)
        ]

    return draw


def recommend_bodies(shop: Shop, users: list[int] | None = None) -> Draw:
    """`/recommend`: a random user's last session (among `users`, indexes into the shop; None: any), ten items."""
    pool = list(range(len(shop.users))) if users is None else users

    def draw(rng: np.random.Generator, n: int) -> list[Payload]:
        picks = rng.integers(0, len(pool), n).tolist()
        return [{"user_id": shop.users[pool[p]], "session_id": shop.sessions[pool[p]], "k": 10} for p in picks]

    return draw


def users_by_kind(shop: Shop) -> dict[str, list[int]]:
    """The shop's users (indexes) by the next-item kind `/recommend`'s route sends them to (sticky, as the server
    assigns them: `serving.routing.Router`). Empty when the deployment has no such route."""
    from serving.routing import Router

    if not shop.recommend_route:
        return {}
    router = Router.from_dict(shop.recommend_route)
    by_kind: dict[str, list[int]] = {name: [] for name in router.shares()}
    for index, user in enumerate(shop.users):
        by_kind[router.variant_for(user).name].append(index)
    return by_kind


def ping_bodies(rng: np.random.Generator, n: int) -> list[Payload]:
    """The no-op's `/ping`: one small int, as small as the request numbers it used to carry."""
    return [{"x": x} for x in rng.integers(0, 4096, n).tolist()]


@dataclass(frozen=True)
class Streams:
    """One stream per kind of request, each with its own seed (the seeds the fixed lists had: 1, 2, 3)."""

    one: RequestStream  # /predict_purchase, 1 candidate
    hundred: RequestStream  # /predict_purchase, 100 candidates
    recommend: RequestStream
    ping: RequestStream
    recommend_by_kind: dict[str, RequestStream]  # /recommend, users the route sends to each next-item kind

    @classmethod
    def of(cls, shop: Shop) -> Streams:
        return cls(
            one=RequestStream(purchase_bodies(shop, 1), seed=1),
            hundred=RequestStream(purchase_bodies(shop, 100), seed=2),
            recommend=RequestStream(recommend_bodies(shop), seed=3),
            ping=RequestStream(ping_bodies, seed=4),
            recommend_by_kind={
                kind: RequestStream(recommend_bodies(shop, users), seed=5 + i)
                for i, (kind, users) in enumerate(users_by_kind(shop).items())
            },
        )
