"""A generic OAuth 2 authorization server emulator: authorization code with PKCE, rotating refresh tokens.

Mounted at ``/oauth``. What it checks follows RFC 6749 (OAuth 2.0), RFC 7636 (PKCE), RFC 6750 (bearer
tokens) and RFC 7009 (revocation)::

    GET  /oauth/authorize   response_type=code, client_id, redirect_uri, state, code_challenge (S256 only),
                            scope. An unknown client or a redirect URI the client did not register is shown
                            as a 400 error page and never redirected (RFC 6749 4.1.2.1); other errors are
                            redirected as ``error=...&state=...``. The resource owner is simulated: the
                            request is approved at once (302 with ``code`` and ``state``) unless the client is
                            configured to deny or the query has ``sandbox_deny=1`` (then ``access_denied``).
                            ``sandbox_user=NAME`` chooses the subject the tokens are issued for.
    POST /oauth/token       form-encoded. Client authentication by HTTP Basic (form-encoded id and secret,
                            RFC 6749 2.3.1) or ``client_id``/``client_secret`` in the body, never both.
                            ``authorization_code``: the code is single use (a replayed code also revokes the
                            tokens issued from it), bound to its client and redirect URI, and needs the PKCE
                            verifier. ``refresh_token``: every refresh rotates the refresh token; presenting
                            a used one is ``invalid_grant`` (and, with ``revoke_family_on_reuse``, revokes the
                            whole grant). Answers carry ``Cache-Control: no-store``.
    POST /oauth/revoke      RFC 7009: revokes a refresh token's whole grant, or one access token; always 200.
    GET  /oauth/me          a protected resource: 200 with the token's subject, client and scope for a valid
                            bearer token, else 401 with ``WWW-Authenticate: Bearer ...`` (RFC 6750 3.1).

Tokens are random (``secrets``), not derived from the seed. Lifetimes are options: ``access_token_ttl``
(seconds; short in tests so refresh-before-expiry can be shown), ``code_ttl``, ``refresh_token_ttl``.
Collections for ``/_sandbox/oauth/records/{name}``: ``clients``, ``codes``, ``access_tokens``,
``refresh_tokens`` and ``token_requests`` (one line per token endpoint call: grant type, client, outcome).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Scope

from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.hooks import WebhookDispatcher

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "PREFIX",
    "SLUG",
    "OAuthClientConfig",
    "OAuthServerEmulator",
    "create_emulator",
]

SLUG = "oauth"
PREFIX = "/oauth"
DEFAULT_CLIENT_ID = "sandbox-oauth-client"
DEFAULT_CLIENT_SECRET = "sandbox-oauth-secret"
DEFAULT_SUBJECT = "sandbox-user"
REALM = "sandbox-oauth"

_UNRESERVED_43_128 = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


@dataclass
class OAuthClientConfig:
    """A registered client. ``redirect_uris`` empty means any absolute http(s) URI (a sandbox convenience)."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] = ()
    auth_methods: tuple[str, ...] = _AUTH_METHODS
    scopes: tuple[str, ...] = ()
    """Scopes the client may ask for; empty means any."""
    deny: bool = False
    """Simulate a resource owner who always refuses."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> OAuthClientConfig:
        unknown = set(data) - {"client_id", "client_secret", "redirect_uris", "auth_methods", "scopes", "deny"}
        if unknown:
            raise ValueError(f"unknown client fields {sorted(unknown)}")
        methods = tuple(data.get("auth_methods") or _AUTH_METHODS)
        if not set(methods) <= set(_AUTH_METHODS):
            raise ValueError(f"auth_methods must be among {_AUTH_METHODS}")
        return cls(client_id=str(data["client_id"]), client_secret=str(data["client_secret"]),
                   redirect_uris=tuple(data.get("redirect_uris") or ()), auth_methods=methods,
                   scopes=tuple(data.get("scopes") or ()), deny=bool(data.get("deny", False)))

    def allows_redirect(self, uri: str) -> bool:
        if self.redirect_uris:
            return uri in self.redirect_uris  # exact match (RFC 6749 3.1.2.3 with registered URIs)
        parts = urlsplit(uri)
        return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    subject: str
    grant_id: str
    expires_at: float
    used: bool = False


@dataclass
class _AccessToken:
    token: str
    client_id: str
    scope: str
    subject: str
    grant_id: str
    expires_at: float
    revoked: bool = False


@dataclass
class _RefreshToken:
    token: str
    client_id: str
    scope: str
    subject: str
    grant_id: str
    issued_at: float
    expires_at: float | None
    used_at: float | None = None
    revoked: bool = False


class OAuthError(Exception):
    """An RFC 6749 5.2 error answer from the token endpoint."""

    def __init__(self, error: str, description: str, status: int = 400,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = dict(headers or {})


_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def _with_query(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` appended, keeping its own query component (RFC 6749 3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _single(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Parameters as a dict; a repeated parameter is ``invalid_request`` (RFC 6749 3.1, 3.2)."""
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key in seen:
            raise OAuthError("invalid_request", f"parameter {key!r} was sent more than once")
        seen[key] = value
    return seen


