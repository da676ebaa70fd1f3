"""Auth flows against a Starlette provider (token endpoint + API) over httpx.ASGITransport."""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import wedsync.connectors.auth as auth_module
from wedsync.connectors.auth import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    OAuth1Auth,
    OAuth2Auth,
    Token,
    TokenRotationConflict,
    build_authorize_url,
    exchange_code,
    generate_pkce,
    new_state,
    oauth1_signature_base_string,
    pkce_challenge,
)
from wedsync.connectors.errors import ReauthRequired
from wedsync.connectors.http import ProviderClient, RetryPolicy

BASE = "http://provider.test"
TOKEN_URL = f"{BASE}/oauth/token"


class MemoryStore:
    """A TokenStore with the vault's compare-and-swap semantics on the refresh token."""

    def __init__(self, token: Token) -> None:
        self.token = token
        self.saves: list[Token] = []

    async def load(self) -> Token:
        await asyncio.sleep(0)
        return replace(self.token)

    async def save(self, new: Token, *, previous_refresh_token: str | None) -> None:
        await asyncio.sleep(0.01)  # a transaction takes time: widens any race
        if self.token.refresh_token != previous_refresh_token:
            raise TokenRotationConflict("refresh token rotated by another worker")
        self.token = replace(new)
        self.saves.append(replace(new))


