"""The operator's console in a real browser: Debian's chromium, headless, driven by Playwright,
against `orderbus console` started as an operator starts it, over a sandbox pipeline on the
shared cluster. An order's timeline; a dead letter re-driven through dry run and execute (and a
stale plan refused); a lost status row brought back by a rebuild, refused while the status worker
runs; a viewer's POST, a cross-site POST and a reset of a running group refused;
the live panes updating without a reload. A screenshot of each pane is kept in
tests/artifacts/console/ (git-ignored)."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
from confluent_kafka import Producer
from pipeline import order

from orderbus.console.app import audit_file
from topics.catalogue import (
    DLQ_AT_MS,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TOPIC,
    DLQ_WORKER,
    ORDERS_DLQ,
    ORDERS_STATUS,
)
from topics.producer import OrderPublisher
from workers.status.store import DATABASE as STATUS_DATABASE
from workers.status.store import LIVE, status_of

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
WAIT_MS = 60_000  # the longest any page or element is waited for
START_S = 60.0

if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (make install puts it in as root)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api")
sync_api.expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def console(pipe, settings):
    """`orderbus console` on a free loopback port, over the sandbox pipeline: its URL."""
    env = {**os.environ, **pipe.env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orderbus", "console", "--bind", "127.0.0.1:0", "--interval", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    url = _url(proc, lines)
    # never a full pipe
    drain = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    drain.start()
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    drain.join(timeout=5)
    proc.stdout.close()
    assert proc.returncode == 0, "".join(lines[-30:])
    audit_file(pipe.settings).unlink(missing_ok=True)
    (settings.home / "replay" / f"{pipe.settings.names.topic(ORDERS_DLQ)}.jsonl").unlink(
        missing_ok=True
    )


def _url(proc: subprocess.Popen, lines: list[str]) -> str:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"(http://127\.0\.0\.1:\d+)/", line):
            return m.group(1)
    proc.kill()
    raise AssertionError("the console did not say where it listens:\n" + "".join(lines))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


def signed_in(browser, url: str, settings, role: str):
    """A page of a fresh browser context, logged in with the role's token."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(url + "/")
    assert "/login" in page.url
    page.fill(
        "input[name=token]",
        (settings.layout().secrets_dir / f"console-{role}.token").read_text().strip(),
    )
    page.click("text=log in")
    page.wait_for_url(url + "/")
    return page


@pytest.fixture(scope="module")
def operator(browser, console, settings):
    page = signed_in(browser, console, settings, "operator")
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def viewer(browser, console, settings):
    page = signed_in(browser, console, settings, "viewer")
    yield page
    page.context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def expect(locator):
    return sync_api.expect(locator)


def test_an_orders_timeline_shows_its_events_and_final_status(pipe, console, operator, viewer):
    pipe.stock(**{"cb-sku": 10})
    pipe.account(**{"cb-customer": 10_000})
    pipe.publish(order("cb-1", "cb-customer", ("cb-sku", 2, 250)))
    pipe.wait_final(["cb-1"])
    operator.goto(console + "/orders")
    operator.fill("input[name=id]", "cb-1")
    operator.click("text=show")
    expect(operator.locator("#final-status")).to_have_text("SHIPPED")
    events = operator.locator("#events")
    for kind in (
        "OrderPlaced",
        "TxBegun",
        "Prepare",
        "Voted",
        "Decided",
        "Commit",
        "Acked",
        "StatusChanged",
    ):
        expect(events).to_contain_text(kind)
    expect(events).to_contain_text("status=SHIPPED")
    expect(operator.locator("#rows")).to_contain_text("committed, voted yes")
    expect(operator.locator("#order")).to_contain_text("cb-customer")
    shot(operator, "order-timeline")
    viewer.goto(console + "/orders/cb-1")  # the permalink
    expect(viewer.locator("#final-status")).to_have_text("SHIPPED")
    assert "cb-customer" not in viewer.content()  # masked for a viewer


def dead_letter(pipe, oid: str, reason: str) -> None:
    """A valid order as an older intake refused it: the fix is deployed, it may be re-driven."""
    value, headers, _ = OrderPublisher.encode(order(oid, "cb-customer", ("cb-sku", 1, 100)))
    headers += [
        (DLQ_REASON, reason.encode()),
        (DLQ_TOPIC, pipe.placed.encode()),
        (DLQ_PARTITION, b"0"),
        (DLQ_OFFSET, str(uuid.uuid4().int % 10**9).encode()),
        (DLQ_WORKER, b"intake"),
        (DLQ_AT_MS, str(int(time.time() * 1000)).encode()),
    ]
    producer = Producer(pipe.settings.kafka(**{"acks": "all"}))
    producer.produce(
        pipe.settings.names.topic(ORDERS_DLQ), key=oid.encode(), value=value, headers=headers
    )
    assert producer.flush(30) == 0


