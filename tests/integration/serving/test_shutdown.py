"""SIGTERM under traffic (issue 19.5): a real `bentoml serve` stopped while clients post events and ask for
predictions; afterwards every event it acknowledged is in the event log and every prediction it answered is in the
prediction log (the worker finishes the requests in flight and writes the log's last batch on shutdown).

The server is one of its own (it is stopped by the test); it shares the session's shop (data dir, registry).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.serving.conftest import SESSION_SETUP_TIMEOUT_S, Shop, serve, stop_group

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]

CLIENTS = 3
TRAFFIC_BEFORE_STOP_S = 2.0


class Traffic:
    """Clients that post one event and ask for one next action per round until the server stops answering."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked_events: list[str] = []
        self.answered_sessions: list[str] = []
        self.server_errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as http:
            while not self.stop.is_set():
                try:
                    self._round(http)
                except httpx.TransportError:  # the server is gone (or going): this client is done
                    return

    def _round(self, http: httpx.Client) -> None:
        session = f"sigterm-{uuid.uuid4().hex[:12]}"
        event = {
            "event_id": f"sigterm-{uuid.uuid4().hex}",
            "user_id": 1,
            "session_id": session,
            "item_id": 42,
            "event_type": "view",
            "event_timestamp": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
        }
        answer = http.post("/events", json={"events": [event]})
        self._record(answer, lambda body: body["accepted"] == 1 and self.acked_events.append(event["event_id"]))
        answer = http.post("/predict_next_action", json={"user_id": 1, "session_id": session})
        self._record(answer, lambda _body: self.answered_sessions.append(session))

    def _record(self, answer: httpx.Response, on_ok: Any) -> None:
        with self.lock:
            if answer.status_code == 200:
                on_ok(answer.json())
            elif answer.status_code >= 500 and answer.status_code != 503:  # 503: shutting down, not acknowledged
                self.server_errors.append(f"{answer.status_code} {answer.text[:200]}")


def test_sigterm_under_traffic_loses_no_acknowledged_event_or_answered_prediction(
    shop: Shop, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from journey.stores.offline import OfflineTables
    from journey.stores.prediction_log import read_predictions

    with serve(shop.env, tmp_path_factory.mktemp("serve-sigterm")) as server:
        traffic = Traffic(server.url)
        clients = [threading.Thread(target=traffic.client, daemon=True) for _ in range(CLIENTS)]
        for thread in clients:
            thread.start()
        time.sleep(TRAFFIC_BEFORE_STOP_S)
        stop_group(server.process)  # SIGTERM to the whole group, as Kubernetes does; SIGKILL only after a timeout
        traffic.stop.set()
        for thread in clients:
            thread.join(timeout=60)

    assert traffic.acked_events and traffic.answered_sessions, "no traffic was answered before the stop"
    assert traffic.server_errors == []
    logged = set(OfflineTables(shop.settings).read("event_log")["event_id"].to_pylist())
    assert [e for e in traffic.acked_events if e not in logged] == []
    predicted = set(read_predictions(shop.settings, endpoint="predict_next_action")["session_id"].to_pylist())
    assert [s for s in traffic.answered_sessions if s not in predicted] == []
