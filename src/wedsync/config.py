"""Typed settings: the only module that reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Hub settings, read from ``WEDSYNC_*`` environment variables.

    Defaults are the embedded ones: SQLite under ``WEDSYNC_HOME`` and in-process workers.
    """

    model_config = SettingsConfigDict(env_prefix="WEDSYNC_", extra="ignore")

    home: Path = Field(default=Path("./.wedsync"), description="data directory")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite under home if unset")
    system_database_url: str | None = Field(
        default=None, description="DBOS system database; follows database_url if unset"
    )
    vault_keys: str | None = Field(
        default=None, description="comma-separated base64 AES-256 keys, primary first; else home/vault.keys"
    )
    operator_key: str | None = Field(default=None, description="platform operator API key (optional)")
    public_url: str = Field(default="http://127.0.0.1:8000", description="where providers reach our webhooks")
    executor_id: str | None = Field(default=None, description="DBOS executor id of this process")
    serve_processes: int = Field(
        default=1, ge=1, description="API processes of `wedsync serve` (it sets this for them: on SQLite one process "
                                     "takes the stable executor id `local`, several take one each)")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    log_json: bool = False
    in_process_workers: bool = Field(default=True, description="run DBOS queues inside the API process")
    http_timeout: float = 30.0
    sync_interval_minutes: int = Field(
        default=60, ge=0, le=43_200,
        description="how often a pullable connection is synced incrementally on its own, after its first run "
                    "(a connection's own sync_interval_minutes overrides it); 0: only when asked")
    webhook_batch_max: int = 256
    webhook_batch_wait_ms: float = 2.0
    allow_private_urls: bool = Field(
        default=False, description="let connections and feeds target loopback/private addresses"
    )
    paypal_cert_url_prefixes: str = Field(
        default="",
        description=(
            "comma-separated URL prefixes (scheme://host[:port]/path/) from which PayPal webhook certificates "
            "are also fetched, besides PayPal's own domains: the sandbox's, e.g. "
            "http://127.0.0.1:8765/paypal/v1/notifications/certs/; honoured only with allow_private_urls"
        ),
    )
    oauth_clients: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        repr=False,
        description=(
            "the platform's OAuth 2 app per provider slug, as JSON: {slug: {client_id, client_secret, "
            "[base_url], [authorize_url], [token_url], [api_base_url]}}; base_url replaces the origin of the "
            "provider's authorize and token URLs (sandboxes)"
        ),
    )

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("database_url", "system_database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        # An unsupported or unparseable URL used to end deep in SQLAlchemy (a missing MySQL driver, "Could not
        # parse SQLAlchemy URL"); the value is never repeated in the message: it may carry a password.
        if value is not None and not value.startswith(SUPPORTED_DATABASE_SCHEMES):
            raise ValueError("must be a sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
            raise ValueError("must be an absolute http:// or https:// URL with a host, e.g. https://hub.example.com")
        return value

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def db_url(self) -> str:
        if self.database_url:
            return normalize_db_url(self.database_url)
        return f"sqlite:///{self.resolved_home / 'wedsync.sqlite'}"

    @property
    def dbos_url(self) -> str:
        if self.system_database_url:
            return normalize_db_url(self.system_database_url)
        if self.database_url and not self.database_url.startswith("sqlite"):
            return normalize_db_url(self.database_url)
        return f"sqlite:///{self.resolved_home / 'dbos.sqlite'}"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SUPPORTED_DATABASE_SCHEMES = ("sqlite://", "postgresql://", "postgres://", "postgresql+psycopg://")


def normalize_db_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
