"""Composition root: settings -> engine, vault, services, DBOS. Everything else asks ``get_hub()``."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from wedsync.config import Settings, get_settings
from wedsync.services.connections import ConnectionService
from wedsync.services.oauth import OAuthService
from wedsync.services.subscriptions import SubscriptionService
from wedsync.services.sync_engine import SyncService
from wedsync.services.tenancy import TenancyService
from wedsync.store.db import COMMAND_CHECKPOINT_WAIT, Database, checkpoint_sqlite, make_dbos_sqlite_engine
from wedsync.store.vault import KeyFile, KeyRing, Vault


def load_vault(settings: Settings) -> Vault:
    """The vault on ``WEDSYNC_VAULT_KEYS`` (fixed for the process's life), else on ``WEDSYNC_HOME/vault.keys``,
    which it follows while it runs (``wedsync vault rotate`` in another process needs no restart)."""
    from wedsync.errors import VaultError

    if settings.vault_keys:
        try:
            return Vault(KeyRing.decode(settings.vault_keys))
        except VaultError as exc:  # say which keys: an operator has two places to look
            raise VaultError(f"WEDSYNC_VAULT_KEYS: {exc.message}") from exc
    key_file = KeyFile(settings.resolved_home / "vault.keys")
    try:
        return Vault(key_file.load_or_create(), key_file=key_file)
    except VaultError as exc:
        raise VaultError(f"{key_file.path}: {exc.message}") from exc


# Capability services, one module each, built lazily by ``Hub.__getattr__`` (name -> "module:Class").
CAPABILITY_SERVICES: dict[str, str] = {
    "crm": "wedsync.services.crm_sync:CrmService",
    "crm_writeback": "wedsync.services.crm_writeback:CrmWriteback",
    "crm_inquiries": "wedsync.services.crm_inquiries:InquiryService",
    "payments": "wedsync.services.payments:PaymentService",
    "calendar": "wedsync.services.calendar:CalendarService",
}


class Hub:
    """The wired application: one per process."""

    def __init__(self, settings: Settings, *, migrate: bool = True) -> None:
        self.settings = settings
        settings.resolved_home.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.db_url)
        if migrate:
            self.db.migrate()
        self.vault = load_vault(settings)
        self.tenancy = TenancyService(self.db, operator_key=settings.operator_key)
        self.connections = ConnectionService(self.db, self.vault,
                                             allow_private_urls=settings.allow_private_urls,
                                             http_timeout=settings.http_timeout)
        self.sync = SyncService(self.db, self.connections,
                                default_interval_minutes=settings.sync_interval_minutes)
        self.subscriptions = SubscriptionService(self.db, self.connections, settings.public_url)
        self.oauth = OAuthService(self.db, self.vault, self.connections, settings)
        self._inbox: Any = None
        self._capabilities: dict[str, Any] = {}

    @property
    def inbox(self) -> Any:
        if self._inbox is None:
            from wedsync.services.webhook_inbox import WebhookInbox

            self._inbox = WebhookInbox(self.db, batch_max=self.settings.webhook_batch_max,
                                       batch_wait_ms=self.settings.webhook_batch_wait_ms)
        return self._inbox

    def __getattr__(self, name: str) -> Any:
        """The capability services (``hub.crm``, ``hub.payments``, ``hub.calendar``), built on first use
        from ``CAPABILITY_SERVICES``: each is a class taking the hub, with an optional async ``aclose``."""
        target = CAPABILITY_SERVICES.get(name)
        if target is None or name.startswith("_"):
            raise AttributeError(name)
        services = self.__dict__.setdefault("_capabilities", {})
        if name not in services:
            module, _, cls = target.partition(":")
            services[name] = getattr(importlib.import_module(module), cls)(self)
        return services[name]

    async def aclose(self) -> None:
        if self._inbox is not None:
            await self._inbox.stop()
        for service in list(self._capabilities.values()):
            closer = getattr(service, "aclose", None)
            if closer is not None:
                await closer()
        await self.connections.aclose()

    def close(self) -> None:
        self.db.dispose()


_hub: Hub | None = None
_lock = threading.Lock()


def get_hub() -> Hub:
    global _hub
    if _hub is None:
        with _lock:
            if _hub is None:
                _hub = Hub(get_settings())
    return _hub


def installed_hub() -> Hub | None:
    """The process's hub if one is installed, without building one: scheduled workflows use this so a
    schedule firing in a process that has no hub (or is between tests) does nothing instead of creating one
    from the environment."""
    return _hub


def checkpoint_installed_hub(wait_seconds: float = 1.0) -> None:
    """A clean shutdown (``wedsync`` commands, ``serve``, ``worker``, ``demo``): the hub's SQLite log goes into
    its database file (see ``store.db.checkpoint_sqlite``); nothing on PostgreSQL or when no hub was built."""
    if _hub is not None:
        _hub.db.checkpoint(wait_seconds)


def set_hub(hub: Hub | None) -> None:
    """Install (or clear) the process's hub; tests and the CLI use this. Under the same lock as
    :func:`get_hub`'s lazy build: a hub installed while another thread is building one (a workflow step calling
    ``get_hub()`` while none was installed) is the one that stays, not the slower build's."""
    global _hub
    with _lock:
        _hub = hub


