"""Where Journey runs: one settings class for every process (CLI, training, serving, benchmarks).

Values come from `JOURNEY_*` environment variables (or a `.env` file); *what* to run (hyper-parameters, generator
configs) lives in YAML files instead. `get_settings()` is cached so a process reads the environment once; tests call
`get_settings.cache_clear()` after changing it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A checkout's own folders: the defaults when JOURNEY_DATA_DIR / JOURNEY_REPORTS_DIR are unset, anchored on the
# project (not the current directory), so `cd feature_repo && feast apply` and `make demo` see the same files.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Only the embedded profile has a default admin token, and it is documented as such; `prod` refuses it.
LOCAL_DEV_ADMIN_TOKEN = "journey-local-dev-token"


class Profile(StrEnum):
    """Where the stores live: `local` is embedded (files + SQLite), `prod` uses PostgreSQL and Redis."""

    LOCAL = "local"
    PROD = "prod"


class Settings(BaseSettings):
    """All connection details, paths and secrets. Nothing else in the code base names a host, port or path."""

    model_config = SettingsConfigDict(env_prefix="JOURNEY_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    profile: Profile = Field(Profile.LOCAL, description="`local` (embedded, default) or `prod` (PostgreSQL + Redis).")
    data_dir: Path = Field(PROJECT_ROOT / "data", description="Root of datasets, offline store files and logs.")
    reports_dir: Path = Field(PROJECT_ROOT / "reports", description="Where reports and benchmark results go.")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Online store (prod profile).")
    postgres_dsn: str = Field(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        description="Offline store, Feast registry and model registry (prod profile), SQLAlchemy URL.",
    )
    feast_project: str = Field(
        "journey", pattern=r"^[a-z][a-z0-9_]{0,39}$", description="Feast project (isolates registries and keys)."
    )
    offline_schema: str = Field(
        "journey", pattern=r"^[a-z][a-z0-9_]{0,39}$", description="PostgreSQL schema of the offline tables (prod)."
    )
    registry_url: str | None = Field(
        None,
        description="Model registry database (SQLAlchemy URL). Unset: SQLite in data_dir (local), postgres_dsn (prod).",
    )
    registry_schema: str = Field(
        "journey_registry",
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="PostgreSQL schema of the model registry tables (ignored by SQLite).",
    )
    admin_token: SecretStr | None = Field(None, description="Bearer token for admin endpoints; required in prod.")
    session_timeout_s: int = Field(1800, gt=0, description="Inactivity that ends a session (sessionisation).")
    serve_host: str = Field("127.0.0.1", description="Address `make serve` / `journey serve` binds.")
    serve_port: int = Field(3000, ge=1, le=65535, description="Port of the HTTP service.")
    serve_workers: int = Field(1, ge=1, le=64, description="BentoML worker processes of the API service.")
    online_timeout_s: float = Field(0.1, gt=0, description="Online feature read timeout; past it: degraded answer.")
    online_retry_after_s: float = Field(
        0.5,
        ge=0,
        le=5,
        description="After a failed online read, answer degraded without asking the store for this long (a hung "
        "Redis must not hold the event loop for the timeout on every request).",
    )
    ort_intra_op_threads: int = Field(1, ge=0, description="ONNX Runtime threads per model call (0: ORT default).")
    ort_inter_op_threads: int = Field(1, ge=0, description="ONNX Runtime inter-op threads (0: ORT default).")
    adaptive_batching: bool = Field(
        False, description="Score propensity through the batching model service (off: in-process; see make bench)."
    )
    batch_max_latency_ms: int = Field(10, gt=0, description="Longest a call may wait to be batched.")
    batch_max_size: int = Field(2048, gt=0, description="Most rows in one batched model call.")
    max_candidates: int = Field(1000, ge=1, description="Most candidate items in one /predict_purchase request.")
    max_events: int = Field(10_000, ge=1, description="Most events in one /events request.")
    event_dedup_window_s: float = Field(
        7 * 86_400.0,
        gt=0,
        description="How long an accepted event id is remembered: a retry inside it is acknowledged as a duplicate.",
    )
    event_claim_ttl_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Lease on an event id while its request stores it (journey/stores/event_ids.py).",
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Larger request bodies get HTTP 413.")
    log_level: str = Field("INFO", description="Root log level.")
    log_format: Literal["console", "json"] = Field("console", description="`json` for machine-read logs.")
    seed: int = Field(42, description="Default seed for generators and training.")
    chain_path: Path | None = Field(
        None,
        description="Journey chain (JSON) that analyze writes, serving reads; default <data_dir>/journey/chain.json.",
    )
    attribution_window_s: float = Field(
        86_400.0,
        gt=0,
        description="A purchase counts as the outcome of a user's predictions made at most this long before it.",
    )
    prediction_log_flush_s: float = Field(
        2.0, gt=0, description="Longest a served prediction waits in memory before the prediction log writes it."
    )
    prediction_log_max_queue: int = Field(
        100_000, ge=1, description="Most predictions waiting to be written; past it new ones are dropped (counted)."
    )
    gc_freeze: bool = Field(
        True,
        description="Serving workers move what start-up left alive out of the garbage collector's generations "
        "(gc.freeze): full collections no longer walk Feast's, pandas' and the models' objects (p99 spikes).",
    )
    route_poll_s: float = Field(
        1.0, gt=0, le=5, description="How often serving checks the registry for route and production-version changes."
    )
    execution_provider: Literal["auto", "cuda", "cpu"] = Field(
        "auto",
        description="`cpu`, `cuda` (CPU when unusable), or `auto`: CUDA for a model only when the batches serving "
        "sends it reach the CUDA-vs-CPU crossover the GPU benchmark measured (gpu_report).",
    )
    gpu_report: Path | None = Field(
        None, description="GPU benchmark JSON the `auto` policy reads; default <reports_dir>/gpu/gpu.json."
    )

    @field_validator("data_dir", "reports_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Resolve once, so a worker that changes directory (BentoML does) still finds the same files.
        return value.expanduser().resolve()

    @field_validator("chain_path", "gpu_report")
    @classmethod
    def _absolute_if_set(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @model_validator(mode="after")
    def _prod_needs_a_real_secret(self) -> Self:
        if self.admin_token is None and self.profile is Profile.LOCAL:
            self.admin_token = SecretStr(LOCAL_DEV_ADMIN_TOKEN)
        if self.profile is Profile.PROD:
            token = self.admin_token.get_secret_value() if self.admin_token else ""
            if not token or token == LOCAL_DEV_ADMIN_TOKEN:
                raise ValueError("JOURNEY_ADMIN_TOKEN must be set to a real secret in the prod profile")
        return self

    @property
    def events_dir(self) -> Path:
        """Canonical event datasets, one folder per dataset name."""
        return self.data_dir / "datasets"

    @property
    def offline_dir(self) -> Path:
        """Offline store Parquet files of the local profile, one per feature view source."""
        return self.data_dir / "offline"

    @property
    def registry_database_url(self) -> str:
        """The registry's SQLAlchemy URL: `registry_url` when set, else per profile."""
        if self.registry_url:
            return self.registry_url
        if self.profile is Profile.PROD:
            return self.postgres_dsn
        return f"sqlite:///{self.data_dir / 'registry.db'}"

    @property
    def bentoml_home(self) -> Path:
        """BentoML's model store (BENTOML_HOME): where registered ONNX artifacts live, addressed by tag."""
        return self.data_dir / "bentoml"

    @property
    def models_dir(self) -> Path:
        """Exported model files before registration (training writes, the registry copies into BentoML)."""
        return self.data_dir / "models"

    @property
    def model_reports_dir(self) -> Path:
        """Evaluation reports, one folder per model name and version."""
        return self.reports_dir / "models"

    @property
    def journey_chain_path(self) -> Path:
        """The journey chain (`journey.chain_artifact.JourneyArtifact`): `journey analyze` writes it, serving reads."""
        return self.chain_path or self.data_dir / "journey" / "chain.json"

    @property
    def journey_reports_dir(self) -> Path:
        """Journey analysis reports, one folder per dataset."""
        return self.reports_dir / "journey"

    @property
    def prediction_log_dir(self) -> Path:
        """Served predictions of the local profile, Parquet partitioned by UTC day (prod: a PostgreSQL table)."""
        return self.data_dir / "prediction_log"

    @property
    def ab_reports_dir(self) -> Path:
        """A/B reports, one folder per experiment."""
        return self.reports_dir / "ab"

    @property
    def gpu_report_path(self) -> Path:
        """The GPU benchmark's JSON (benchmarks/gpu.py): per model, the batch size from which CUDA beats CPU."""
        return self.gpu_report or self.reports_dir / "gpu" / "gpu.json"

    @property
    def feast_dir(self) -> Path:
        """Feast registry and SQLite online store of the local profile."""
        return self.data_dir / "feast"


_override: ContextVar[Settings | None] = ContextVar("journey_settings_override", default=None)


def get_settings() -> Settings:
    """The process-wide settings (environment read once), unless `use_settings` is active."""
    return _override.get() or _from_environment()


@lru_cache(maxsize=1)
def _from_environment() -> Settings:
    return Settings()


get_settings.cache_clear = _from_environment.cache_clear  # type: ignore[attr-defined]


@contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Make `get_settings()` return `settings` inside the block, for code that cannot take them as an argument."""
    token = _override.set(settings)
    try:
        yield settings
    finally:
        _override.reset(token)
