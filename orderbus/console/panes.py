"""The console's pages (GET only: nothing here changes anything) and the live stream. Each pane
calls the code the command line calls: ops/timeline.py (`orderbus order --events`),
ops/replay.py (`orderbus replay`), ops/cluster.py (`orderbus status`); the live panes come from
the one gathering loop (live.py) over ops/top_gather.py (`orderbus top`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar, TypeVarTuple

import psycopg2
from aiohttp import web
from confluent_kafka import KafkaException

from orderbus.console.mask import CUSTOMER_FIELDS, mask, masked, payload
from orderbus.console.render import LIVE_PANES
from orderbus.console.state import AUDIT, CONFIG, IDENTITY, LIVE, RENDER, SETTINGS
from orderbus.ops.cluster import status as cluster_status
from orderbus.ops.errors import UsageError, summary
from orderbus.ops.replay import RESET_KINDS, dlq_plan, parse_time
from orderbus.ops.timeline import order_timeline
from topics.catalogue import GROUPS
from topics.redrive import DlqFilter
from workers.participant.store import LEDGERS
from workers.runtime.settings import SettingsError

NAV = (
    ("/", "overview"),
    ("/orders", "order timeline"),
    ("/in-doubt", "in doubt"),
    ("/dead-letters", "dead letters"),
    ("/lag", "consumer lag"),
    ("/stages", "latency & stuck"),
    ("/reset", "offset reset"),
    ("/rebuild", "rebuild"),
    ("/cluster", "cluster"),
    ("/alerts", "alerts"),
    ("/audit", "audit"),
)
LETTERS_SHOWN = 200
# what a pane says instead of its figures when the cluster or a database cannot be read
UNREADABLE = (UsageError, KafkaException, SettingsError, psycopg2.Error)
KEEPALIVE_S = 15.0

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", live_page("overview.html", "Overview", "/", ()))
    router.add_get(
        "/in-doubt",
        live_page("live_page.html", "In-doubt transactions", "/in-doubt", ("in_doubt",)),
    )
    router.add_get(
        "/lag", live_page("live_page.html", "Consumer lag", "/lag", ("groups", "partitions"))
    )
    router.add_get(
        "/stages",
        live_page(
            "live_page.html", "Stage latency and stuck orders", "/stages", ("stages", "stuck")
        ),
    )
    router.add_get("/alerts", live_page("live_page.html", "Firing alerts", "/alerts", ("alerts",)))
    router.add_get("/events", events)
    router.add_get("/orders", find_order)
    router.add_get("/orders/{order_id}", order, name="order")
    router.add_get("/dead-letters", dead_letters)
    router.add_get("/reset", reset)
    router.add_get("/rebuild", rebuild)
    router.add_get("/cluster", cluster)
    router.add_get("/audit", audit)


async def in_executor(func: Callable[[*Ts], T], *args: *Ts) -> T:
    """The synchronous clients (confluent-kafka, psycopg2) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, partial(func, *args))


def can_act(request: web.Request) -> tuple[bool, str]:
    """Whether to offer this user the actions (the server checks again on every POST)."""
    if request.app[CONFIG].read_only:
        return False, "the console is read-only (--read-only)"
    if not request[IDENTITY].operator:
        return False, "actions need the operator role; you are a viewer"
    return True, ""


def page(
    request: web.Request, template: str, title: str, here: str, **context: Any
) -> web.Response:
    settings = request.app[SETTINGS]
    text = request.app[RENDER].page(
        template,
        title=title,
        here=here,
        nav=NAV,
        identity=request[IDENTITY],
        viewer=not request[IDENTITY].operator,
        read_only=request.app[CONFIG].read_only,
        pipeline=settings.prefix.rstrip(".") or "main",
        **context,
    )
    return web.Response(text=text, content_type="text/html")


