"""Structured logging for the hub (structlog over stdlib) with a scrubber that keeps credentials out of logs.

Every record, from structlog or from stdlib loggers (uvicorn, DBOS, httpx), passes through the same chain:
context vars, level, logger name, timestamp, exception formatting, then :func:`scrub_processor`, then the
renderer (console or JSON). The scrubber

* redacts the values of keys that look secret (``authorization``, ``x-api-key``, ``token``, ``password``,
  ``code``, ``cookie``, ``signature``, ``key``, ``*_token``, ``*_secret``...), recursively through nested
  mappings (headers included) and sequences;
* replaces every occurrence of a registered secret value (:func:`register_secret`, called by the credential
  vault when it decrypts) inside any string, using one compiled regex rebuilt lazily when the set changes;
* strips the values of secret-looking query-string parameters from URLs, the token of an availability feed's
  path (``/calendar/feeds/<token>.ics``, a bearer secret: only its SHA-256 is stored) and ``Bearer``/``Basic``
  credentials quoted in free text;
* escapes control characters (``\\x00``, ``\\n``, ``\\x1b``...) in every value but a traceback, so a request
  path such as ``/api/x%0a...`` cannot forge a log line or a terminal escape (log injection).

Call :func:`configure_logging` once per process, before the first log line (``wedsync serve``/``worker``).
"""

from __future__ import annotations

import logging
import logging.config
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, TextIO
from urllib.parse import quote

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "REDACTED",
    "configure_logging",
    "forget_secret",
    "get_logger",
    "is_secret_key",
    "register_secret",
    "route_library_loggers",
    "scrub",
    "scrub_processor",
    "scrub_text",
]

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 6
MAX_REGISTERED_SECRETS = 4096

_SECRET_NAMES = (
    "authorization|proxy_authorization|x_api_key|api_key|apikey|token|access_token|refresh_token|id_token"
    "|secret|client_secret|password|passwd|code|code_verifier|cookie|set_cookie|signature|key|private_key"
    "|oauth_token|oauth_token_secret|oauth_signature|oauth_verifier|x_auth_token|session|sessionid"
)
# Exact names, or any name ending in one of these suffixes (stripe_secret_key, webhook_secret, x_csrf_token).
_SECRET_KEY_RE = re.compile(
    rf"^(?:{_SECRET_NAMES}|.*_(?:token|secret|password|passwd|api_key|apikey|signature|private_key|secret_key))$"
)
_URL_PARAM_RE = re.compile(
    r"(?i)([?&;#](?:access_token|refresh_token|id_token|token|code|code_verifier|client_secret|secret"
    r"|api_?key|x-api-key|key|password|passwd|signature|sig|oauth_token|oauth_signature|oauth_verifier"
    r"|[\w.\-]*_(?:token|secret|password|signature|api_?key)"
    # any other ...token parameter: Google's syncToken/pageToken, Microsoft Graph's $deltatoken/$skiptoken
    r"|[\w.\-$]*token)=)[^&#\s\"'<>]+"
)
#: The public availability feed's path carries its secret token (``api/routers/calendar.public_feed``).
_FEED_PATH_RE = re.compile(r"(/calendar/feeds/)[^/\s\"'<>?#]+(\.ics)")
#: C0 control characters but tab, and DEL: escaped in logged values (``exception``/``stack`` keep their lines).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MULTILINE_KEYS = frozenset({"exception", "stack"})
_AUTH_SCHEME_RE = re.compile(r"(?i)\b(bearer|basic|digest)(\s+)[A-Za-z0-9\-._~+/]{6,}=*")


@lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """True when a mapping key's name says its value is a credential."""
    return bool(_SECRET_KEY_RE.match(name.strip().lower().replace("-", "_")))