class OAuthServerEmulator:
    """The authorization server, its registered clients and every code and token it issued (in memory)."""

    slug = SLUG
    prefix = PREFIX

    def __init__(self, *, seed: int = 42, clients: Sequence[Mapping[str, Any]] | None = None,
                 access_token_ttl: float = 3600.0, code_ttl: float = 600.0,
                 refresh_token_ttl: float | None = None, revoke_family_on_reuse: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.seed_value = seed
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.faults)
        self._initial: dict[str, Any] = {
            "clients": [dict(c) for c in clients] if clients is not None else [
                {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}],
            "access_token_ttl": access_token_ttl,
            "code_ttl": code_ttl,
            "refresh_token_ttl": refresh_token_ttl,
            "revoke_family_on_reuse": revoke_family_on_reuse,
        }
        self._clock = clock
        self.clients: dict[str, OAuthClientConfig] = {}
        self.codes: dict[str, _Code] = {}
        self.access_tokens: dict[str, _AccessToken] = {}
        self.refresh_tokens: dict[str, _RefreshToken] = {}
        self.token_requests: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.access_token_ttl = access_token_ttl
        self.code_ttl = code_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.revoke_family_on_reuse = revoke_family_on_reuse
        self.json_token_requests = True  # also accept Square-style JSON token requests (body parameters)
        self.reset()
        self._app = self._build_api()

    # -- emulator protocol ------------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        return self._app

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        error = "server_error" if kind == "server-error" else "temporarily_unavailable"
        return json.dumps({"error": error, "error_description": detail}).encode()

    def quota_key(self, scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, cred = value.decode("latin-1").partition(" ")
                if scheme.lower() == "basic":
                    client_id, _ = self._basic_pair(cred)
                    return f"client:{client_id}" if client_id else None
                if scheme.lower() == "bearer":
                    token = self.access_tokens.get(cred.strip())
                    return f"client:{token.client_id}" if token else None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        return f"client:{query['client_id']}" if "client_id" in query else None

    def collections(self) -> list[str]:
        return ["clients", "codes", "access_tokens", "refresh_tokens", "token_requests"]

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        rows: list[Any]
        if collection == "clients":
            rows = [asdict(c) for c in self.clients.values()]
        elif collection == "codes":
            rows = [asdict(c) for c in self.codes.values()]
        elif collection == "access_tokens":
            rows = [asdict(t) for t in self.access_tokens.values()]
        elif collection == "refresh_tokens":
            rows = [asdict(t) for t in self.refresh_tokens.values()]
        elif collection == "token_requests":
            rows = list(self.token_requests)
        else:
            raise KeyError(collection)
        end = None if limit is None else offset + limit
        for row in rows[offset:end]:
            yield json.dumps(row, sort_keys=True).encode()

    def reset(self) -> dict[str, Any]:
        initial = self._initial
        self.clients = {c.client_id: c for c in map(OAuthClientConfig.from_mapping, initial["clients"])}
        self.access_token_ttl = float(initial["access_token_ttl"])
        self.code_ttl = float(initial["code_ttl"])
        ttl = initial["refresh_token_ttl"]
        self.refresh_token_ttl = None if ttl is None else float(ttl)
        self.revoke_family_on_reuse = bool(initial["revoke_family_on_reuse"])
        self.codes.clear()
        self.access_tokens.clear()
        self.refresh_tokens.clear()
        self.token_requests.clear()
        self.counts.clear()
        return {"clients": len(self.clients)}

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Reconfigure and forget every grant: ``clients`` (a list of client objects), ``access_token_ttl``,
        ``code_ttl``, ``refresh_token_ttl`` (null: never), ``revoke_family_on_reuse``."""
        allowed = {"clients", "access_token_ttl", "code_ttl", "refresh_token_ttl", "revoke_family_on_reuse",
                   "seed"}
        unknown = set(params) - allowed
        if unknown:
            raise ValueError(f"unknown seed parameters {sorted(unknown)}; allowed: {sorted(allowed)}")
        for name in ("access_token_ttl", "code_ttl"):
            if name in params and not float(params[name]) > 0:
                raise ValueError(f"{name} must be positive")
        if params.get("clients") is not None:
            for client in params["clients"]:  # validate before changing anything
                OAuthClientConfig.from_mapping(client)
        self._initial = {**self._initial, **{k: v for k, v in params.items() if k != "seed"}}
        if "seed" in params:
            self.seed_value = int(params["seed"])
        return self.reset()

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``{"revoke": K}``: K resource owners revoke the app's access (their grants' tokens stop working)."""
        unknown = set(params) - {"revoke"}
        if unknown:
            raise ValueError(f"unknown mutate parameters {sorted(unknown)}; allowed: ['revoke']")
        wanted = int(params.get("revoke", 0))
        live = sorted({t.grant_id for t in self.refresh_tokens.values() if not t.revoked and t.used_at is None})
        for grant_id in live[:wanted]:
            self.revoke_grant(grant_id)
        return {"revoked": min(wanted, len(live))}

    # -- clients and grants -----------------------------------------------------------------------------

    def register_client(self, client_id: str, client_secret: str, **options: Any) -> OAuthClientConfig:
        """Add or replace a client at run time (tests register the hub's callback URI exactly)."""
        client = OAuthClientConfig.from_mapping({"client_id": client_id, "client_secret": client_secret,
                                                 **options})
        self.clients[client_id] = client
        return client

    def revoke_grant(self, grant_id: str) -> None:
        for access in self.access_tokens.values():
            if access.grant_id == grant_id:
                access.revoked = True
        for refresh in self.refresh_tokens.values():
            if refresh.grant_id == grant_id:
                refresh.revoked = True

    def _issue(self, client_id: str, scope: str, subject: str, grant_id: str) -> dict[str, Any]:
        now = self._clock()
        access = _AccessToken(token="sbx_at_" + secrets.token_urlsafe(24), client_id=client_id, scope=scope,
                              subject=subject, grant_id=grant_id, expires_at=now + self.access_token_ttl)
        refresh = _RefreshToken(token="sbx_rt_" + secrets.token_urlsafe(32), client_id=client_id, scope=scope,
                                subject=subject, grant_id=grant_id, issued_at=now,
                                expires_at=None if self.refresh_token_ttl is None else now + self.refresh_token_ttl)
        self.access_tokens[access.token] = access
        self.refresh_tokens[refresh.token] = refresh
        body: dict[str, Any] = {"access_token": access.token, "token_type": "Bearer",
                                "expires_in": self.access_token_ttl, "refresh_token": refresh.token}
        if scope:
            body["scope"] = scope
        return body

    @staticmethod
    def _basic_pair(credentials: str) -> tuple[str | None, str | None]:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            return None, None
        return unquote_plus(client_id), unquote_plus(secret)

    def _authenticate(self, request: Request, form: dict[str, str]) -> tuple[OAuthClientConfig, str]:
        """RFC 6749 2.3.1: HTTP Basic or body parameters, exactly one of them."""
        header = request.headers.get("authorization", "")
        scheme, _, cred = header.partition(" ")
        challenge = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
        if scheme.lower() == "basic":
            if "client_secret" in form:
                raise OAuthError("invalid_request", "use one client authentication method, not two")
            client_id, secret = self._basic_pair(cred)
            method = "client_secret_basic"
            if client_id is None:
                raise OAuthError("invalid_client", "malformed Basic credentials", 401, challenge)
            if "client_id" in form and form["client_id"] != client_id:
                raise OAuthError("invalid_request", "client_id in the body differs from the authenticated one")
        elif "client_secret" in form:
            client_id, secret, method = form.get("client_id"), form["client_secret"], "client_secret_post"
            challenge = {}
        else:
            raise OAuthError("invalid_client", "client authentication is required", 401, challenge)
        client = self.clients.get(client_id or "")
        if client is None or secret is None or not hmac.compare_digest(
                client.client_secret.encode(), secret.encode()):
            raise OAuthError("invalid_client", "unknown client or wrong secret", 401, challenge)
        if method not in client.auth_methods:
            raise OAuthError("invalid_client", f"{method} is not allowed for this client", 401, challenge)
        return client, method

    def _log_request(self, grant_type: str, client_id: str | None, auth_method: str | None, outcome: str) -> None:
        self.counts[f"{grant_type}:{outcome}"] += 1
        self.token_requests.append({"at": self._clock(), "grant_type": grant_type, "client_id": client_id,
                                    "auth_method": auth_method, "outcome": outcome})
        del self.token_requests[:-10_000]

    # -- grants -------------------------------------------------------------------------------------------

    def _authorization_code(self, client: OAuthClientConfig, form: Mapping[str, str]) -> dict[str, Any]:
        code_value = form.get("code")
        if not code_value:
            raise OAuthError("invalid_request", "code is required")
        code = self.codes.get(code_value)
        if code is None or code.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if code.used:
            self.revoke_grant(code.grant_id)  # RFC 6749 4.1.2: revoke what the code had issued
            raise OAuthError("invalid_grant", "authorization code was already used")
        code.used = True
        if self._clock() >= code.expires_at:
            raise OAuthError("invalid_grant", "authorization code expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
        verifier = form.get("code_verifier")
        if not verifier:
            raise OAuthError("invalid_request", "code_verifier is required (PKCE)")
        if not _UNRESERVED_43_128.fullmatch(verifier) or not hmac.compare_digest(_s256(verifier), code.challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        return self._issue(client.client_id, code.scope, code.subject, code.grant_id)

    def _refresh(self, client: OAuthClientConfig, form: Mapping[str, str]) -> dict[str, Any]:
        value = form.get("refresh_token")
        if not value:
            raise OAuthError("invalid_request", "refresh_token is required")
        old = self.refresh_tokens.get(value)
        if old is None or old.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown refresh token")
        if old.revoked:
            raise OAuthError("invalid_grant", "refresh token was revoked")
        if old.used_at is not None:
            if self.revoke_family_on_reuse:
                self.revoke_grant(old.grant_id)
            raise OAuthError("invalid_grant", "refresh token was already used (it rotates on every refresh)")
        if old.expires_at is not None and self._clock() >= old.expires_at:
            raise OAuthError("invalid_grant", "refresh token expired")
        scope = old.scope
        if form.get("scope"):
            asked = form["scope"].split()
            if not set(asked) <= set(old.scope.split()):
                raise OAuthError("invalid_scope", "a refresh cannot widen the granted scope")
            scope = " ".join(asked)
        old.used_at = self._clock()
        return self._issue(client.client_id, scope, old.subject, old.grant_id)

    # -- HTTP ---------------------------------------------------------------------------------------------

    def _build_api(self) -> FastAPI:
        api = FastAPI(title="OAuth 2 authorization server (sandbox)", docs_url=None, redoc_url=None,
                      openapi_url=None)
        emulator = self

        def page(status: int, error: str, description: str) -> Response:
            # shown to the resource owner, not redirected: the redirect target cannot be trusted
            return JSONResponse({"error": error, "error_description": description}, status_code=status)

        @api.get("/authorize")
        async def authorize(request: Request) -> Response:
            try:
                q = _single(list(request.query_params.multi_items()))
            except OAuthError as exc:
                return page(400, exc.error, exc.description)
            client = emulator.clients.get(q.get("client_id", ""))
            if client is None:
                return page(400, "invalid_client", "unknown client_id")
            redirect_uri = q.get("redirect_uri", "")
            if not redirect_uri or not client.allows_redirect(redirect_uri):
                return page(400, "invalid_request", "redirect_uri is missing or not registered for this client")
            state = q.get("state")

            def back(**params: str | None) -> Response:
                return RedirectResponse(_with_query(redirect_uri, {**params, "state": state}), status_code=302)

            if q.get("response_type") != "code":
                return back(error="unsupported_response_type", error_description="only response_type=code")
            challenge = q.get("code_challenge")
            if not challenge:
                return back(error="invalid_request", error_description="code_challenge is required (PKCE)")
            if q.get("code_challenge_method") != "S256":
                return back(error="invalid_request", error_description="code_challenge_method must be S256")
            if not _S256_CHALLENGE.fullmatch(challenge):
                return back(error="invalid_request", error_description="malformed S256 code_challenge")
            scope = " ".join(q.get("scope", "").split())
            if client.scopes and not set(scope.split()) <= set(client.scopes):
                return back(error="invalid_scope", error_description="scope not allowed for this client")
            if client.deny or q.get("sandbox_deny", "").lower() in ("1", "true", "yes"):
                return back(error="access_denied", error_description="the resource owner denied the request")
            code = _Code(code="sbx_code_" + secrets.token_urlsafe(24), client_id=client.client_id,
                         redirect_uri=redirect_uri, challenge=challenge, scope=scope,
                         subject=q.get("sandbox_user") or DEFAULT_SUBJECT, grant_id=secrets.token_hex(8),
                         expires_at=emulator._clock() + emulator.code_ttl)
            emulator.codes[code.code] = code
            return back(code=code.code)

        @api.post("/token")
        async def token(request: Request) -> Response:
            grant_type, client_id, method = "unknown", None, None
            try:
                ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
                body = (await request.body()).decode("utf-8", "replace")
                if ctype == "application/json" and emulator.json_token_requests:
                    # Square's token endpoint: the grant and the client's credentials in one JSON object.
                    try:
                        parsed = json.loads(body)
                    except ValueError:
                        parsed = None
                    if not isinstance(parsed, dict):
                        raise OAuthError("invalid_request", "the body must be a JSON object")
                    form = {str(k): str(v) for k, v in parsed.items() if isinstance(v, str)}
                elif ctype != "application/x-www-form-urlencoded":
                    raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
                else:
                    form = _single(parse_qsl(body, keep_blank_values=True))
                grant_type = form.get("grant_type") or "missing"
                client, method = emulator._authenticate(request, form)
                client_id = client.client_id
                if grant_type == "authorization_code":
                    answer = emulator._authorization_code(client, form)
                elif grant_type == "refresh_token":
                    answer = emulator._refresh(client, form)
                else:
                    raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
            except OAuthError as exc:
                emulator._log_request(grant_type, client_id, method, exc.error)
                return JSONResponse({"error": exc.error, "error_description": exc.description},
                                    status_code=exc.status, headers={**_NO_STORE, **exc.headers})
            emulator._log_request(grant_type, client_id, method, "ok")
            return JSONResponse(answer, headers=_NO_STORE)

        @api.post("/revoke")
        async def revoke(request: Request) -> Response:
            try:
                form = _single(parse_qsl((await request.body()).decode("utf-8", "replace")))
                client, _ = emulator._authenticate(request, form)
            except OAuthError as exc:
                return JSONResponse({"error": exc.error, "error_description": exc.description},
                                    status_code=exc.status, headers=exc.headers)
            value = form.get("token", "")
            refresh = emulator.refresh_tokens.get(value)
            access = emulator.access_tokens.get(value)
            if refresh is not None and refresh.client_id == client.client_id:
                emulator.revoke_grant(refresh.grant_id)
            elif access is not None and access.client_id == client.client_id:
                access.revoked = True
            return Response(status_code=200)  # RFC 7009 2.2: also for unknown tokens

        @api.get("/me")
        async def me(request: Request) -> Response:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                return JSONResponse({"error": "unauthorized"}, status_code=401,
                                    headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'})
            access = emulator.access_tokens.get(value.strip())
            problem = None
            if access is None:
                problem = "unknown access token"
            elif access.revoked:
                problem = "access token was revoked"
            elif emulator._clock() >= access.expires_at:
                problem = "access token expired"
            if problem is not None or access is None:
                emulator.counts["me:401"] += 1
                return JSONResponse({"error": "invalid_token", "error_description": problem}, status_code=401,
                                    headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token", '
                                                                 f'error_description="{problem}"'})
            emulator.counts["me:200"] += 1
            return JSONResponse({"sub": access.subject, "client_id": access.client_id, "scope": access.scope,
                                 "expires_in": round(access.expires_at - emulator._clock(), 3)})

        return api


def create_emulator(*, seed: int = 42, clients: Sequence[Mapping[str, Any]] | None = None,
                    access_token_ttl: float = 3600.0, code_ttl: float = 600.0,
                    refresh_token_ttl: float | None = None, revoke_family_on_reuse: bool = False,
                    **_: Any) -> OAuthServerEmulator:
    """Registry entry point (see ``wedsync.sandbox.registry``)."""
    return OAuthServerEmulator(seed=seed, clients=clients, access_token_ttl=access_token_ttl, code_ttl=code_ttl,
                               refresh_token_ttl=refresh_token_ttl, revoke_family_on_reuse=revoke_family_on_reuse)