class Provider:
    """Token endpoint with rotating refresh tokens, and an API that checks bearer tokens."""

    def __init__(self) -> None:
        self.valid_access: set[str] = set()
        self.valid_refresh: set[str] = set()
        self.refreshes = 0
        self.api_tokens: list[str] = []
        self.store: MemoryStore | None = None
        self.used_before_saved: list[str] = []
        self.on_refresh: Any = None
        self.codes: dict[str, str] = {}  # code -> code_challenge
        self._n = itertools.count(1)

    def issue(self) -> dict[str, Any]:
        n = next(self._n)
        access, refresh = f"at-{n}-{uuid.uuid4().hex}", f"rt-{n}-{uuid.uuid4().hex}"
        self.valid_access.add(access)
        self.valid_refresh.add(refresh)
        return {"access_token": access, "refresh_token": refresh, "expires_in": 3600, "token_type": "bearer"}

    def app(self) -> Starlette:
        async def token(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            if form.get("client_id") != "hub" or form.get("client_secret") != "hub-secret-123":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if form["grant_type"] == "refresh_token":
                await asyncio.sleep(0.05)
                if form["refresh_token"] not in self.valid_refresh:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                self.valid_refresh.discard(form["refresh_token"])  # rotation: the old one dies
                self.refreshes += 1
                if self.on_refresh:
                    self.on_refresh()
                return JSONResponse(self.issue())
            if form["grant_type"] == "authorization_code":
                challenge = self.codes.pop(form["code"], None)
                if challenge is None or pkce_challenge(form["code_verifier"]) != challenge:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                if form["redirect_uri"] != "https://hub.test/oauth/callback":
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                return JSONResponse(self.issue() | {"scope": "contacts.read"})
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

        async def me(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            access = auth.removeprefix("Bearer ")
            self.api_tokens.append(access)
            if self.store is not None and self.store.token.access_token != access:
                self.used_before_saved.append(access)
            if access not in self.valid_access:
                return JSONResponse({"error": "invalid_token"}, status_code=401)
            return JSONResponse({"me": "vendor"})

        async def always_401(request: Request) -> Response:
            return JSONResponse({"error": "insufficient_scope"}, status_code=401)

        async def echo(request: Request) -> Response:
            return JSONResponse({"headers": dict(request.headers)})

        return Starlette(
            routes=[
                Route("/oauth/token", token, methods=["POST"]),
                Route("/api/me", me),
                Route("/api/always-401", always_401),
                Route("/echo", echo, methods=["GET", "POST"]),
            ]
        )


def provider_client(provider: Provider, auth: httpx.Auth) -> ProviderClient:
    return ProviderClient(
        f"oauth-{uuid.uuid4().hex[:8]}",
        BASE,
        auth=auth,
        transport=httpx.ASGITransport(app=provider.app()),
        retry=RetryPolicy(max_attempts=1),
    )


def seeded(provider: Provider, *, expires_in: float) -> MemoryStore:
    issued = provider.issue()
    token = Token(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
    )
    store = MemoryStore(token)
    provider.store = store
    return store


def oauth(store: MemoryStore) -> OAuth2Auth:
    return OAuth2Auth(store, TOKEN_URL, "hub", "hub-secret-123")


# ------------------------------------------------------------------------------------------------ PKCE


def test_pkce_rfc7636_appendix_b_vector() -> None:
    assert pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_generate_pkce_and_state() -> None:
    verifier, challenge = generate_pkce()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    assert challenge == pkce_challenge(verifier) and "=" not in challenge
    assert generate_pkce()[0] != verifier
    assert len(new_state()) >= 32 and new_state() != new_state()


def test_build_authorize_url() -> None:
    url = build_authorize_url(
        "https://auth.example.com/authorize?tenant=x",
        "hub",
        "https://hub.test/oauth/callback",
        ["contacts.read", "offline_access"],
        "st4te",
        "chal",
        extra_params={"prompt": "consent"},
    )
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    assert parts.netloc == "auth.example.com" and parts.path == "/authorize"
    assert q["tenant"] == ["x"] and q["response_type"] == ["code"] and q["client_id"] == ["hub"]
    assert q["redirect_uri"] == ["https://hub.test/oauth/callback"]
    assert q["scope"] == ["contacts.read offline_access"]
    assert q["code_challenge"] == ["chal"] and q["code_challenge_method"] == ["S256"]
    assert q["state"] == ["st4te"] and q["prompt"] == ["consent"]
    assert "%20" in parts.query  # scope spaces percent-encoded, not '+'


async def test_exchange_code_with_pkce() -> None:
    provider = Provider()
    verifier, challenge = generate_pkce()
    provider.codes["the-code"] = challenge
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=provider.app())) as http:
        token = await exchange_code(
            http,
            TOKEN_URL,
            code="the-code",
            redirect_uri="https://hub.test/oauth/callback",
            client_id="hub",
            client_secret="hub-secret-123",
            code_verifier=verifier,
        )
        assert token.access_token in provider.valid_access
        assert token.refresh_token in provider.valid_refresh
        assert token.scope == "contacts.read" and token.token_type == "Bearer"
        assert token.expires_at is not None and token.expires_at.tzinfo is not None
        with pytest.raises(ReauthRequired):  # a code is single-use
            await exchange_code(
                http,
                TOKEN_URL,
                code="the-code",
                redirect_uri="https://hub.test/oauth/callback",
                client_id="hub",
                client_secret="hub-secret-123",
                code_verifier=verifier,
            )


def test_token_round_trip_and_repr_hides_secrets() -> None:
    token = Token("acc-secret-1", "ref-secret-1", datetime(2030, 1, 1, tzinfo=UTC), "a b", "Bearer")
    assert Token.from_dict(token.to_dict()) == token
    assert "secret" not in repr(token)
    with pytest.raises(ValueError):
        Token("x", None, datetime(2030, 1, 1))


# ---------------------------------------------------------------------------------------- OAuth 2 refresh


async def test_refresh_before_expiry_once_under_concurrency() -> None:
    provider = Provider()
    store = seeded(provider, expires_in=30)  # inside the 60 s skew
    old = store.token
    auth = oauth(store)
    async with provider_client(provider, auth) as client:
        results = await asyncio.gather(*(client.get_json("/api/me") for _ in range(10)))
    assert results == [{"me": "vendor"}] * 10
    assert provider.refreshes == 1
    assert len(store.saves) == 1
    assert store.token.refresh_token != old.refresh_token  # rotated and saved
    assert set(provider.api_tokens) == {store.token.access_token}
    assert provider.used_before_saved == []  # saved before first use


