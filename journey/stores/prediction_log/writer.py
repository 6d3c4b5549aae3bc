"""The appender: `PredictionLog.append` queues a record under a lock and returns; a daemon thread writes batches
to the sink off the request path (see the package docstring for when it flushes, drops and counts)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from journey.errors import InvalidInputError, JourneyError
from journey.stores.prediction_log.schema import PredictionRecord, PredictionSink, records_to_table

log = logging.getLogger(__name__)

_DROP_WARNING_EVERY_S = 60.0


@dataclass(frozen=True)
class LogStats:
    """Counters since the log was opened: appended = written + failed + pending (+ in flight)."""

    appended: int
    written: int
    dropped: int
    failed: int
    pending: int


class PredictionLog:
    """A batched, thread-safe prediction log whose `append` never blocks on I/O (see the package docstring).

    >>> log = open_prediction_log(settings)  # doctest: +SKIP
    >>> log.append(PredictionRecord("r1", now, "predict_purchase", 12, "control", 3, 0.42))  # doctest: +SKIP
    True
    >>> log.close()  # doctest: +SKIP

    Create it in the process that appends (after a fork: the writer thread does not survive one).
    """

    def __init__(
        self,
        sink: PredictionSink,
        *,
        batch_size: int = 1000,
        flush_interval_s: float = 2.0,
        max_queue: int = 100_000,
    ) -> None:
        if batch_size < 1 or max_queue < 1 or flush_interval_s <= 0:
            raise InvalidInputError(
                "batch_size and max_queue must be >= 1 and flush_interval_s > 0",
                field="prediction_log",
                value=(batch_size, max_queue, flush_interval_s),
            )
        self.sink = sink
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self._cond = threading.Condition()
        self._buffer: list[PredictionRecord] = []
        self._closed = False
        self._flush_requested = 0  # serial of the newest flush() call
        self._flushed = 0  # the newest flush serial whose records are written
        self._appended = self._written = self._dropped = self._failed = self._in_flight = 0
        self._last_drop_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="journey-prediction-log", daemon=True)
        self._thread.start()

    @property
    def location(self) -> str:
        return self.sink.location

    def append(self, record: PredictionRecord) -> bool:
        """Queue one record; False (and counted in `stats.dropped`) when the queue is full or the log closed."""
        with self._cond:
            if self._closed or len(self._buffer) >= self.max_queue:
                self._dropped += 1
                warn = time.monotonic() - self._last_drop_warning > _DROP_WARNING_EVERY_S
                if warn:
                    self._last_drop_warning = time.monotonic()
            else:
                self._buffer.append(record)
                self._appended += 1
                if len(self._buffer) == self.batch_size:
                    self._cond.notify_all()
                return True
        if warn:
            log.warning("prediction log dropped a record", extra={"dropped": self._dropped, "closed": self._closed})
        return False

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything appended so far; True when done within `timeout_s` (for tests and shutdown)."""
        with self._cond:
            self._flush_requested += 1
            target = self._flush_requested
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._flushed >= target or not self._thread.is_alive(), timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, stop the writer thread and release the sink. Later appends are dropped."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("prediction log writer did not finish", extra={"pending": len(self._buffer)})
        self.sink.close()
        log.info("prediction log closed", extra={"location": self.location, **vars(self.stats)})

    @property
    def stats(self) -> LogStats:
        with self._cond:
            return LogStats(
                appended=self._appended,
                written=self._written,
                dropped=self._dropped,
                failed=self._failed,
                pending=len(self._buffer) + self._in_flight,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                deadline = time.monotonic() + self.flush_interval_s
                while (
                    not self._closed
                    and self._flushed >= self._flush_requested
                    and len(self._buffer) < self.batch_size
                    and (remaining := deadline - time.monotonic()) > 0
                ):
                    self._cond.wait(remaining)
                batch, self._buffer = self._buffer, []
                self._in_flight = len(batch)
                serial, closing = self._flush_requested, self._closed
            written = self._write(batch) if batch else 0
            with self._cond:
                self._written += written
                self._failed += len(batch) - written
                self._in_flight = 0
                self._flushed = serial
                self._cond.notify_all()
                if closing and not self._buffer:
                    return

    def _write(self, batch: list[PredictionRecord]) -> int:
        """Write one batch; the number of records written (bad records and failed writes are logged, not raised:
        this thread must survive anything, or every later prediction would be lost silently)."""
        try:
            table = records_to_table(batch)
            self.sink.write(table)
        except JourneyError as exc:
            log.error(
                "prediction log write failed", extra={"records": len(batch), "error": str(exc), "to": self.location}
            )
            return 0
        except Exception:  # a bug or an unexpected driver error: logged with its traceback, the thread lives on
            log.exception("prediction log write failed", extra={"records": len(batch), "to": self.location})
            return 0
        return int(table.num_rows)