# -- DBOS ------------------------------------------------------------------------------------------
_dbos_launched = False
_dbos_sqlite_url: str | None = None
_command_executor: str | None = None  # set while a command_dbos block runs
_command_pending: int | None = 0  # its pending workflows when DBOS stopped (None: unknown)


def default_executor_id(settings: Settings | None = None) -> str:
    """The embedded default (SQLite, one long-lived process: ``serve``, ``worker`` or ``demo``) keeps one stable
    id, so a restart resumes its own workflows at once; every other process gets its own (processes sharing
    PostgreSQL, and each API process of ``serve --workers N`` on SQLite, which used to share ``local``: each one's
    start-up recovery and inbox release took its siblings' work), and they recover each other via heartbeats."""
    if settings is not None and settings.is_sqlite and settings.serve_processes == 1:
        return "local"
    return f"{socket.gethostname()}-{os.getpid()}"


def command_executor_id() -> str:
    """The executor id of a short-lived command (``wedsync sync``, ``wedsync crm import``): its own, so that
    DBOS's start-up recovery of "this executor's" pending workflows finds none of anyone else's."""
    return f"cli-{socket.gethostname()}-{os.getpid()}"


def dbos_config(settings: Settings, executor_id: str | None = None) -> dict[str, Any]:
    url = settings.dbos_url
    if url.startswith("postgresql+psycopg://"):
        url = "postgresql://" + url[len("postgresql+psycopg://"):]
    cfg: dict[str, Any] = {
        "name": "wedsync",
        "system_database_url": url,
        "log_level": os.environ.get("WEDSYNC_DBOS_LOG_LEVEL", "WARNING"),
        "executor_id": executor_id or settings.executor_id or default_executor_id(settings),
        "application_version": "wedsync-1",
        "notification_listener_polling_interval_sec": 1.0,
    }
    return cfg


def current_executor_id() -> str:
    from dbos._utils import GlobalParams

    return str(GlobalParams.executor_id)


def launch_dbos(settings: Settings, *, executor_id: str | None = None, listen: bool = True,
                own_work_only: bool = False) -> None:
    """Configure and launch DBOS once per process; register the hub's queues.

    ``own_work_only`` (short-lived commands, see :func:`command_dbos`): dequeue nothing at all, not even from
    DBOS's internal queue (scheduled workflows, recovered workflows that were started without a queue): the
    process runs only the workflows it starts itself."""
    global _dbos_launched
    if _dbos_launched:
        return
    from dbos import DBOS

    import wedsync.workflows.sync  # noqa: F401 - registers workflows
    from wedsync.workflows import queues

    workflow_modules = import_workflow_modules()  # every process (API or worker) knows every workflow

    settings.resolved_home.mkdir(parents=True, exist_ok=True)
    cfg = dbos_config(settings, executor_id)
    if cfg["system_database_url"].startswith("sqlite"):
        # DBOS's own SQLite engine uses a rollback journal: every step result costs a full fsync'd
        # commit. WAL with synchronous=NORMAL survives a process crash (kill -9) the same way and cut
        # the per-step overhead from 2.7 ms to 1.7 ms (measured: 1,000 steps of one workflow).
        cfg["system_database_engine"] = make_dbos_sqlite_engine(cfg["system_database_url"])
    global _dbos_sqlite_url
    _dbos_sqlite_url = cfg["system_database_url"] if cfg["system_database_url"].startswith("sqlite") else None
    dbos = DBOS(config=cfg)  # type: ignore[arg-type]
    if not listen or own_work_only:
        DBOS.listen_queues([])
    if own_work_only:
        from dbos._utils import INTERNAL_QUEUE_NAME

        # DBOS always polls its internal queue; with no room for this process it claims nothing there.
        dbos._registry._register_internal_queue(INTERNAL_QUEUE_NAME, worker_concurrency=0)
    DBOS.launch()
    queues.register_all()
    for module in workflow_modules:  # e.g. schedules, which DBOS creates only once launched
        hook = getattr(module, "after_launch", None)
        if callable(hook):
            hook()
    _dbos_launched = True
    freeze_startup_heap()


