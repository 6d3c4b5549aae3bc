"""Interleaved load runs: each round on a fresh batch, the same batch for every server of the round."""

from __future__ import annotations

import numpy as np

from benchmarks.cases.serving.bodies import RequestStream
from benchmarks.cases.serving.interleave import Target, alternate, draw_round
from benchmarks.load import Payload
from tests.unit.benchmarks.echo_server import Seen, Server


def numbers(rng: np.random.Generator, n: int) -> list[Payload]:
    return [{"v": v} for v in rng.integers(0, 1 << 40, n).tolist()]


def test_targets_of_one_stream_share_each_rounds_batch_and_other_streams_draw_their_own() -> None:
    shared, own = RequestStream(numbers, seed=1), RequestStream(numbers, seed=2)
    targets = {"a": Target("http://127.0.0.1:1/", shared), "b": Target("http://127.0.0.1:2/", shared)}
    batches = draw_round({**targets, "c": Target("http://127.0.0.1:3/", own)}, 4)
    assert batches["a"] is batches["b"] and batches["c"] is not batches["a"]
    assert (shared.drawn, own.drawn) == (1, 1)


def test_every_round_sends_fresh_bodies_the_same_to_each_server_and_the_warmup_its_own(
    server: Server, seen: Seen
) -> None:
    stream = RequestStream(numbers, seed=1)
    url = f"{server.url}/echo"
    reports = alternate({"a": Target(url, stream), "b": Target(url, stream)}, concurrency=1, rounds=3, requests=5)

    assert all(r.errors == 0 and len(r.latencies) == 15 for r in reports.values())
    warmup, measured = seen.bodies[:24], seen.bodies[24:]  # 2 x (2 * concurrency + 10) warm-up requests first
    assert warmup[:12] == warmup[12:]
    rounds = [measured[i : i + 10] for i in range(0, 30, 10)]
    assert all(r[:5] == r[5:] for r in rounds)  # a then b, on the same batch
    firsts = [r[0] for r in rounds] + [warmup[0]]
    assert len({body["v"] for body in firsts}) == 4  # type: ignore[index]  # no round starts with another's bodies
