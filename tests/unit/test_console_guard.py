"""The console's guard, served by aiohttp's own test server: logging in, cross-site refusal, the
session's CSRF token, the roles and the read-only switch, each checked on the server and written
to the audit trail. The application is the real one; only its gathering loop is left out, and
every request here is answered (or refused) before any cluster would be asked."""

from __future__ import annotations

import asyncio
import json
import re
import stat

import pytest
from aiohttp.test_utils import TestClient, TestServer

from orderbus.console.app import audit_file, make_app
from orderbus.console.auth import OPERATOR, VIEWER, Proxy, Sessions
from orderbus.console.state import PROXY, ConsoleConfig, check
from orderbus.ops.errors import UsageError
from workers.runtime.settings import Settings

SAME = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"ORDERBUS_HOME": str(tmp_path)})


def run(settings, config: ConsoleConfig, scenario):
    """Serves the console on a free loopback port and runs `scenario(client, app)`."""

    async def main():
        app = make_app(settings, config, live=False)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await scenario(client, app)

    return asyncio.run(main())


def token(settings, role: str) -> str:
    return (settings.layout().secrets_dir / f"console-{role}.token").read_text().strip()


async def log_in(client, settings, role: str) -> str:
    """Logs in with the role's token; returns the session's CSRF token from the page."""
    r = await client.post(
        "/login", data={"token": token(settings, role)}, headers=SAME, allow_redirects=False
    )
    assert r.status == 303, await r.text()
    page = await (await client.get("/audit")).text()
    return re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)


def audit(settings) -> list[dict]:
    path = audit_file(settings)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_tokens_are_private_files_and_a_page_needs_a_session(settings):
    async def scenario(client, app):
        r = await client.get("/", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/login")
        r = await client.post("/login", data={"token": "guess"}, headers=SAME)
        assert r.status == 403 and "unknown token" in await r.text()
        r = await client.post("/actions/redrive", data={}, headers=SAME)
        assert r.status == 401

    run(settings, ConsoleConfig(port=0), scenario)
    for role in (OPERATOR, VIEWER):
        mode = (settings.layout().secrets_dir / f"console-{role}.token").stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    assert audit(settings)[-1]["result"] == "refused: unknown token"


@pytest.mark.parametrize(
    "headers, refused",
    [
        ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: cross-site"),
        ({"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: same-site"),
        ({"Origin": "https://evil.example"}, "Origin: https://evil.example"),
        ({"Origin": "null"}, "Origin: null"),
    ],
)
def test_a_cross_site_post_is_refused_before_anything_else(settings, headers, refused):
    async def scenario(client, app):
        csrf = await log_in(client, settings, OPERATOR)
        r = await client.post("/actions/reset", data={"csrf": csrf, "group": "g"}, headers=headers)
        assert r.status == 403
        assert refused in await r.text()

    run(settings, ConsoleConfig(port=0), scenario)
    assert "cross-site request refused" in audit(settings)[-1]["result"]


def test_a_change_without_the_sessions_token_is_refused(settings):
    async def scenario(client, app):
        await log_in(client, settings, OPERATOR)
        r = await client.post("/actions/redrive", data={"mode": "dry-run"}, headers=SAME)
        assert r.status == 403 and "CSRF token" in await r.text()
        r = await client.post(
            "/actions/redrive", data={"mode": "dry-run"}, headers={**SAME, "X-CSRF-Token": "x"}
        )
        assert r.status == 403

    run(settings, ConsoleConfig(port=0), scenario)


def test_a_viewer_may_look_but_every_action_is_refused_on_the_server(settings):
    async def scenario(client, app):
        csrf = await log_in(client, settings, VIEWER)
        page = await (await client.get("/reset")).text()
        assert "actions need the operator role" in page and "disabled" in page
        for path in ("/actions/redrive", "/actions/reset"):
            for mode in ("dry-run", "execute"):
                r = await client.post(path, data={"mode": mode, "csrf": csrf}, headers=SAME)
                assert r.status == 403, path
                assert "needs the operator role" in await r.text()

    run(settings, ConsoleConfig(port=0), scenario)
    refused = [e for e in audit(settings) if e["role"] == VIEWER and e["action"] != "login"]
    assert len(refused) == 4 and all(e["result"].startswith("refused") for e in refused)


def test_the_read_only_switch_refuses_an_operator(settings):
    async def scenario(client, app):
        csrf = await log_in(client, settings, OPERATOR)
        r = await client.post(
            "/actions/reset", data={"mode": "dry-run"}, headers={**SAME, "X-CSRF-Token": csrf}
        )
        assert r.status == 403 and "read-only" in await r.text()

    run(settings, ConsoleConfig(port=0, read_only=True), scenario)


def test_a_loopback_console_answers_to_its_own_name_only(settings):
    async def scenario(client, app):
        r = await client.get("/login", headers={"Host": "rebound.example:8600"})
        assert r.status == 421
        assert (await client.get("/login")).status == 200

    run(settings, ConsoleConfig(port=0), scenario)


def test_pages_forbid_framing_and_foreign_scripts(settings):
    async def scenario(client, app):
        r = await client.get("/login")
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"

    run(settings, ConsoleConfig(port=0), scenario)


def test_behind_a_proxy_only_the_proxys_headers_count(settings):
    def scenario_for(trusted):
        async def scenario(client, app):
            alice = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "staff,orderbus-operators"}
            r = await client.get("/audit", headers=alice)
            return r.status, await r.text()

        return run(
            settings,
            ConsoleConfig(port=0, auth=PROXY, auth_explicit=True, proxy=Proxy(trusted)),
            scenario,
        )

    status, page = scenario_for(("127.0.0.0/8",))
    assert status == 200 and "alice" in page and "operator" in page
    status, _ = scenario_for(("10.0.0.1",))  # the request did not come through the proxy
    assert status == 401


def test_another_address_needs_authentication_set():
    with pytest.raises(UsageError, match="refusing to listen on 0.0.0.0"):
        check(ConsoleConfig(host="0.0.0.0"))
    with pytest.raises(UsageError, match="--trusted-proxy"):
        check(ConsoleConfig(host="0.0.0.0", auth=PROXY, auth_explicit=True))
    check(ConsoleConfig(host="0.0.0.0", auth=PROXY, auth_explicit=True, proxy=Proxy(("10.0.0.1",))))
    check(ConsoleConfig(host="::1"))


def test_a_session_cookie_cannot_be_forged_or_outlive_its_age():
    sessions = Sessions(b"k" * 32)
    cookie, identity = sessions.issue("operator token", OPERATOR)
    assert sessions.read(cookie) == identity
    payload, _, mac = cookie.rpartition(".")
    assert sessions.read(payload + "." + "0" * len(mac)) is None
    assert Sessions(b"other" * 8).read(cookie) is None
    assert Sessions(b"k" * 32, max_age_s=-1).read(cookie) is None