class _SecretRegistry:
    """Registered secret values and one compiled pattern matching any of them.

    The pattern is built from a character trie, so its cost grows with the length of the text rather than the
    number of secrets; it is rebuilt on the first scrub after the set changes, never on the registration path.
    The set is bounded (oldest evicted first): a long-running worker refreshing tokens cannot grow it forever.
    """

    def __init__(self, limit: int = MAX_REGISTERED_SECRETS) -> None:
        self._values: OrderedDict[str, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self._dirty = False

    def add(self, value: str) -> None:
        variants = {value, quote(value, safe="")}
        with self._lock:
            for v in variants:
                if v in self._values:
                    self._values.move_to_end(v)
                    continue
                self._values[v] = None
                self._dirty = True
            while len(self._values) > self._limit:
                self._values.popitem(last=False)
                self._dirty = True

    def discard(self, value: str) -> None:
        with self._lock:
            for v in {value, quote(value, safe="")}:
                if self._values.pop(v, 0) is None:
                    self._dirty = True

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None
            self._dirty = False

    def pattern(self) -> re.Pattern[str] | None:
        if self._dirty:
            with self._lock:
                if self._dirty:
                    self._pattern = _trie_pattern(list(self._values)) if self._values else None
                    self._dirty = False
        return self._pattern


_END = ""


def _trie_pattern(values: list[str]) -> re.Pattern[str]:
    """Compile a regex matching any of ``values``, longest match first, shaped as a trie."""
    root: dict[str, Any] = {}
    for value in values:
        node = root
        for ch in value:
            node = node.setdefault(ch, {})
        node[_END] = True
    return re.compile(_node_regex(root))


def _node_regex(node: dict[str, Any]) -> str:
    # Single-child chains are collapsed into one literal so long secrets (JWTs) do not recurse per character;
    # an optional group is greedy, so the longest registered secret wins.
    branches: list[str] = []
    for ch in sorted(k for k in node if k != _END):
        child = node[ch]
        literal = [ch]
        while _END not in child and len(child) == 1:
            (nxt,) = child
            literal.append(nxt)
            child = child[nxt]
        piece = re.escape("".join(literal))
        if any(k != _END for k in child):
            piece += f"(?:{_node_regex(child)})" + ("?" if _END in child else "")
        branches.append(piece)
    return "|".join(branches)


_registry = _SecretRegistry()


def register_secret(value: str | None) -> None:
    """Never let ``value`` appear in a log line again (values shorter than 6 characters are ignored)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _registry.add(value)


def forget_secret(value: str) -> None:
    """Stop scrubbing ``value`` (e.g. after a credential was revoked and deleted)."""
    _registry.discard(value)


def scrub_text(text: str) -> str:
    """Remove registered secrets, secret URL parameters and quoted auth credentials from free text."""
    pattern = _registry.pattern()
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if "=" in text:
        text = _URL_PARAM_RE.sub(rf"\1{REDACTED}", text)
    if "/calendar/feeds/" in text:
        text = _FEED_PATH_RE.sub(rf"\1{REDACTED}\2", text)
    if " " in text:
        text = _AUTH_SCHEME_RE.sub(rf"\1\2{REDACTED}", text)
    return text


_PLAIN = (int, float, bool, type(None))


def scrub(value: Any) -> Any:
    """Return ``value`` with credentials removed; containers are copied, never mutated in place."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {k: (REDACTED if isinstance(k, str) and is_secret_key(k) and v else scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return scrub_text(bytes(value).decode("utf-8", "replace"))
    # Unknown objects (URLs, requests, exceptions) render via str(); scrub what they would print.
    return scrub_text(str(value))


def escape_controls(text: str) -> str:
    """``text`` with its control characters (but tab) written as Python escapes: ``"a\\nb"`` -> ``"a\\\\nb"``."""
    if not _CONTROL_RE.search(text):
        return text
    return _CONTROL_RE.sub(lambda m: repr(m.group())[1:-1], text)


def scrub_processor(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: scrub every key and value of the event dict, and escape control characters in every
    string value but a traceback."""
    for key, val in list(event_dict.items()):
        if key.startswith("_"):
            continue  # structlog/stdlib plumbing (_record, _from_structlog)
        if is_secret_key(key):
            if val:
                event_dict[key] = REDACTED
        elif type(val) is str:
            val = scrub_text(val)
            event_dict[key] = val if key in _MULTILINE_KEYS else escape_controls(val)
        elif not isinstance(val, _PLAIN):
            val = scrub(val)
            event_dict[key] = escape_controls(val) if isinstance(val, str) else val
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


_HANDLER_MARK = "_wedsync_handler"
# Loggers that would otherwise print on their own; they all go through the root handler instead.
_ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "dbos", "httpx", "httpcore", "alembic", "sqlalchemy")
# Libraries that log every request at INFO: the hub's own per-attempt line supersedes them.
# SQLAlchemy logs statements *with their parameters* at INFO: synced personal data must not reach the logs.
# uvicorn's access log: every server of the hub turns it off (``access_log=False``), but routing it through the
# root handler turned it back on for every server of the process (the demo printed the sandboxes' request lines,
# with their sync and delta tokens, under "Ctrl-C to stop").
_QUIET_LOGGERS = {"httpx": logging.WARNING, "httpcore": logging.WARNING, "sqlalchemy": logging.WARNING,
                  "uvicorn.access": logging.WARNING}


def configure_logging(level: str = "INFO", json: bool = False, *, stream: TextIO | None = None) -> None:
    """Configure structlog and stdlib logging for this process; safe to call again (tests, reloads).

    ``json=True`` renders one JSON object per line (production); otherwise a console renderer. Exceptions
    are formatted to plain text *before* scrubbing (no rich tracebacks with local variables).
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else int(level)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    out = stream if stream is not None else sys.stderr

    renderer: Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=bool(getattr(out, "isatty", lambda: False)()),
            exception_formatter=structlog.dev.plain_traceback,
        )

    shared = _shared_processors()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            scrub_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    route_library_loggers()


def route_library_loggers() -> None:
    """Send uvicorn, DBOS, httpx... records through the root handler (and so through the scrubber).

    ``configure_logging`` calls it; call it again after a library that installs its own handlers at start-up
    (e.g. ``uvicorn.run`` without ``log_config=None``). DBOS only adds its console handler (and stops
    propagating) when its logger has none, so a ``NullHandler`` is left there to keep it routed.
    """
    root_level = logging.getLogger().level
    for name in _ROUTED_LOGGERS:
        lg = logging.getLogger(name)
        for old in list(lg.handlers):
            lg.removeHandler(old)
        lg.propagate = True
        lg.setLevel(max(root_level, _QUIET_LOGGERS.get(name, logging.NOTSET)))
    logging.getLogger("dbos").addHandler(logging.NullHandler())


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger named ``name`` (``logger`` key), optionally with bound context."""
    log = structlog.get_logger(name)
    return log.bind(**initial) if initial else log


def _configure_default() -> None:
    # Until configure_logging runs, structlog still scrubs (it would otherwise print raw values to stdout).
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub_processor,
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


_configure_default()
