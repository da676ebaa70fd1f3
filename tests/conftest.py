"""Shared fixtures: a hub per test on SQLite (and PostgreSQL when WEDSYNC_TEST_POSTGRES_URL is set),
the provider sandboxes over real loopback HTTP, and one DBOS runtime per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

# before any model is built: an undeclared response key fails a test (production answers it; api/schemas.py)
os.environ.setdefault("WEDSYNC_STRICT_RESPONSES", "1")

from wedsync.bootstrap import Hub, set_hub
from wedsync.config import Settings, get_settings, normalize_db_url

PG_ENV = "WEDSYNC_TEST_POSTGRES_URL"
ROOT = Path(__file__).resolve().parent.parent
SPECS = Path(os.environ.get("WEDSYNC_SPECS_DIR") or ROOT.parent / "shared" / "specs")
SPECS_MISSING = f"provider specifications not found at {SPECS}: the contract tests were NOT collected"


def pytest_report_header() -> str | None:
    return None if SPECS.is_dir() else SPECS_MISSING


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not SPECS.is_dir():
        terminalreporter.write_line(SPECS_MISSING, yellow=True, bold=True)

E2E = ROOT / "tests" / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist workers (``make test``), the end-to-end tests are spread evenly through the run instead of
    following one another: a worker is handed a stretch of the run, and the one given tests/e2e (18 tests, nearly
    half of the suite's time) was still running them alone after the others had finished.
    They go in between modules, so no module's own fixtures are set up twice. One process keeps the usual order.
    """
    if not hasattr(config, "workerinput"):
        return
    e2e = [item for item in items if E2E in item.path.parents]
    blocks: list[list[pytest.Item]] = []
    for item in items:
        if E2E in item.path.parents:
            continue
        if blocks and blocks[-1][0].path == item.path:
            blocks[-1].append(item)
        else:
            blocks.append([item])
    if not e2e or not blocks:
        return
    after: dict[int, list[pytest.Item]] = {}
    for k, item in enumerate(e2e):
        after.setdefault(int((k + 0.5) * len(blocks) / len(e2e)), []).append(item)
    items[:] = [item for i, block in enumerate(blocks) for item in [*block, *after.get(i, [])]]


os.environ.setdefault("WEDSYNC_ALLOW_PRIVATE_URLS", "true")
os.environ.setdefault("WEDSYNC_DBOS_LOG_LEVEL", "ERROR")
# Nothing a test does may land in the checkout's ./.wedsync (a hub built from the environment, e.g. by a
# workflow step running after its test's hub was removed, goes to a throwaway directory instead).
os.environ.setdefault("WEDSYNC_HOME", tempfile.mkdtemp(prefix="wedsync-tests-"))


def pg_base_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def require_pg() -> str:
    url = pg_base_url()
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests skipped (.ci/run sets it)")
    return url


class PgDatabase:
    """A throwaway PostgreSQL database on the test server: empty, or a copy of ``template``."""

    def __init__(self, base: str, template: str | None = None) -> None:
        self.name = f"wedsync_t_{uuid.uuid4().hex[:12]}"
        self.admin = create_engine(normalize_db_url(base), isolation_level="AUTOCOMMIT")
        copy = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.name}"{copy}'))
        head, _, _ = normalize_db_url(base).rpartition("/")
        self.url = f"{head}/{self.name}"

    def drop(self) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


# The hub fixtures start from a schema migrated once per session and copied: the migrations take 0.4 to 1 s a
# hub on this hardware (Alembic, 17 revisions), a copy a few milliseconds (SQLite) or about 0.1 s (PostgreSQL's
# CREATE DATABASE ... TEMPLATE). The copies are the migrations' own output; tests/integration/test_migrations.py
# runs the migrations themselves, up and down, on both databases.
_TEMPLATES: dict[str, Any] = {}