async def test_fresh_token_is_not_refreshed() -> None:
    provider = Provider()
    store = seeded(provider, expires_in=3600)
    async with provider_client(provider, oauth(store)) as client:
        await client.get_json("/api/me")
    assert provider.refreshes == 0 and store.saves == []


async def test_401_refreshes_once_and_retries() -> None:
    provider = Provider()
    store = seeded(provider, expires_in=3600)
    provider.valid_access.clear()  # the provider revoked the access token early
    async with provider_client(provider, oauth(store)) as client:
        assert await client.get_json("/api/me") == {"me": "vendor"}
    assert provider.refreshes == 1 and len(store.saves) == 1
    assert provider.api_tokens[-1] == store.token.access_token


async def test_persistent_401_refreshes_only_once_then_reauth() -> None:
    provider = Provider()
    store = seeded(provider, expires_in=3600)
    async with provider_client(provider, oauth(store)) as client:
        with pytest.raises(ReauthRequired):
            await client.get_json("/api/always-401")
    assert provider.refreshes == 1


async def test_invalid_grant_is_reauth_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth_module, "ROTATED_ELSEWHERE_WAIT", 0.2)  # how long it waits for another rotation
    provider = Provider()
    store = seeded(provider, expires_in=-10)
    provider.valid_refresh.clear()  # the vendor revoked our access at the provider
    async with provider_client(provider, oauth(store)) as client:
        with pytest.raises(ReauthRequired) as info:
            await client.get_json("/api/me")
    assert "invalid_grant" in info.value.message
    assert provider.api_tokens == []  # never called the API with an expired token
    assert store.saves == []


async def test_rotation_conflict_adopts_the_winner() -> None:
    provider = Provider()
    store = seeded(provider, expires_in=-10)

    def another_worker_rotates_first() -> None:
        winner = provider.issue()
        store.token = Token(winner["access_token"], winner["refresh_token"], datetime.now(UTC) + timedelta(hours=1))

    provider.on_refresh = another_worker_rotates_first
    async with provider_client(provider, oauth(store)) as client:
        assert await client.get_json("/api/me") == {"me": "vendor"}
    assert store.saves == []  # our save lost the compare-and-swap
    assert provider.api_tokens == [store.token.access_token]


# ----------------------------------------------------------------------------------------- simple schemes


async def test_api_key_bearer_and_basic_headers() -> None:
    app = Provider().app()
    for auth, header, expected in [
        (ApiKeyAuth("X-API-KEY", "vsco-key-123456"), "x-api-key", "vsco-key-123456"),
        (BearerAuth("pat-abcdef"), "authorization", "Bearer pat-abcdef"),
        (BasicAuth("user", "pass"), "authorization", "Basic dXNlcjpwYXNz"),
    ]:
        async with provider_client_for_app(app, auth) as client:
            body = await client.get_json("/echo")
        assert body["headers"][header] == expected
    assert "vsco-key" not in repr(ApiKeyAuth("X-API-KEY", "vsco-key-123456"))


def provider_client_for_app(app: Starlette, auth: httpx.Auth) -> ProviderClient:
    return ProviderClient(f"simple-{uuid.uuid4().hex[:8]}", BASE, auth=auth, transport=httpx.ASGITransport(app=app))


# ---------------------------------------------------------------------------------------------- OAuth 1.0a


def test_oauth1_rfc5849_base_string_example() -> None:
    # RFC 5849 section 3.4.1.1
    query = parse_qsl("b5=%3D%253D&a3=a&c%40=&a2=r%20b", keep_blank_values=True)
    body = parse_qsl("c2&a3=2+q", keep_blank_values=True)
    oauth_params = [
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
    ]
    base = oauth1_signature_base_string("post", "http://EXAMPLE.com:80/request", query + body + oauth_params)
    assert base == (
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q"
        "%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_"
        "key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m"
        "ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk"
        "9d7dh3k39sjv7"
    )


def _header_params(header: str) -> dict[str, str]:
    assert header.startswith("OAuth ")
    out = {}
    for part in header[len("OAuth ") :].split(", "):
        k, v = part.split("=", 1)
        out[k] = v.strip('"')
    return out