def live_page(
    template: str, title: str, here: str, panes: tuple[str, ...]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A page of live panes: their latest fragments now, then each new one as it is gathered."""

    async def handler(request: web.Request) -> web.Response:
        latest = request.app[LIVE].latest
        waiting = '<p class="dim">gathering the first look…</p>'
        live = {name: latest.get(name, waiting) for name in LIVE_PANES}
        return page(request, template, title, here, live=live, panes=panes)

    return handler


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each live pane as an event named after it, from the shared loop."""
    live = request.app[LIVE]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    queue = live.subscribe()
    try:
        if live.latest:
            await response.write(sse(live.latest))
        while True:
            try:
                fragments = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if fragments is None:
                break
            await response.write(sse(fragments))
    except ConnectionResetError:
        pass
    finally:
        live.unsubscribe(queue)
    return response


def sse(fragments: dict[str, str]) -> bytes:
    out = []
    for name, text in fragments.items():
        out.append(
            f"event: {name}\n"
            + "".join(f"data: {line}\n" for line in text.splitlines() or [""])
            + "\n"
        )
    return "".join(out).encode()


async def find_order(request: web.Request) -> web.StreamResponse:
    order_id = request.query.get("id", "").strip()
    if order_id:
        raise web.HTTPSeeOther(str(request.app.router["order"].url_for(order_id=order_id)))
    return page(request, "order.html", "Order timeline", "/orders", order_id=None, view=None)


async def order(request: web.Request) -> web.Response:
    order_id = request.match_info["order_id"]
    try:
        view = await in_executor(order_timeline, request.app[SETTINGS], order_id)
    except (psycopg2.Error, KafkaException) as e:
        return page(
            request,
            "order.html",
            "Order timeline",
            "/orders",
            order_id=order_id,
            view=None,
            why=summary(e),
        )
    if view is not None and not request[IDENTITY].operator:
        view = masked_view(view)
    return page(request, "order.html", f"Order {order_id}", "/orders", order_id=order_id, view=view)


def masked_view(view: dict[str, Any]) -> dict[str, Any]:
    """An order as a viewer sees it: its customer masked, in its row and in the ledger keyed by
    customer (payment's holds name the customer whose funds they hold)."""
    out = mask(view)
    by_database = {ledger.database: ledger for ledger in LEDGERS.values()}
    for service, hold in out["participants"].items():
        if hold and by_database[service].key in CUSTOMER_FIELDS:
            out["participants"][service] = {
                **hold,
                "amounts": {masked(k): v for k, v in hold["amounts"].items()},
            }
    return out


async def dead_letters(request: web.Request) -> web.Response:
    q = request.query
    f = {k: q.get(k, "").strip() for k in ("reason", "since", "until", "key", "source")}
    settings = request.app[SETTINGS]
    viewer = not request[IDENTITY].operator
    context: dict[str, Any] = {
        "f": f,
        "letters": [],
        "by_reason": [],
        "sources": [],
        "total": 0,
        "matching": 0,
    }
    try:
        run = await in_executor(dlq_plan, settings, DlqFilter())
        since = parse_time(f["since"]) if f["since"] else None
        until = parse_time(f["until"]) if f["until"] else None
    except UNREADABLE as e:
        context["why"] = summary(e)
        context["topic"] = "the dead-letter topic"
    else:
        chosen = [
            letter
            for letter in run.letters
            if (not f["reason"] or letter.reason == f["reason"])
            and (since is None or letter.timestamp_ms >= since)
            and (until is None or letter.timestamp_ms < until)
            and (not f["key"] or (letter.key or b"").decode("utf-8", "replace") == f["key"])
            and (not f["source"] or letter.source == f["source"])
        ]
        context.update(
            topic=run.topic,
            total=len(run.letters),
            matching=len(chosen),
            by_reason=run.plan.by_reason.most_common(),
            sources=sorted({letter.source for letter in run.letters if letter.source}),
            letters=[
                {
                    "id": letter.id,
                    "at_ms": letter.timestamp_ms,
                    "reason": letter.reason,
                    "source": letter.source,
                    "key": (letter.key or b"").decode("utf-8", "replace"),
                    "count": letter.count(),
                    "whole": letter.whole,
                    "payload": payload(letter.value, viewer),
                }
                for letter in chosen[-LETTERS_SHOWN:][::-1]
            ],
        )
    ok, why_not = can_act(request)
    return page(
        request,
        "dead_letters.html",
        "Dead letters",
        "/dead-letters",
        can_act=ok,
        cannot_act=why_not,
        **context,
    )


async def reset(request: web.Request) -> web.Response:
    names = request.app[SETTINGS].names
    ok, why_not = can_act(request)
    return page(
        request,
        "reset.html",
        "Offset reset",
        "/reset",
        groups=[names.group(w) for w in GROUPS],
        kinds=RESET_KINDS,
        can_act=ok,
        cannot_act=why_not,
    )


async def rebuild(request: web.Request) -> web.Response:
    ok, why_not = can_act(request)
    group = request.app[SETTINGS].names.group("status")
    return page(
        request, "rebuild.html", "Rebuild", "/rebuild", group=group, can_act=ok, cannot_act=why_not
    )


async def cluster(request: web.Request) -> web.Response:
    try:
        st = await in_executor(cluster_status, request.app[SETTINGS])
    except Exception as e:  # what `orderbus status` could not read is the pane's news
        return page(request, "cluster.html", "Cluster health", "/cluster", why=summary(e))
    return page(request, "cluster.html", "Cluster health", "/cluster", st=st)


async def audit(request: web.Request) -> web.Response:
    trail = request.app[AUDIT]
    entries = await in_executor(trail.newest)
    return page(request, "audit.html", "Audit trail", "/audit", entries=entries, path=trail.path)