def dry_run(page, reason: str) -> str:
    page.select_option("#redrive select[name=reason]", reason)
    page.click("#redrive button")
    expect(page.locator("#redrive-plan")).to_be_visible()
    return page.locator("#plan-id").inner_text()


def test_a_dead_letter_is_redriven_through_dry_run_then_execute_and_ships(pipe, console, operator):
    reason = "cb_old_intake"
    dead_letter(pipe, "cb-dl-1", reason)
    operator.goto(console + f"/dead-letters?reason={reason}")
    expect(operator.locator("#letters")).to_contain_text("cb-dl-1")
    first = dry_run(operator, reason)
    expect(operator.locator("#redrive-plan")).to_contain_text("to re-publish 1")
    expect(operator.locator("#redrive-plan")).to_contain_text("loop guard")
    shot(operator, "dead-letters")

    dead_letter(pipe, "cb-dl-2", reason)  # arrives between the dry run and its execution
    operator.click("#execute")
    expect(operator.locator("#message")).to_contain_text("the plan changed since the dry run")
    assert pipe.statuses(["cb-dl-1", "cb-dl-2"]) == {}  # nothing was re-published

    second = dry_run(operator, reason)
    assert second != first
    expect(operator.locator("#redrive-plan")).to_contain_text("to re-publish 2")
    operator.click("#execute")
    expect(operator.locator("#redrive-result")).to_contain_text("re-published 2 of 2")
    shot(operator, "dead-letters-executed")
    assert {o: s[0] for o, s in pipe.wait_final(["cb-dl-1", "cb-dl-2"]).items()} == {
        "cb-dl-1": "SHIPPED",
        "cb-dl-2": "SHIPPED",
    }
    operator.goto(console + "/orders/cb-dl-1")
    expect(operator.locator("#final-status")).to_have_text("SHIPPED")
    operator.goto(console + "/audit")
    audit = operator.locator("#audit")
    expect(audit).to_contain_text("redrive execute")
    expect(audit).to_contain_text("re-published 2 of 2")
    expect(audit).to_contain_text("refused: the plan changed")
    shot(operator, "audit")


def test_a_viewers_post_is_refused_by_the_server(console, viewer):
    viewer.goto(console + "/dead-letters")
    expect(viewer.locator("#redrive button")).to_be_disabled()
    # the button is disabled, so send what it would: the page's own POST with its CSRF token
    answer = viewer.evaluate(
        """async () => {
            const csrf = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
            const r = await fetch('/actions/redrive', {method: 'POST',
                                  headers: {'X-CSRF-Token': csrf},
                                  body: new URLSearchParams({mode: 'execute', reason: ''})});
            return [r.status, await r.text()];
        }"""
    )
    assert answer[0] == 403 and "needs the operator role" in answer[1], answer


