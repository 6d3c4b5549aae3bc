"""`Registry`: the one object callers hold; it owns the connections and the transactions, the modules do the work.

Each public operation opens exactly one transaction (a registration one per attempt) and hands its session to a
function of `versions`, `routes` or `audit`; what must happen only once the transaction committed stays here (the
log line of a committed change, removing a saved artifact when the transaction fails). Arguments that need no
database are validated before a transaction opens, so a bad one never touches (or migrates) the database.
"""

from __future__ import annotations

import builtins
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from journey.errors import ConflictError
from journey.registry import audit, database, route_rules, routes, versions
from journey.registry.artifacts import ArtifactStore, staged_artifact
from journey.registry.database import HEAD_REVISION, MIGRATION_LOCK, create_registry_engine, registry_schema
from journey.registry.models import (
    AuditEntry,
    AuditKind,
    ModelVersion,
    Route,
    RouteAction,
    RouteRevision,
    RouteSnapshot,
    RouteVariant,
    VersionRef,
)
from journey.settings import Settings, get_settings

# One logger for the whole package: the registry's log lines keep the name they have always had.
log = logging.getLogger("journey.registry")


class Registry:
    """Model versions and their audit trail for one settings profile. Use as a context manager (or `close()`), so
    the engine's connections are released.

    Every operation first brings the database to the newest migration (once per instance; a no-op check after).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.schema = registry_schema(self.settings)
        self._engine = create_registry_engine(self.settings)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._artifacts = ArtifactStore(self.model_store_dir)
        self._migrated = False

    # ----------------------------------------------------------------------------------------------- lifecycle

    @property
    def location(self) -> str:
        """The database URL with the password masked, plus the schema where there is one (for messages)."""
        url = make_url(self.settings.registry_database_url).render_as_string(hide_password=True)
        return f"{url} (schema {self.schema})" if self.schema else url

    @property
    def model_store_dir(self) -> Path:
        """BentoML's model store under `bentoml_home` (the layout `BENTOML_HOME=... bentoml models list` reads)."""
        return self.settings.bentoml_home / "models"

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------- migrations

    def migrate(self) -> str:
        """Upgrade the database to the newest migration (creating the schema on PostgreSQL); return the revision.

        Idempotent and cheap when already at head: the version table is read first and Alembic runs only when it
        lags, so every process may call it on start-up.
        """
        with MIGRATION_LOCK, self._connect() as connection:
            current = database.current_revision(connection, self.schema)
            if current != HEAD_REVISION:
                database.upgrade(connection, current, self.schema, self.location)
        self._migrated = True
        return HEAD_REVISION

    def current_revision(self) -> str | None:
        """The revision the database is at (None: never migrated)."""
        with self._connect() as connection:
            return database.current_revision(connection, self.schema)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """One connection in one transaction (the migration runs inside it, atomically where DDL is transactional)."""
        try:
            with self._engine.begin() as connection:
                yield connection
        except OperationalError as exc:
            raise database.unavailable(exc, self.location) from None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A migrated session in one transaction: committed at the end of the block, rolled back if it raises."""
        if not self._migrated:
            self.migrate()
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise database.unavailable(exc, self.location) from None

    # ------------------------------------------------------------------------------------------------ versions

    def register(
        self,
        *,
        name: str,
        onnx_path: str | Path,
        expected_sha256: str,
        framework: str,
        feature_service: str,
        metrics: Mapping[str, Any],
        data_window: Mapping[str, Any],
        params: Mapping[str, Any],
        report_path: str | None = None,
        actor: str,
    ) -> ModelVersion:
        """Store an exported ONNX file as the next version of `name` (stage `staging`) and audit it.

        The file is copied first and the copy is hashed and loaded, so the bytes checked are exactly the bytes
        stored. A hash other than `expected_sha256` raises `TamperedArtifactError`, a file ONNX cannot load
        raises `InvalidInputError`; either way nothing is written. The row, the audit row and the BentoML model
        are committed together: if any of them fails, none remains.
        """
        name = versions.valid_name(name)
        fields = versions.registration_fields(
            framework=framework,
            feature_service=feature_service,
            actor=actor,
            metrics=metrics,
            data_window=data_window,
            params=params,
            report_path=report_path,
        )
        last: IntegrityError | None = None
        self._artifacts.model_store()  # import BentoML now, not while the transaction below holds the write lock
        with tempfile.TemporaryDirectory(prefix="journey-register-") as tmp:
            staged, sha256 = staged_artifact(Path(onnx_path), Path(tmp), expected_sha256)
            for attempt in range(1, versions.REGISTER_ATTEMPTS + 1):
                try:
                    return self._insert(name, sha256, staged, fields)
                except IntegrityError as exc:  # another process took this version number first
                    log.info("version number taken, retrying", extra={"model": name, "attempt": attempt})
                    last = exc
        raise ConflictError(
            f"could not allocate a version of model {name!r} after {versions.REGISTER_ATTEMPTS} attempts (concurrent "
            f"registrations at {self.location}): {last.orig if last else ''}"
        )

    def _insert(self, name: str, sha256: str, staged: Path, fields: dict[str, Any]) -> ModelVersion:
        """One registration attempt: the row and the BentoML model commit together, or the saved model goes."""
        stored_tag: str | None = None
        try:
            with self._session() as session:
                row = versions.add_version(session, name, sha256, fields)
                stored_tag = self._artifacts.save(row, staged)
                result = row.detached()
        except BaseException:
            if stored_tag is not None:
                self._artifacts.remove(stored_tag)
            raise
        log.info(
            "model version registered",
            extra={"model": name, "version": result.version, "sha256": sha256, "bento_tag": result.bento_tag},
        )
        return result

    def attach_report(
        self, name: str, version: VersionRef, report_path: str, *, actor: str | None = None
    ) -> ModelVersion:
        """Record where the evaluation report of a version was written (it is written after the version number is
        known, so after `register`)."""
        with self._session() as session:
            return versions.attach_report(session, name, version, report_path, actor, where=self.location)

    def promote(self, name: str, version: VersionRef, actor: str, *, note: str | None = None) -> ModelVersion:
        """Make `version` the production version of `name` and archive the one it replaces, in one transaction.

        Promoting an archived version is how a rollback is done; promoting the production version changes nothing.
        The stored artifact is re-hashed first: a version serving could not load (`TamperedArtifactError`,
        `NotFoundError`) is never promoted. `note` is appended to the promotion's audit detail (the caller's
        promotion gate, and the reason of a forced promotion).
        """
        with self._session() as session:
            return versions.promote(
                session, name, version, actor, where=self.location, artifacts=self._artifacts, note=note
            )

    def archive(self, name: str, version: VersionRef, actor: str) -> ModelVersion:
        """Retire a version. Archiving the production version leaves the name without one (allowed, warned)."""
        with self._session() as session:
            return versions.archive(session, name, version, actor, where=self.location)

    def get(self, name: str, version: VersionRef = "latest") -> ModelVersion:
        """One version: a number, `"latest"` (highest number, any stage) or `"production"`."""
        with self._session() as session:
            return versions.resolve(session, name, version, self.location).detached()

    def list(self, name: str | None = None, stage: str | None = None) -> builtins.list[ModelVersion]:
        """Versions ordered by name and number, optionally of one name and/or one stage."""
        query = versions.list_query(name, stage)
        with self._session() as session:
            return [row.detached() for row in session.scalars(query)]

    def audit(
        self,
        name: str | None = None,
        version: int | None = None,
        limit: int = 100,
        kind: AuditKind | str | None = AuditKind.MODEL,
    ) -> builtins.list[AuditEntry]:
        """The newest `limit` changes first, optionally of one name (and version).

        Model changes by default, as before routes existed; `kind="route"` gives route changes (name = endpoint,
        version = revision), `kind=None` both.
        """
        query = audit.query(name, version, limit, kind)
        with self._session() as session:
            return [row.detached() for row in session.scalars(query)]

    def artifact_path(self, mv: ModelVersion) -> Path:
        """The version's ONNX file in the BentoML store, after checking it still has the registered SHA-256.

        This is what serving loads. A file changed (or removed) in the store raises `TamperedArtifactError`; a
        model missing from the store altogether (usually another `JOURNEY_DATA_DIR`) raises `NotFoundError`.
        """
        return self._artifacts.verified_path(mv)

    # -------------------------------------------------------------------------------------------------- routes

    def change_token(self) -> int:
        """A number that grows with every change to the registry (registration, stage change, route change): the
        newest audit id. One indexed query, cheap enough for serving to poll every second."""
        with self._session() as session:
            return audit.change_token(session)

    def route(self, endpoint: str) -> Route:
        """The route of `endpoint`: the stored one, or the default (the production version takes all traffic)."""
        endpoint = route_rules.valid_endpoint(endpoint)
        with self._session() as session:
            return routes.current_route(session, endpoint)

    def route_snapshot(self) -> RouteSnapshot:
        """Every routed endpoint's route and the change token, for serving to load (and reload when the token of
        `change_token()` differs from the snapshot's)."""
        with self._session() as session:
            return routes.snapshot(session)

    def route_history(
        self, endpoint: str | None = None, *, limit: int | None = None, oldest_first: bool = False
    ) -> builtins.list[RouteRevision]:
        """Route revisions, newest first (or oldest first), of one endpoint or all."""
        query = routes.history_query(endpoint, limit, oldest_first)
        with self._session() as session:
            return [row.detached() for row in session.scalars(query)]

    def set_route(
        self,
        endpoint: str,
        variants: Sequence[RouteVariant],
        *,
        actor: str,
        experiment: str | None = None,
        salt: str | None = None,
        shadow_version: int | None = None,
    ) -> Route:
        """Replace the route of `endpoint`: the variants in this (fixed) order, their weights, an optional shadow.

        The experiment defaults to the current one (else `<endpoint>-<UTC time>`); the salt is kept while the
        experiment is unchanged, so users stay in their variants, and drawn afresh for a new experiment (an
        independent split). Setting the route it already has changes nothing.
        """
        build = routes.set_build(variants, experiment=experiment, salt=salt, shadow_version=shadow_version)
        return self._change_route(endpoint, RouteAction.SET, actor, build)

    def deploy(
        self,
        endpoint: str,
        version: VersionRef,
        weight: float,
        *,
        actor: str,
        model: str | None = None,
        variant: str | None = None,
        experiment: str | None = None,
        salt: str | None = None,
        note: str | None = None,
    ) -> Route:
        """Give `version` `weight` percent (0..100) of the endpoint's users; the other variants share the rest in
        their current proportions. `note` is appended to the change's audit detail (the caller's promotion gate,
        and the reason of a forced deployment).

        An endpoint without a route first gets its default made explicit (variant `production`, pinned to today's
        production version). The variant is `variant`, else the one already serving `version`, else `v<version>`;
        a new variant goes last in the fixed order. Deploying the shadow version makes it a live variant (the
        shadow is removed). In the router, only users moving into (or, for a lower weight, out of) this variant
        change variant: exactly the change of its share.
        """
        build = routes.deploy_build(
            endpoint,
            version,
            weight,
            model=model,
            variant=variant,
            experiment=experiment,
            salt=salt,
            where=self.location,
        )
        return self._change_route(endpoint, RouteAction.DEPLOY, actor, _noted(build, note))

    def set_shadow(
        self,
        endpoint: str,
        version: VersionRef | None,
        *,
        actor: str,
        model: str | None = None,
        experiment: str | None = None,
    ) -> Route:
        """Score `version` beside the live variants on every request of the endpoint (logged, never returned);
        None removes the shadow. An endpoint without a route gets its default made explicit first."""
        build = routes.shadow_build(endpoint, version, model=model, experiment=experiment, where=self.location)
        return self._change_route(endpoint, RouteAction.SHADOW, actor, build)

    def clear_route(self, endpoint: str, *, actor: str) -> Route:
        """Remove the endpoint's route: its production version answers everything again (variant `production`)."""
        return self._change_route(endpoint, RouteAction.CLEAR, actor, routes.cleared)

    def rollback_route(self, endpoint: str, *, actor: str) -> Route:
        """Restore the route the newest change replaced (experiment and salt included, so users go back to the
        variants they had). Rolling back again goes one step further back; past the first route, the default.

        Versions archived since are restored as they were (a rollback must not be blocked in an emergency), with
        a warning in the log and the audit detail. Raises `NotFoundError` when there is nothing to roll back to.
        """
        return self._change_route(endpoint, RouteAction.ROLLBACK, actor, None)

    def _change_route(self, endpoint: str, action: RouteAction, actor: str, build: routes.Build | None) -> Route:
        """One route change in one transaction (`routes.change_route`), logged once it committed."""
        endpoint = route_rules.valid_endpoint(endpoint)
        actor = versions.non_empty(actor, "actor")
        with self._session() as session:
            change = routes.change_route(
                session,
                endpoint,
                action,
                actor,
                build,
                schema=self.schema,
                where=self.location,
                artifacts=self._artifacts,
            )
        if change.revision is not None:
            extra = {"endpoint": endpoint, "action": action.value, "revision": change.revision, "detail": change.detail}
            log.info("route changed", extra=extra)
        return change.route


def _noted(build: routes.Build, note: str | None) -> routes.Build:
    """`build` with `note` appended to its audit detail (unchanged without a note)."""
    if not note:
        return build

    def with_note(session: Session, current: Route) -> tuple[Route | None, str]:
        target, detail = build(session, current)
        return target, f"{detail}; {note}"

    return with_note
