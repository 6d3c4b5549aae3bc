# mypy: disallow-untyped-decorators=False
"""The floor of the serving benchmark: a BentoML service that does nothing, served like the real one.

    bentoml serve benchmarks.noop_service:Noop --host 127.0.0.1 --port 3001

Same framework, same HTTP stack (BentoML 1.4 on uvicorn, one worker, access log on), same client: what is left of a
`/predict_purchase` latency after subtracting this is Journey's own work (validation, the Redis read, the model,
the response). A sync endpoint on purpose: BentoML runs it in its thread pool, as `/predict_purchase` runs its
feature read in one, so both pay the same thread hop. Nothing else is imported, so it also gives the cold-start
floor of a BentoML service on this machine.
"""

from __future__ import annotations

import bentoml


@bentoml.service(name="journey_bench_noop", workers=1)
class Noop:
    @bentoml.api
    def ping(self, x: int) -> int:
        """Echo `x`: one validated int in, one out."""
        return x
