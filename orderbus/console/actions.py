"""Everything that changes state, each a POST: logging in and out, re-driving dead letters,
resetting a stopped group's offsets, rebuilding the status read model. The guard (app.py) has
already refused cross-site requests and a missing CSRF token; each action here checks the
read-only switch and the operator role itself, plans with the same code as `orderbus replay`,
names the plan by its hash (plans.py), executes only the plan named, and appends what it did or
refused to the audit trail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from orderbus.console.auth import COOKIE, OPERATOR, role_of_token
from orderbus.console.panes import UNREADABLE, in_executor
from orderbus.console.plans import rebuild_id, redrive_id, reset_id
from orderbus.console.state import (
    AUDIT,
    CONFIG,
    IDENTITY,
    PATHS,
    RENDER,
    SESSIONS,
    SETTINGS,
    TOKENS,
    set_cookie,
)
from orderbus.ops.errors import UsageError, summary
from orderbus.ops.replay import (
    RESET_KINDS,
    dlq_execute,
    dlq_plan,
    parse_time,
    reset_effect,
    reset_execute,
    reset_plan,
    status_rebuild,
)
from topics.group_reset import ResetSpec
from topics.redrive import DlqFilter
from workers.status.rebuild import Comparison

REDRIVE_FIELDS = ("reason", "since", "until", "limit", "max_replays")
RESET_FIELDS = ("group", "kind", "value", "topics")


def routes(router: web.UrlDispatcher) -> None:
    router.add_get("/login", login_form)
    router.add_post("/login", login)
    router.add_post("/logout", logout)
    router.add_post("/actions/redrive", redrive)
    router.add_post("/actions/reset", reset)
    router.add_post("/actions/rebuild", rebuild)


# -- session ---------------------------------------------------------------------------------


def login_page(request: web.Request, why: str = "", status: int = 200) -> web.Response:
    paths = request.app[PATHS]
    nxt = request.query.get("next", "/")
    text = request.app[RENDER].page(
        "login.html",
        why=why,
        next=nxt,
        operator_path=paths.get(OPERATOR, "-"),
        viewer_path=paths.get("viewer", "-"),
    )
    return web.Response(text=text, content_type="text/html", status=status)


async def login_form(request: web.Request) -> web.Response:
    return login_page(request)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    role = role_of_token(request.app[TOKENS], str(form.get("token", "")))
    if role is None:
        request.app[AUDIT].append(
            "-", "-", "login", {"from": request.remote}, "refused: unknown token"
        )
        return login_page(request, "unknown token", status=403)
    cookie, identity = request.app[SESSIONS].issue(f"{role} token", role)
    request.app[AUDIT].append(identity.user, role, "login", {"from": request.remote}, "ok")
    nxt = str(form.get("next") or "/")
    response = web.HTTPSeeOther(nxt if nxt.startswith("/") and not nxt.startswith("//") else "/")
    set_cookie(response, cookie, request)
    return response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    return response


# -- the operator's actions ------------------------------------------------------------------


def refusal(request: web.Request, action: str, params: dict[str, str]) -> web.Response | None:
    """The read-only switch and the role, checked on the server for every action."""
    identity = request[IDENTITY]
    why = None
    if request.app[CONFIG].read_only:
        why = "refused: the console is read-only"
    elif not identity.operator:
        why = f"refused: {action} needs the operator role ({identity.user} is a {identity.role})"
    if why is None:
        return None
    request.app[AUDIT].append(identity.user, identity.role, action, params, why)
    return message(request, why, 403)


def message(request: web.Request, text: str, status: int = 200, kind: str = "bad") -> web.Response:
    body = request.app[RENDER].page("message.html", text=text, kind=kind)
    return web.Response(text=body, content_type="text/html", status=status)


def done(
    request: web.Request,
    action: str,
    params: dict[str, str],
    result: str,
    plan: str | None = None,
) -> None:
    identity = request[IDENTITY]
    request.app[AUDIT].append(identity.user, identity.role, action, params, result, plan)


@dataclass(frozen=True)
class Asked:
    params: dict[str, str]
    execute: bool
    action: str  # "redrive dry run", "reset execute", ...
    named: str  # the plan an execution names


ActionHandler = Callable[[web.Request, Asked], Awaitable[web.Response]]
Handler = Callable[[web.Request], Awaitable[web.Response]]


def operator_action(name: str, fields: tuple[str, ...]) -> Callable[[ActionHandler], Handler]:
    """An operator's action: its form's fields read, the read-only switch and the role checked
    (and a refusal audited) before the handler runs."""

    def wrap(handler: ActionHandler) -> Handler:
        async def checked(request: web.Request) -> web.Response:
            form = await request.post()
            params = {k: str(form.get(k, "")).strip() for k in fields}
            execute = form.get("mode") == "execute"
            asked = Asked(
                params,
                execute,
                f"{name} " + ("execute" if execute else "dry run"),
                str(form.get("plan", "")),
            )
            refused = refusal(request, asked.action, params)
            return refused if refused is not None else await handler(request, asked)

        return checked

    return wrap


@operator_action("redrive", REDRIVE_FIELDS)
async def redrive(request: web.Request, asked: Asked) -> web.Response:
    params, execute, action, named = asked.params, asked.execute, asked.action, asked.named
    settings = request.app[SETTINGS]
    try:
        f = DlqFilter(
            params["reason"] or None,
            parse_time(params["since"]) if params["since"] else None,
            parse_time(params["until"]) if params["until"] else None,
            _number(params["limit"], "limit"),
            _number(params["max_replays"], "max replays") or 3,
        )
        run = await in_executor(dlq_plan, settings, f)
    except UNREADABLE as e:
        done(request, action, params, f"refused: {summary(e)}")
        return message(request, summary(e), 409)
    plan = redrive_id(params, run)
    context: dict[str, Any] = {
        "run": run,
        "params": params,
        "plan_id": plan,
        "targets": sorted(run.targets().items()),
    }
    if execute:
        if (stale := _stale(request, action, params, plan, named)) is not None:
            return stale
        acked, errors = await in_executor(dlq_execute, settings, run)
        done(
            request,
            action,
            params,
            f"re-published {acked} of {len(run.plan.selected)}, {len(errors)} errors",
            plan,
        )
        context.update(executed=True, acked=acked, errors=errors)
    else:
        done(
            request,
            action,
            params,
            f"planned: {len(run.plan.selected)} to re-publish, {len(run.plan.parked)} parked",
            plan,
        )
    return web.Response(
        text=request.app[RENDER].page("redrive_plan.html", **context), content_type="text/html"
    )


@operator_action("reset", RESET_FIELDS)
async def reset(request: web.Request, asked: Asked) -> web.Response:
    params, execute, action, named = asked.params, asked.execute, asked.action, asked.named
    settings = request.app[SETTINGS]
    try:
        spec = _spec(params["kind"], params["value"])
        plans = await in_executor(
            reset_plan, settings, params["group"], spec, params["topics"].split() or None
        )
    except UNREADABLE as e:
        done(request, action, params, f"refused: {summary(e)}")
        return message(request, f"refused: {summary(e)}", 409)
    plan = reset_id(params, plans)
    context: dict[str, Any] = {
        "plans": plans,
        "params": params,
        "plan_id": plan,
        "effect": reset_effect(settings, params["group"], plans),
    }
    if execute:
        if (stale := _stale(request, action, params, plan, named)) is not None:
            return stale
        try:
            await in_executor(reset_execute, settings, params["group"], plans)
        except UNREADABLE as e:
            done(request, action, params, f"refused: {summary(e)}", plan)
            return message(request, f"refused: {summary(e)}", 409)
        done(request, action, params, f"committed {len(plans)} offsets", plan)
        context["executed"] = True
    else:
        done(request, action, params, f"planned: {len(plans)} partitions", plan)
    return web.Response(
        text=request.app[RENDER].page("reset_plan.html", **context), content_type="text/html"
    )


class PlanChanged(Exception):
    def __init__(self, plan: str):
        super().__init__(plan)
        self.plan = plan


@operator_action("rebuild status", ())
async def rebuild(request: web.Request, asked: Asked) -> web.Response:
    params, execute, action, named = asked.params, asked.execute, asked.action, asked.named

    # shown the comparison under the writers' lock, before the swap
    def same_plan(c: Comparison) -> None:
        if rebuild_id(params, c) != named:
            raise PlanChanged(rebuild_id(params, c))

    try:
        r = await in_executor(status_rebuild, request.app[SETTINGS], execute, same_plan)
    except PlanChanged as e:
        return _refuse_stale(request, action, params, e.plan, named)
    except UNREADABLE as e:
        done(request, action, params, f"refused: {summary(e)}")
        return message(request, f"refused: {summary(e)}", 409)
    c = r.comparison
    plan = rebuild_id(params, c)
    differ = c.only_live + c.only_rebuilt + c.different
    counts = f"{c.rebuilt} rows rebuilt against {c.live} live, {differ} differ"
    done(request, action, params, ("swapped: " if r.swapped else "planned: ") + counts, plan)
    return web.Response(
        text=request.app[RENDER].page("rebuild_plan.html", r=r, c=c, params=params, plan_id=plan),
        content_type="text/html",
    )


def _stale(
    request: web.Request, action: str, params: dict[str, str], plan: str, named: str
) -> web.Response | None:
    """Refuses an execution whose plan is not the one the dry run showed."""
    return None if named == plan else _refuse_stale(request, action, params, plan, named)


def _refuse_stale(
    request: web.Request, action: str, params: dict[str, str], plan: str, named: str
) -> web.Response:
    why = (
        f"refused: the plan changed since the dry run ({named or 'none named'} then, {plan} "
        "now): dry run again"
    )
    done(request, action, params, why, plan)
    return message(request, why, 409)


def _number(text: str, what: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise UsageError(f"{what} {text!r} is not a positive whole number")
    return int(text)


def _spec(kind: str, value: str) -> ResetSpec:
    if kind not in RESET_KINDS:
        raise UsageError(f"unknown reset {kind!r}: one of {', '.join(RESET_KINDS)}")
    if kind in ("to-earliest", "to-latest"):
        return ResetSpec(kind)
    if not value:
        raise UsageError(f"{kind} needs a value")
    if kind == "to-datetime":
        return ResetSpec(kind, parse_time(value))
    try:
        return ResetSpec(kind, int(value))
    except ValueError:
        raise UsageError(f"{kind} needs a whole number, not {value!r}") from None