def import_workflow_modules() -> list[Any]:
    """Import every module of ``wedsync.workflows`` (a capability's workflows must be registered with DBOS
    before launch, in workers too); a module may define ``after_launch()``, called once DBOS runs."""
    import pkgutil

    import wedsync.workflows as package

    return [importlib.import_module(f"{package.__name__}.{m.name}")
            for m in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name)
            if not m.name.startswith("_")]


#: The cyclic garbage collector's thresholds in a hub process (Python's own: 700, 10, 10). A sync page's records,
#: values and features live for the whole page, tens of thousands of allocations: with a young generation of 700
#: objects, collections ran every few records, found the page's objects alive, and moved them up the generations
#: until full collections ran too. Collecting cycles every 50,000 allocations cut the collector's time in a
#: 30,000-contact sync from 1.5-4.3 s to 0.1-0.5 s (docs/benchmarks.md); a pause stays a few milliseconds.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Set :data:`GC_THRESHOLDS` (a hub process's, at start-up)."""
    gc.set_threshold(*GC_THRESHOLDS)


def freeze_startup_heap() -> None:
    """Move everything built at start-up (modules, the app, DBOS, SQLAlchemy's caches), which lives as long
    as the process, out of the cyclic garbage collector, and collect young objects less often
    (:func:`tune_gc`). Full collections then stay short under load: measured on the webhook intake, p99 went
    from 65-79 ms to 15-19 ms and throughput from 1,600 to 2,100 requests/s (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    tune_gc()


def shutdown_dbos(checkpoint_wait: float = 1.0) -> None:
    global _dbos_launched, _command_pending
    if not _dbos_launched:
        return
    from dbos import DBOS

    if _command_executor is not None:  # last chance to ask DBOS what the command leaves pending
        _command_pending = own_pending_workflows(_command_executor)

    DBOS.destroy(destroy_registry=False)
    _dbos_launched = False
    if _dbos_sqlite_url is not None:
        # DBOS's system database: its log too, not only the hub's
        checkpoint_sqlite(_dbos_sqlite_url, wait_seconds=checkpoint_wait)
    from dbos._dbos import _get_or_create_dbos_registry
    from dbos._utils import INTERNAL_QUEUE_NAME

    # the registry outlives DBOS: a command's closed internal queue must not carry over to a later launch
    _get_or_create_dbos_registry().internal_queue_map.pop(INTERNAL_QUEUE_NAME, None)


@contextmanager
def command_dbos(settings: Settings, db: Database) -> Iterator[str]:
    """DBOS for a short-lived command (``wedsync sync``, ``wedsync crm import``), which runs the one workflow it
    starts, in its own process, and nothing else: its own executor id (:func:`command_executor_id`; with the
    shared ``local`` id, DBOS's start-up recovery re-ran the workflows a live ``serve`` on the same home was
    running), no queue (not the ``sync`` or ``inbox`` queues of the serving processes, not DBOS's internal one),
    and no recovery of anyone's workflows (``serve`` and ``worker`` do that).

    The command beats in ``worker_heartbeats`` like a worker while it runs. Killed (``kill -9``, a crash), its
    heartbeat goes silent and a live ``serve``/``worker`` recovers its pending workflow 10 s later (or at its start
    if none was running), as for a dead worker. Ending cleanly with nothing pending, it removes its heartbeat."""
    from wedsync.workflows.recovery import HEARTBEAT_EVERY, beat, forget_heartbeat

    eid = command_executor_id()
    beat(db, eid)  # before its first workflow exists: a kill from now on is seen
    stop = threading.Event()

    def beating() -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            try:
                beat(db, eid)
            except Exception:  # a busy store: the next beat tries again
                logging.getLogger("wedsync.workers").warning("heartbeat of %s failed", eid, exc_info=True)

    beater = threading.Thread(target=beating, name="command-heartbeat", daemon=True)
    beater.start()
    global _command_executor, _command_pending
    _command_executor, _command_pending = eid, 0
    try:
        launch_dbos(settings, executor_id=eid, own_work_only=True)
        yield eid
    finally:
        shutdown_dbos(COMMAND_CHECKPOINT_WAIT)  # (or already done: a Ctrl-C cancels the workflow, then stops DBOS)
        pending, _command_executor = _command_pending, None
        stop.set()
        beater.join()
        if pending == 0:
            forget_heartbeat(db, eid)


def own_pending_workflows(executor_id: str) -> int | None:
    """How many workflows of ``executor_id`` are still pending, or ``None`` when DBOS is not running here (then
    no one can say: the heartbeat stays, and a live worker's recovery finds out)."""
    if not _dbos_launched:
        return None
    from dbos import DBOS

    try:
        return len(DBOS.list_workflows(status="PENDING", executor_id=executor_id, load_input=False,
                                       load_output=False))
    except Exception:
        return None
