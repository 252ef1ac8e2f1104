"""One async database per component: engine, sessions, and the request's unit of work."""

from __future__ import annotations

import copy
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Request
from sqlalchemy import Table, bindparam, event, insert, inspect, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapper, configure_mappers
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

# Set on a session when it staged something for after the commit (e.g. outbox rows).
AFTER_COMMIT = "nrm.after_commit"
# Set on a session when something done outside it must be undone if it rolls back.
AFTER_ROLLBACK = "nrm.after_rollback"
Row = TypeVar("Row", bound=SQLModel)


class Database:
    def __init__(self, url: str, *, upkeep: bool = False) -> None:
        self.url = url
        self.engine: AsyncEngine = _create_engine(url, upkeep=upkeep)
        # Copied into every new session's `info`: lets the outbox find its relay to wake.
        self.session_info: dict[str, Any] = {}
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False, info=self.session_info
        )

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def session(self) -> AsyncSession:
        return self._sessions()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends, rolls back if it raises."""
        session = self._sessions()
        try:
            yield session
            await session.commit()
        except BaseException:
            try:
                async with session:  # closed in a task shielded from cancellation, as ever
                    await session.rollback()
            finally:
                await _run_after_rollback(session)
            raise
        if session.sync_session.in_transaction():  # something began again after the commit
            async with session:  # closed as on failure, shielded from cancellation
                pass
        else:
            # Committed, the connection back in the pool: closing only lets go of the
            # objects, no I/O, so in place (`async with` spawns a task for it, ~0.1 ms).
            session.sync_session.close()
        _run_after_commit(session)

    def for_upkeep(self) -> Database:
        """The same database for background upkeep (the outbox relay, the retention
        sweeper), through a small pool of its own.

        Its connections are not pinged at checkout (three round trips with asyncpg, on
        every relay pass): a pass that meets a dead connection fails, is logged and runs
        again, and SQLAlchemy replaces the pool's connections. Nothing else shares it.
        """
        return Database(self.url, upkeep=True)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:  # any failure means "not ready"; the probe says so, nothing else
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once this session's transaction commits; dropped on rollback."""
    callbacks: list[Callable[[], None]] = session.info.setdefault(AFTER_COMMIT, [])
    if callback not in callbacks:
        callbacks.append(callback)


def _run_after_commit(session: AsyncSession) -> None:
    for callback in session.info.pop(AFTER_COMMIT, []):
        callback()


def after_rollback(session: AsyncSession, callback: Callable[[], Awaitable[None]]) -> None:
    """Await `callback` if this session's unit of work (`Database.transaction`) fails and
    is rolled back, e.g. to undo something done outside it; dropped on a commit."""
    callbacks: list[Callable[[], Awaitable[None]]] = session.info.setdefault(AFTER_ROLLBACK, [])
    callbacks.append(callback)


async def _run_after_rollback(session: AsyncSession) -> None:
    for callback in session.info.pop(AFTER_ROLLBACK, []):
        await callback()


def new_row(model: type[Row], **values: Any) -> Row:
    """A new, transient table object: what `model(**values)` makes, for a twentieth of the
    cost.

    SQLModel's constructor sets each field through two layers of attribute hooks and
    inspects each default factory's signature on every call; on the registration path
    that was a tenth of the request. This builds the object as SQLAlchemy builds one it
    loads (its own constructor, then the values straight into the instance's dictionary),
    with the model's defaults for what is not given. As with `model(...)`, nothing is
    validated: table models are built from values the caller has already checked.
    """
    fields = _fields_of(model)
    given = set(values)
    if missing := fields.required - given:
        raise TypeError(f"{model.__name__} needs {', '.join(sorted(missing))}")
    if unknown := given - fields.known:
        raise TypeError(f"{model.__name__} has no {', '.join(sorted(unknown))}")
    for name, default in fields.defaults:
        if name not in given:
            values[name] = default
    for name, default in fields.mutable_defaults:
        if name not in given:
            values[name] = copy.deepcopy(default)
    for name, factory in fields.factories:
        if name not in given:
            values[name] = factory()
    instance: Row = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    instance.__dict__.update(values)
    object.__setattr__(instance, "__pydantic_fields_set__", given)
    return instance


@dataclass(frozen=True)
class _Fields:
    known: frozenset[str]
    required: frozenset[str]
    defaults: tuple[tuple[str, Any], ...]  # immutable: shared by every row
    mutable_defaults: tuple[tuple[str, Any], ...]  # copied for each row, as pydantic does
    factories: tuple[tuple[str, Callable[[], Any]], ...]


@functools.cache
def _fields_of(model: type[SQLModel]) -> _Fields:
    # What a first constructor call would do: set up the mappers' attribute machinery.
    configure_mappers()
    required, defaults, mutable_defaults, factories = set(), [], [], []
    for name, field in model.model_fields.items():
        if field.default_factory is not None:
            if field.default_factory_takes_validated_data:
                raise TypeError(f"{model.__name__}.{name}: a factory of validated data")
            factories.append((name, cast(Callable[[], Any], field.default_factory)))
        elif field.is_required():
            required.add(name)
        elif isinstance(field.default, _IMMUTABLE):
            defaults.append((name, field.default))
        else:
            mutable_defaults.append((name, field.default))
    return _Fields(
        frozenset(model.model_fields),
        frozenset(required),
        tuple(defaults),
        tuple(mutable_defaults),
        tuple(factories),
    )