def _sqlite_template() -> Path:
    if "sqlite" not in _TEMPLATES:
        home = Path(tempfile.mkdtemp(prefix="wedsync-template-"))
        Hub(make_settings(home)).close()  # the last connection's close checkpoints the write-ahead log
        _TEMPLATES["sqlite"] = home / "wedsync.sqlite"
    path: Path = _TEMPLATES["sqlite"]
    return path


def _pg_template(base: str) -> str:
    if "postgresql" not in _TEMPLATES:
        db = PgDatabase(base)
        Hub(make_settings(Path(tempfile.mkdtemp(prefix="wedsync-template-")), database_url=db.url)).close()
        _TEMPLATES["postgresql"] = db
    name: str = _TEMPLATES["postgresql"].name
    return name


def migrated_hub(home: Path, database_url: str | None = None, **overrides: Any) -> Hub:
    """A hub whose database (SQLite under ``home``, or ``database_url``) already holds the migrated schema."""
    if database_url is None:
        home.mkdir(parents=True, exist_ok=True)
        template = _sqlite_template()
        for suffix in ("", "-wal"):  # a WAL left behind (it should not be) is part of the database
            if Path(f"{template}{suffix}").exists():
                shutil.copyfile(f"{template}{suffix}", home / f"wedsync.sqlite{suffix}")
        return Hub(make_settings(home, **overrides), migrate=False)
    return Hub(make_settings(home, database_url=database_url, **overrides), migrate=False)


@pytest.fixture(scope="session", autouse=True)
def _drop_templates() -> Iterator[None]:
    yield
    pg = _TEMPLATES.pop("postgresql", None)
    if pg is not None:
        pg.drop()


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    db = PgDatabase(require_pg())
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture(autouse=True)
def _restore_installed_hub() -> Iterator[None]:
    """Whatever hub a test installs or removes (``set_hub``), the one installed before it comes back: the
    session's DBOS runtime keeps running workflows with the session hub (``dbos_hub``) between tests."""
    from wedsync import bootstrap

    before = bootstrap.installed_hub()
    yield
    bootstrap.set_hub(before)


def make_settings(home: Path, **overrides: Any) -> Settings:
    return Settings(home=home, allow_private_urls=True, **overrides)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Hub]:
    """A fresh hub on SQLite, and again on PostgreSQL when available."""
    pg: PgDatabase | None = None
    if request.param == "postgresql":
        base = require_pg()
        pg = PgDatabase(base, template=_pg_template(base))
    hub = migrated_hub(tmp_path, pg.url if pg else None)
    try:
        yield hub
    finally:
        hub.close()
        if pg:
            pg.drop()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """A fresh hub on SQLite in a temporary WEDSYNC_HOME."""
    h = migrated_hub(tmp_path)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    """A small sandbox (5 contacts, 2 jobs) per test module; a module that needs another one (a private one per
    test, seeded differently) defines its own ``sandbox``."""
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0, contacts=5, jobs=2)
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """The provider sandboxes on a real loopback port for the whole session."""
    from wedsync.sandbox.server import start_sandbox_in_thread

    url, stop = start_sandbox_in_thread(port=0)
    try:
        yield url
    finally:
        stop()


@pytest.fixture(scope="session")
def dbos_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The process-wide hub with DBOS launched (SQLite system database), shared by workflow tests."""
    from wedsync.bootstrap import launch_dbos, shutdown_dbos

    home = tmp_path_factory.mktemp("dbos-home")
    hub = migrated_hub(home, executor_id="pytest")
    settings = hub.settings
    set_hub(hub)
    launch_dbos(settings, executor_id="pytest")
    try:
        yield hub
    finally:
        shutdown_dbos()
        set_hub(None)
        hub.close()


@pytest.fixture(autouse=True)
def _fresh_settings_cache() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
async def api(hub: Hub) -> Any:
    """An httpx client on the API app in-process (no DBOS), with the webhook inbox running."""
    import httpx

    from wedsync.api.app import create_app

    set_hub(hub)
    app = create_app(launch_workflows=False)
    hub.inbox.start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        yield client
    await hub.aclose()
    set_hub(None)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