class _Evil(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self):
        body = (
            f'<form id="f" method="post" action="{self.target}/actions/reset">'
            '<input name="group" value="x"><input name="kind" value="to-earliest">'
            '<input name="mode" '
            'value="execute"></form><script>document.getElementById("f").submit()</script>'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_cross_site_post_is_refused(console, operator):
    _Evil.target = console
    server = http.server.HTTPServer(("127.0.0.1", 0), _Evil)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # another site (localhost is not 127.0.0.1) whose page posts to the console on load
        operator.goto(f"http://localhost:{server.server_port}/")
        operator.wait_for_url(console + "/actions/reset")
        expect(operator.locator("body")).to_contain_text(
            "cross-site request refused (Sec-Fetch-Site: cross-site)"
        )
    finally:
        server.shutdown()
        server.server_close()


def once_stopped(page, act, wanted: str, within_s: float = 60.0):
    """Repeats `act` until it answers with the element `wanted` rather than a refusal (#message):
    a stopped group member stays listed until its session ends. The answer."""
    deadline = time.monotonic() + within_s
    while True:
        act()
        answer = page.locator(f"#{wanted}, #message").first
        expect(answer).to_be_visible()
        if answer.get_attribute("id") == wanted:
            return answer
        assert time.monotonic() < deadline, answer.inner_text()
        time.sleep(1)


def test_an_offset_reset_of_a_group_with_members_is_refused(pipe, console, operator):
    operator.goto(console + "/reset")
    operator.select_option("#reset select[name=group]", pipe.settings.names.group("intake"))
    operator.select_option("#reset select[name=kind]", "to-earliest")
    operator.click("#reset button")
    expect(operator.locator("#message")).to_contain_text("active member(s)")
    expect(operator.locator("#message")).to_contain_text("stop them before you reset its offsets")
    shot(operator, "offset-reset")


def test_a_stopped_groups_offsets_are_reset_through_dry_run_then_execute(pipe, console, operator):
    shipping = [c for c in pipe.sup.children if c.name == "shipping"]
    for child in shipping:
        pipe.sup.hold(child)
    try:
        operator.goto(console + "/reset")
        operator.select_option("#reset select[name=group]", pipe.settings.names.group("shipping"))
        operator.select_option("#reset select[name=kind]", "to-latest")
        answer = once_stopped(operator, lambda: operator.click("#reset button"), "reset-plan")
        expect(answer).to_contain_text(pipe.settings.names.topic(ORDERS_STATUS))
        shot(operator, "offset-reset-plan")
        operator.click("#execute")
        expect(operator.locator("#reset-result")).to_contain_text("committed")
    finally:
        for child in shipping:
            pipe.sup.release(child)


def test_a_lost_status_row_comes_back_by_a_rebuild_through_dry_run_then_execute(
    pipe, console, operator
):
    pipe.publish(order("cb-rebuild", "cb-customer", ("cb-sku", 1, 100)))
    pipe.wait_final(["cb-rebuild"])
    operator.goto(console + "/rebuild")
    operator.click("#rebuild button")
    expect(operator.locator("#rebuild-plan")).to_contain_text("is running")
    operator.click("#execute")  # the status worker still runs: its rows would be lost to the swap
    expect(operator.locator("#message")).to_contain_text(
        "stop them before you swap the status table"
    )

    statuses = [c for c in pipe.sup.children if c.name == "status"]
    for child in statuses:
        pipe.sup.hold(child)
    try:
        with psycopg2.connect(pipe.settings.dsns[STATUS_DATABASE]) as conn, conn.cursor() as cur:
            final = status_of(cur, "cb-rebuild")
            cur.execute(f"DELETE FROM {LIVE} WHERE order_id = 'cb-rebuild'")
            assert cur.rowcount == 1

        def dry_run_then_execute():
            operator.goto(console + "/rebuild")
            operator.click("#rebuild button")
            expect(operator.locator("#rebuild-plan")).to_contain_text("cb-rebuild")  # only rebuilt
            shot(operator, "rebuild-plan")
            operator.click("#execute")

        answer = once_stopped(operator, dry_run_then_execute, "rebuild-result")
        expect(answer).to_contain_text("swapped")
        with psycopg2.connect(pipe.settings.dsns[STATUS_DATABASE]) as conn, conn.cursor() as cur:
            assert status_of(cur, "cb-rebuild") == final
    finally:
        for child in statuses:
            pipe.sup.release(child)


def test_an_in_doubt_transaction_shows_what_happens_next(pipe, console, operator):
    coordinators = [c for c in pipe.sup.children if c.name == "coordinator"]
    for child in coordinators:
        pipe.sup.hold(child)
    try:
        pipe.publish(order("cb-doubt", "cb-customer", ("cb-sku", 1, 100)))
        operator.goto(console + "/in-doubt")
        table = operator.locator("#in-doubt")
        expect(table).to_contain_text("cb-doubt")  # arrives over the event stream
        expect(table).to_contain_text("inventory")
        shot(operator, "in-doubt")
    finally:
        for child in coordinators:
            pipe.sup.release(child)
    pipe.wait_final(["cb-doubt"])


@pytest.mark.parametrize(
    "path, name, shows",
    [
        ("/", "overview", "Consumer lag"),
        ("/lag", "consumer-lag", "Per partition"),
        ("/stages", "latency-and-stuck", "stage latency and stuck orders"),
        ("/cluster", "cluster", "Topics against the catalogue"),
        ("/alerts", "alerts", "Prometheus"),
    ],
)
def test_each_live_pane_renders_and_updates_without_a_reload(
    pipe, console, operator, path, name, shows
):
    operator.goto(console + path)
    if path != "/cluster":
        stamp = operator.locator("[sse-swap=stamp]").first
        expect(stamp).not_to_have_text("")
        before = stamp.inner_text()
        expect(stamp).not_to_have_text(before)  # a new round arrived over SSE, same page
    if path in ("/", "/lag"):
        expect(operator.locator("#groups")).to_contain_text(pipe.settings.names.group("intake"))
    shot(operator, name)
    assert shows.lower() in operator.content().lower()
