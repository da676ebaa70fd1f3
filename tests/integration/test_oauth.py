"""OAuth 2 end to end over real loopback HTTP: the hub's /oauth routes, the sandbox authorization server, the
vault, and OAuth2Auth with VaultTokenStore refreshing (and rotating) before expiry."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import structlog
from sqlalchemy import update

from tests.conftest import auth, make_settings
from tests.e2e.procs import free_port, serve_app_in_thread
from wedsync.api.app import create_app
from wedsync.bootstrap import Hub, set_hub
from wedsync.connectors.auth import generate_pkce
from wedsync.connectors.base import Capabilities, Channel, Connector
from wedsync.connectors.registry import CONNECTORS
from wedsync.logging import configure_logging
from wedsync.sandbox.app import create_sandbox_app
from wedsync.sandbox.oauth_server import OAuthServerEmulator
from wedsync.sandbox.server import start_sandbox_in_thread
from wedsync.services.oauth import OAUTH_TOKEN, OAuthClient, OAuthSpec, VaultTokenStore
from wedsync.store.tables import OAuthState, utcnow

SLUG = "test-oauth-provider"
OTHER = "test-oauth-other"
UNCONFIGURED = "test-oauth-unconfigured"
CLIENT_ID = "wedsync-hub-client"
CLIENT_SECRET = "wedsync-hub-client-secret-0123456789"
SPEC = OAuthSpec(
    authorize_url="https://auth.provider.example/oauth/authorize",
    token_url="https://auth.provider.example/oauth/token",
    scopes=("profile", "calendar.read"),
    client_auth="basic",
)


class _OAuthTestConnector(Connector):
    slug: ClassVar[str] = SLUG
    display_name: ClassVar[str] = "OAuth test provider"
    channel: ClassVar[Channel] = Channel.API
    capabilities: ClassVar[Capabilities] = Capabilities(category="test", read=("me",))
    oauth: ClassVar[OAuthSpec | None] = SPEC


class _OtherConnector(_OAuthTestConnector):
    slug: ClassVar[str] = OTHER
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(authorize_url=SPEC.authorize_url, token_url=SPEC.token_url,
                                                  client_auth="post")


JSONY = "test-oauth-json"


class _JsonConnector(_OAuthTestConnector):
    slug: ClassVar[str] = JSONY
    oauth: ClassVar[OAuthSpec | None] = OAuthSpec(authorize_url=SPEC.authorize_url, token_url=SPEC.token_url,
                                                  client_auth="json")


class _UnconfiguredConnector(_OAuthTestConnector):
    slug: ClassVar[str] = UNCONFIGURED


@dataclass
class Env:
    hub: Hub
    hub_url: str
    sandbox_url: str
    emulator: OAuthServerEmulator
    vendor_id: str
    key: str

    def callback_url(self, provider: str = SLUG) -> str:
        return f"{self.hub_url}/oauth/{provider}/callback"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    for cls in (_OAuthTestConnector, _OtherConnector, _JsonConnector, _UnconfiguredConnector):
        monkeypatch.setitem(CONNECTORS, cls.slug, cls)
    sandbox_app = create_sandbox_app(vsco_contacts=5, vsco_jobs=2)
    emulator: OAuthServerEmulator = sandbox_app.state.emulators["oauth"]
    sandbox_url, stop_sandbox = start_sandbox_in_thread(app=sandbox_app)
    port = free_port()
    hub_url = f"http://127.0.0.1:{port}"
    clients = {
        SLUG: {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "base_url": sandbox_url,
               "api_base_url": f"{sandbox_url}/oauth"},
        OTHER: {"client_id": "other-client", "client_secret": "other-client-secret", "base_url": sandbox_url},
        JSONY: {"client_id": "json-client", "client_secret": "json-client-secret", "base_url": sandbox_url},
    }
    hub = Hub(make_settings(tmp_path, public_url=hub_url, oauth_clients=clients))
    emulator.register_client(CLIENT_ID, CLIENT_SECRET, redirect_uris=[f"{hub_url}/oauth/{SLUG}/callback"],
                             auth_methods=["client_secret_basic"])
    emulator.register_client("other-client", "other-client-secret",
                             redirect_uris=[f"{hub_url}/oauth/{OTHER}/callback"])
    emulator.register_client("json-client", "json-client-secret",
                             redirect_uris=[f"{hub_url}/oauth/{JSONY}/callback"])
    set_hub(hub)
    stop_hub = None
    try:
        _, stop_hub = serve_app_in_thread(create_app(launch_workflows=False), port)
        vendor = hub.tenancy.create_vendor("Golden Hour")
        _, key = hub.tenancy.create_key(vendor.id)
        yield Env(hub, hub_url, sandbox_url, emulator, vendor.id, key)
    finally:
        if stop_hub is not None:
            stop_hub()
        stop_sandbox()
        set_hub(None)
        hub.close()


@pytest.fixture
def captured_logs(env: Env) -> Iterator[io.StringIO]:
    """Every log line of this process (hub server thread included) as JSON, after the hub has started."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure_logging("DEBUG", json=True, stream=buffer)
    yield buffer
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    structlog.configure(**saved_config)


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    """The vendor's browser: follows nothing by itself, so each hop can be checked."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _with(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = {**_query(url), **params}
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


async def _authorize(env: Env, browser: httpx.AsyncClient, provider: str = SLUG, **start: str) -> str:
    """Start at the hub and let the sandbox approve; returns the callback URL the browser is sent to."""
    r = await browser.get(f"{env.hub_url}/oauth/{provider}/start", params=start, headers=auth(env.key))
    assert r.status_code == 307, r.text
    assert r.headers["cache-control"] == "no-store"
    authorize_url = r.headers["location"]
    r = await browser.get(authorize_url)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def _connect(env: Env, browser: httpx.AsyncClient, **start: str) -> dict[str, Any]:
    r = await browser.get(await _authorize(env, browser, **start))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def test_full_flow_creates_connection_with_token_only_in_vault(
        env: Env, browser: httpx.AsyncClient, captured_logs: io.StringIO) -> None:
    r = await browser.get(f"{env.hub_url}/oauth/{SLUG}/start", headers=auth(env.key))
    assert r.status_code == 307
    authorize_url = r.headers["location"]
    assert authorize_url.startswith(f"{env.sandbox_url}/oauth/authorize?")
    q = _query(authorize_url)
    assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
    assert q["redirect_uri"] == env.callback_url() and q["scope"] == "profile calendar.read"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43 and len(q["state"]) >= 43
    assert CLIENT_SECRET not in authorize_url

    r = await browser.get(authorize_url)
    assert r.status_code == 302
    callback = r.headers["location"]
    assert callback.startswith(env.callback_url() + "?")
    cq = _query(callback)
    assert cq["state"] == q["state"] and cq["code"]

    r = await browser.get(callback)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"connection_id", "provider", "status"}
    assert body["provider"] == SLUG and body["status"] == "active"
    assert r.headers["cache-control"] == "no-store"

    # the token is in the vault, and is the one the authorization server issued
    conn = env.hub.connections.get(env.vendor_id, body["connection_id"])
    assert conn.base_url == f"{env.sandbox_url}/oauth"
    stored = env.hub.connections.credentials(conn)[OAUTH_TOKEN]
    issued = [t for t in env.emulator.refresh_tokens.values()]
    assert len(issued) == 1 and stored["refresh_token"] == issued[0].token
    assert stored["access_token"] in env.emulator.access_tokens
    assert stored["scope"] == "profile calendar.read" and stored["expires_at"]

    # ... and in no response
    secrets_ = (stored["access_token"], stored["refresh_token"], cq["code"])
    for url in ("/api/connections", f"/api/connections/{conn.id}"):
        text = (await browser.get(env.hub_url + url, headers=auth(env.key))).text
        assert conn.id in text and not any(s in text for s in secrets_)
    assert not any(s in r.text for s in secrets_)

    # the provider's API answers with that token
    me = await browser.get(f"{env.sandbox_url}/oauth/me",
                           headers={"Authorization": f"Bearer {stored['access_token']}"})
    assert me.status_code == 200 and me.json()["client_id"] == CLIENT_ID

    # a replayed callback finds its state used, and exchanges nothing
    exchanges = env.emulator.counts["authorization_code:ok"]
    r = await browser.get(callback)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_state"
    assert "already used" in r.json()["error"]["message"]
    assert env.emulator.counts["authorization_code:ok"] == exchanges == 1
    assert len(env.hub.connections.list(env.vendor_id)) == 1
    assert env.emulator.token_requests[0]["auth_method"] == "client_secret_basic"

    # the flow is logged, its credentials are not (the state is no credential: PKCE binds the code to us)
    logs = captured_logs.getvalue()
    assert '"oauth.started"' in logs and '"oauth.connected"' in logs
    leaked = [line for line in logs.splitlines() if any(s in line for s in (*secrets_, CLIENT_SECRET))]
    assert not leaked, leaked


async def test_start_as_json_and_reconnect_existing_connection(env: Env, browser: httpx.AsyncClient) -> None:
    first = await _connect(env, browser)
    conn_id = first["connection_id"]
    conn = env.hub.connections.get(env.vendor_id, conn_id)
    before = env.hub.connections.credentials(conn)
    env.hub.connections.set_status(conn_id, "reauth_required", "invalid_grant")

    r = await browser.get(f"{env.hub_url}/oauth/{SLUG}/start", headers=auth(env.key),
                          params={"format": "json", "connection_id": conn_id})
    assert r.status_code == 200 and set(r.json()) == {"authorize_url"}
    r = await browser.get(r.json()["authorize_url"])
    r = await browser.get(r.headers["location"])
    assert r.status_code == 200, r.text
    assert r.json() == {"connection_id": conn_id, "provider": SLUG, "status": "active"}
    after = env.hub.connections.credentials(env.hub.connections.get(env.vendor_id, conn_id))
    assert after[OAUTH_TOKEN]["refresh_token"] != before[OAUTH_TOKEN]["refresh_token"]
    assert after["webhook_secret"] == before["webhook_secret"]
    assert env.hub.connections.get(env.vendor_id, conn_id).status_detail is None
    assert len(env.hub.connections.list(env.vendor_id)) == 1

    # another vendor cannot reconnect (or learn about) this connection
    other = env.hub.tenancy.create_vendor("Petal Co")
    _, other_key = env.hub.tenancy.create_key(other.id)
    r = await browser.get(f"{env.hub_url}/oauth/{SLUG}/start", headers=auth(other_key),
                          params={"connection_id": conn_id})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_connection"


async def test_expired_state_is_rejected(env: Env, browser: httpx.AsyncClient) -> None:
    callback = await _authorize(env, browser)
    with env.hub.db.session() as s:
        s.execute(update(OAuthState).where(OAuthState.state == _query(callback)["state"])
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    r = await browser.get(callback)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_state"
    assert "expired" in r.json()["error"]["message"]
    assert env.emulator.counts["authorization_code:ok"] == 0
    assert env.hub.connections.list(env.vendor_id) == []


async def test_tampered_or_foreign_state_is_rejected(env: Env, browser: httpx.AsyncClient) -> None:
    callback = await _authorize(env, browser)
    state = _query(callback)["state"]
    tampered = state[:-1] + ("A" if state[-1] != "A" else "B")
    for bad in (_with(callback, state=tampered), _with(callback, state=""), _with(callback, state="x" * 600)):
        r = await browser.get(bad)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_state", r.text
    # the state was issued for SLUG: presenting it at another provider's callback fails ...
    other = callback.replace(f"/oauth/{SLUG}/callback", f"/oauth/{OTHER}/callback")
    r = await browser.get(other)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_state"
    # ... and none of these consumed the genuine one
    r = await browser.get(callback)
    assert r.status_code == 200, r.text
    assert env.emulator.counts["authorization_code:ok"] == 1


async def test_provider_denial(env: Env, browser: httpx.AsyncClient) -> None:
    r = await browser.get(f"{env.hub_url}/oauth/{SLUG}/start", headers=auth(env.key))
    r = await browser.get(_with(r.headers["location"], sandbox_deny="1"))
    assert r.status_code == 302
    callback = r.headers["location"]
    assert _query(callback)["error"] == "access_denied" and "code" not in _query(callback)
    r = await browser.get(callback)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "authorization_denied" and err["details"]["error"] == "access_denied"
    r = await browser.get(callback)  # the denial used the state up
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_state"
    assert env.hub.connections.list(env.vendor_id) == []


async def test_route_errors(env: Env, browser: httpx.AsyncClient) -> None:
    hub = env.hub_url
    r = await browser.get(f"{hub}/oauth/myspace/start", headers=auth(env.key))
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_provider"
    r = await browser.get(f"{hub}/oauth/myspace/callback", params={"state": "x", "code": "y"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_provider"
    r = await browser.get(f"{hub}/oauth/vsco-workspace/start", headers=auth(env.key))
    assert r.status_code == 400 and r.json()["error"]["code"] == "oauth_not_supported"
    # the seed's provider names are the providers they name here too
    r = await browser.get(f"{hub}/oauth/tave/start", headers=auth(env.key))
    assert r.status_code == 400 and r.json()["error"]["code"] == "oauth_not_supported"
    r = await browser.get(f"{hub}/oauth/outlook_365/start", headers=auth(env.key))
    assert r.status_code == 400 and r.json()["error"]["code"] == "oauth_not_configured"
    assert "microsoft-graph" in r.json()["error"]["message"]
    r = await browser.get(f"{hub}/oauth/the_knot/start", headers=auth(env.key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "provider_not_built"
    r = await browser.get(f"{hub}/oauth/{UNCONFIGURED}/start", headers=auth(env.key))
    assert r.status_code == 400 and r.json()["error"]["code"] == "oauth_not_configured"
    r = await browser.get(f"{hub}/oauth/{SLUG}/start")
    assert r.status_code == 401
    _, read_only = env.hub.tenancy.create_key(env.vendor_id, scopes=["read"])
    r = await browser.get(f"{hub}/oauth/{SLUG}/start", headers=auth(read_only))
    assert r.status_code == 403 and r.json()["error"]["code"] == "missing_scope"
    r = await browser.get(f"{hub}/oauth/{SLUG}/start", headers=auth(env.key),
                          params={"redirect_uri": "javascript:alert(1)"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_redirect_uri"
    r = await browser.get(f"{hub}/oauth/{SLUG}/callback", params={"code": "abc"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_state"


async def test_client_secret_post_provider(env: Env, browser: httpx.AsyncClient) -> None:
    callback = await _authorize(env, browser, provider=OTHER)
    r = await browser.get(callback)
    assert r.status_code == 200 and r.json()["provider"] == OTHER
    last = env.emulator.token_requests[-1]
    assert (last["grant_type"], last["client_id"], last["auth_method"], last["outcome"]) == (
        "authorization_code", "other-client", "client_secret_post", "ok")


async def test_json_token_request_provider(env: Env, browser: httpx.AsyncClient) -> None:
    """Square's token endpoint takes the grant and the client's credentials as one JSON object."""
    env.emulator.json_token_requests = False  # a form-only server refuses the JSON body...
    r = await browser.get(await _authorize(env, browser, provider=JSONY))
    assert r.status_code >= 400 and env.emulator.token_requests[-1]["outcome"] == "invalid_request"
    env.emulator.json_token_requests = True  # ...and a Square-style one accepts it
    r = await browser.get(await _authorize(env, browser, provider=JSONY))
    assert r.status_code == 200 and r.json()["provider"] == JSONY
    last = env.emulator.token_requests[-1]
    assert (last["grant_type"], last["client_id"], last["outcome"]) == ("authorization_code", "json-client", "ok")


async def test_refresh_before_expiry_rotates_and_is_saved_once_under_concurrency(
        env: Env, browser: httpx.AsyncClient, captured_logs: io.StringIO) -> None:
    ttl, skew = 3.0, 1.5
    env.emulator.access_token_ttl = ttl
    conn_id = (await _connect(env, browser))["connection_id"]
    store = VaultTokenStore(env.hub.db, env.hub.vault, env.vendor_id, conn_id)
    client = OAuthClient.resolve(SLUG, env.hub.settings)
    oauth = client.auth(store, skew=skew)
    t0 = await store.load()
    refreshes = lambda: env.emulator.counts["refresh_token:ok"]  # noqa: E731

    async with httpx.AsyncClient(auth=oauth, base_url=f"{env.sandbox_url}/oauth", timeout=10) as provider:
        r = await provider.get("/me")
        assert r.status_code == 200 and r.json()["sub"] == "sandbox-user"
        assert refreshes() == 0 and oauth.refresh_count == 0

        # inside the skew window but before expiry: refreshed first, so the provider never says 401
        await asyncio.sleep(ttl - skew + 0.4)
        r = await provider.get("/me")
        assert r.status_code == 200
        assert refreshes() == 1 and oauth.refresh_count == 1 and env.emulator.counts["me:401"] == 0
        t1 = await store.load()
        assert t1.refresh_token != t0.refresh_token and t1.access_token != t0.access_token
        assert t1.refresh_token in env.emulator.refresh_tokens
        assert env.emulator.refresh_tokens[t1.refresh_token].used_at is None
        assert env.emulator.refresh_tokens[t0.refresh_token or ""].used_at is not None

        # the server rejects the old refresh token: it rotated
        r = await browser.post(f"{env.sandbox_url}/oauth/token", headers=_basic(CLIENT_ID, CLIENT_SECRET),
                               data={"grant_type": "refresh_token", "refresh_token": t0.refresh_token or ""})
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

        # ten concurrent calls with a stale token: one refresh, ten answers
        await asyncio.sleep(ttl - skew + 0.4)
        answers = await asyncio.gather(*(provider.get("/me") for _ in range(10)))
        assert [a.status_code for a in answers] == [200] * 10
        assert refreshes() == 2 and oauth.refresh_count == 2 and env.emulator.counts["me:401"] == 0
        t2 = await store.load()
        assert t2.refresh_token not in (t0.refresh_token, t1.refresh_token)
        assert env.emulator.refresh_tokens[t2.refresh_token or ""].used_at is None

    # a second worker's OAuth2Auth starts from the vault and needs no refresh of its own
    worker_b = client.auth(VaultTokenStore(env.hub.db, env.hub.vault, env.vendor_id, conn_id), skew=skew)
    async with httpx.AsyncClient(auth=worker_b, base_url=f"{env.sandbox_url}/oauth", timeout=10) as provider:
        assert (await provider.get("/me")).status_code == 200
    assert worker_b.refresh_count == 0 and refreshes() == 2
    logs = captured_logs.getvalue()
    assert logs.count('"oauth2.refreshed"') == 2
    assert not any(tok in logs for t in (t0, t1, t2) for tok in (t.access_token, t.refresh_token or "-"))


async def test_a_token_lifetime_beyond_any_date_connects_without_an_expiry(env: Env, browser: httpx.AsyncClient
                                                                           ) -> None:
    """A token endpoint answering ``expires_in: 1e12`` (past the year 9999) made the callback answer 500
    (OverflowError; found by a probe): the connection is made, its token has no expiry to refresh before."""
    env.emulator.access_token_ttl = 1e12
    body = await _connect(env, browser)
    token = await VaultTokenStore(env.hub.db, env.hub.vault, env.vendor_id, body["connection_id"]).load()
    assert token.expires_at is None and token.access_token


async def test_sandbox_authorization_server_rules(env: Env, browser: httpx.AsyncClient) -> None:
    """The emulator enforces what a real server does, so the hub cannot pass by accident."""
    base = f"{env.sandbox_url}/oauth"
    verifier, challenge = generate_pkce()
    good = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": env.callback_url(),
            "state": "s1", "code_challenge": challenge, "code_challenge_method": "S256"}

    # errors about the client or redirect URI are shown, never redirected
    r = await browser.get(f"{base}/authorize", params={**good, "client_id": "nobody"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"
    r = await browser.get(f"{base}/authorize", params={**good, "redirect_uri": "https://evil.example/cb"})
    assert r.status_code == 400 and "location" not in r.headers
    # other errors go back to the client with the state
    for bad, error in (({"code_challenge_method": "plain"}, "invalid_request"),
                       ({"response_type": "token"}, "unsupported_response_type")):
        r = await browser.get(f"{base}/authorize", params={**good, **bad})
        assert r.status_code == 302
        back = _query(r.headers["location"])
        assert r.headers["location"].startswith(env.callback_url() + "?")
        assert back["error"] == error and back["state"] == "s1" and "code" not in back
    r = await browser.get(f"{base}/authorize", params={k: v for k, v in good.items() if k != "code_challenge"})
    assert _query(r.headers["location"])["error"] == "invalid_request"

    async def new_code() -> str:
        r = await browser.get(f"{base}/authorize", params=good)
        return _query(r.headers["location"])["code"]

    token_url = f"{base}/token"
    basic = _basic(CLIENT_ID, CLIENT_SECRET)
    code = await new_code()
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": env.callback_url(),
                "code_verifier": verifier}
    r = await browser.post(token_url, headers=basic, data={**exchange, "code_verifier": "x" * 43})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"  # wrong PKCE verifier burns the code
    r = await browser.post(token_url, headers=basic, data=exchange)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

    code = await new_code()
    r = await browser.post(token_url, headers=basic, data={**exchange, "code": code,
                                                           "redirect_uri": env.callback_url() + "x"})
    assert r.json()["error"] == "invalid_grant"  # redirect URI must match the authorization request

    code = await new_code()
    r = await browser.post(token_url, headers=_basic(CLIENT_ID, "wrong"), data={**exchange, "code": code})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    r = await browser.post(token_url, data={**exchange, "code": code, "client_id": CLIENT_ID,
                                            "client_secret": CLIENT_SECRET})
    assert r.status_code == 401  # this client registered client_secret_basic only
    r = await browser.post(token_url, headers=basic, data={**exchange, "code": code})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    tokens = r.json()
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"] and tokens["expires_in"] > 0

    # a replayed code fails and revokes what it issued
    r = await browser.post(token_url, headers=basic, data={**exchange, "code": code})
    assert r.json()["error"] == "invalid_grant"
    r = await browser.get(f"{base}/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    r = await browser.get(f"{base}/me")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="sandbox-oauth"'
    r = await browser.post(token_url, headers=basic, data={"grant_type": "password", "username": "u"})
    assert r.json()["error"] == "unsupported_grant_type"
    r = await browser.post(token_url, headers=basic, content=b'{"grant_type": "refresh_token"}')
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"  # form-urlencoded required
    r = await browser.post(token_url, headers={**basic, "Content-Type": "application/x-www-form-urlencoded"},
                           content=b"grant_type=refresh_token&grant_type=authorization_code")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"  # repeated parameter


async def test_a_key_rotation_with_prune_keeps_pending_authorizations(env: Env, browser: httpx.AsyncClient) -> None:
    """The PKCE verifier of an authorization in progress is sealed too: the rotation re-seals it with the new key,
    so the callback that comes after the old key was removed still completes."""
    from wedsync.store.vault import KeyRing, Vault

    callback = await _authorize(env, browser)  # the vendor is at the provider's consent page
    old = env.hub.vault.ring
    rotated = KeyRing([KeyRing.generate_key(), *old.keys])
    with env.hub.db.session() as s:
        Vault(rotated, on_decrypt=lambda _v: None).reencrypt_all(s)
    env.hub.vault.ring = KeyRing([rotated.keys[0]])  # pruned: the old key is gone from every process
    with env.hub.db.read() as s:
        assert {row.key_id for row in s.query(OAuthState)} == {rotated.primary_id}
    r = await browser.get(callback)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    with env.hub.db.session() as s:  # what `wedsync vault rotate` reports
        assert Vault(KeyRing([KeyRing.generate_key(), *env.hub.vault.ring.keys]), on_decrypt=lambda _v: None
                     ).reencrypt_counts(s) == {"credentials": 1, "oauth_states": 1}