def test_oauth1_rfc5849_section_1_2_signature() -> None:
    auth = OAuth1Auth(
        "dpf43f3p2l4k3l03",
        "kd94hf93k423kf44",
        "nnch734d00sl2jdk",
        "pfkkdhi9sl3r4s00",
        realm="Photos",
        version=None,
        nonce=lambda: "chapoH",
        clock=lambda: 137131202,
    )
    request = httpx.Request("GET", "http://photos.example.net/photos?file=vacation.jpg&size=original")
    signed = next(auth.auth_flow(request))
    params = _header_params(signed.headers["authorization"])
    assert params["realm"] == "Photos"
    assert params["oauth_signature"] == "MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D"


async def test_oauth1_twitter_documented_example_through_httpx() -> None:
    auth = OAuth1Auth(
        "xvz1evFS4wEEPTGEFPHBog",
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        nonce=lambda: "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
        clock=lambda: 1318622958,
    )
    seen: dict[str, str] = {}

    async def update(request: Request) -> Response:
        seen.update(request.headers)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/1.1/statuses/update.json", update, methods=["POST"])])
    async with httpx.AsyncClient(
        base_url="https://api.twitter.com", auth=auth, transport=httpx.ASGITransport(app=app)
    ) as http:
        response = await http.post(
            "/1.1/statuses/update.json",
            params={"include_entities": "true"},
            data={"status": "Hello Ladies + Gentlemen, a signed OAuth request!"},
        )
    assert response.status_code == 200
    params = _header_params(seen["authorization"])
    assert params["oauth_signature"] == "hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D"
    assert params["oauth_version"] == "1.0"


def test_refreshes_from_several_event_loops_share_one_gate() -> None:
    """The API's loop and DBOS's loop refresh the same connection's token at once: one refresh, no error (an
    asyncio.Lock shared across loops raised "bound to a different event loop", a 500)."""
    provider = Provider()
    store = seeded(provider, expires_in=-10)
    barrier = threading.Barrier(3)
    results: list[Any] = []

    def worker() -> None:
        async def call() -> Any:
            async with provider_client(provider, oauth(store)) as client:
                barrier.wait(timeout=10)
                return await client.get_json("/api/me")
        try:
            results.append(asyncio.run(call()))
        except Exception as exc:  # collected, asserted below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert results == [{"me": "vendor"}] * 3, results
    assert provider.refreshes == 1 and len(store.saves) == 1


class _SlowSaveBackend:
    """One stored token shared by two processes' stores; a save commits only after ``delay`` seconds."""

    def __init__(self, token: Token, delay: float) -> None:
        self.token, self.delay, self.saves = token, delay, 0

    def store(self) -> Any:
        backend = self

        class _Store:
            async def load(self) -> Token:
                return replace(backend.token)

            async def save(self, new: Token, *, previous_refresh_token: str | None) -> None:
                await asyncio.sleep(backend.delay)
                if backend.token.refresh_token != previous_refresh_token:
                    raise TokenRotationConflict("rotated elsewhere")
                backend.token, backend.saves = replace(new), backend.saves + 1

        return _Store()


async def test_a_refresh_that_lost_to_another_process_waits_for_its_token() -> None:
    """Two processes refresh at once; the provider rotates for one and answers invalid_grant to the other
    while the winner's save has not committed yet: the loser takes the winner's token (it told the vendor
    to reconnect before)."""
    provider = Provider()
    issued = provider.issue()
    backend = _SlowSaveBackend(Token(issued["access_token"], issued["refresh_token"],
                                     datetime.now(UTC) - timedelta(seconds=10)), delay=0.4)
    clients = [provider_client(provider, OAuth2Auth(backend.store(), TOKEN_URL, "hub", "hub-secret-123"))
               for _ in range(2)]
    try:
        results = await asyncio.gather(*(c.get_json("/api/me") for c in clients), return_exceptions=True)
    finally:
        for c in clients:
            await c.aclose()
    assert results == [{"me": "vendor"}] * 2, results
    assert provider.refreshes == 1 and backend.saves == 1