_IMMUTABLE = (type(None), bool, int, float, str, bytes)


async def write_new(session: AsyncSession) -> None:
    """Insert the rows added to `session` so far: on PostgreSQL in one statement.

    A flush sends one INSERT per new row, and through async SQLAlchemy each costs a round
    trip and ~0.5 ms of CPU; registering a case stages four rows (case, consent,
    access-log entry, outbox event). On PostgreSQL they go as one INSERT carrying the
    others as data-modifying WITH clauses: one statement, its constraints checked at its
    end, all or nothing as before. Either way the rows are then persistent in the
    session, as after a flush: a later change is saved as an UPDATE.

    It is a plain flush elsewhere, and wherever a flush would do more than insert the
    values the rows hold: pending changes or deletions (a flush orders them with the
    inserts), relationships or inheritance, a column left empty for its default to fill.
    """
    new = list(session.new)
    states = [inspect(instance) for instance in new]
    mappers = tuple(state.mapper for state in states)
    # What getattr would find, without the attribute machinery.
    rows = [vars(instance) for instance in new]
    defaults_wanted = any(
        row.get(key) is None
        for mapper, row in zip(mappers, rows, strict=True)
        for key in _defaulted(mapper)
    )
    postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
    plain = any(mapper.relationships or mapper.inherits is not None for mapper in mappers)
    if not (new and postgres) or plain or defaults_wanted or session.dirty or session.deleted:
        await session.flush()
        return
    connection = await session.connection()
    together = _insert_together(mappers, connection.dialect)
    await connection.exec_driver_sql(together.sql, together.arguments(rows))
    # What a flush does once its INSERTs succeed (SQLAlchemy's own step, private but
    # pinned with it): keyed by id, no pending change, in the identity map, and known to
    # the transaction as new, so a rollback makes them transient again.
    session.sync_session._register_persistent(set(states))


@functools.cache
def _defaulted(mapper: Mapper[Any]) -> tuple[str, ...]:
    """The attributes whose column has a default to fill an empty value."""
    return tuple(
        prop.key
        for prop in mapper.column_attrs
        if prop.columns[0].default is not None or prop.columns[0].server_default is not None
    )


@dataclass(frozen=True)
class _Together:
    """One INSERT for rows of given mappers, rendered for a dialect: the SQL, and for each
    placeholder in order the row and attribute its value comes from and the conversion
    SQLAlchemy would apply to it."""

    sql: str
    sources: tuple[tuple[int, str], ...]
    conversions: tuple[Callable[[Any], Any] | None, ...]

    def arguments(self, rows: list[dict[str, Any]]) -> tuple[Any, ...]:
        return tuple(
            rows[n].get(key) if convert is None else convert(rows[n].get(key))
            for (n, key), convert in zip(self.sources, self.conversions, strict=True)
        )


@functools.lru_cache(maxsize=64)
def _insert_together(mappers: tuple[Mapper[Any], ...], dialect: Dialect) -> _Together:
    """Compiled once per shape and sent as driver SQL: run as a Core statement, the same
    INSERT cost half a millisecond more, all in SQLAlchemy's per-execution work."""
    sources: dict[str, tuple[int, str]] = {}
    types: dict[str, Any] = {}
    inserts = []
    for n, mapper in enumerate(mappers):
        row = {}
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            name = f"r{n}_{prop.key}"
            sources[name], types[name] = (n, prop.key), column.type
            row[column.key] = bindparam(name, type_=column.type)
        inserts.append(insert(cast(Table, mapper.local_table)).values(row))
    *first, last = inserts
    statement = last.add_cte(*(part.cte(f"new_{n}") for n, part in enumerate(first)))
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    return _Together(
        str(compiled),
        tuple(sources[name] for name in names),
        tuple(types[name].dialect_impl(dialect).bind_processor(dialect) for name in names),
    )


async def commit_without_waiting_for_disk(connection: AsyncConnection) -> None:
    """Let this transaction's commit return before its changes reach the disk (PostgreSQL).

    Only for changes whose loss in a crash is harmless, such as marking outbox rows
    published (lost, the events go again and consumers drop them as duplicates): the
    commit then neither waits for a WAL flush nor queues behind others' flushes. A crash
    loses at most the last fraction of a second of such commits, never the database's
    consistency; no other transaction is affected. SET LOCAL, not a connection setting:
    it also works through a transaction-pooling proxy such as PgBouncer.
    """
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SET LOCAL synchronous_commit TO OFF"))


def _create_engine(url: str, *, upkeep: bool = False) -> AsyncEngine:
    # hide_parameters: a database error's message would otherwise quote the values it was
    # given, and it ends up in logs, traces and dead-letter reasons.
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if upkeep:  # see Database.for_upkeep
            return create_async_engine(url, pool_size=2, max_overflow=2, hide_parameters=True)
        return create_async_engine(url, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the relay read while a request writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.db
    async with database.transaction() as session:
        yield session


# Function scope: the commit happens after the route returns and before the response is
# sent, so a client never sees success for a transaction that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(_request_session, scope="function")]
