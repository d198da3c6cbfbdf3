"""The coordinators' console: volunteers and their handsets, shift actions, edits, the dialplan.

Pages are rendered here (no JavaScript needed); every value is HTML-escaped. Each form carries
the session's CSRF token (the login form a cookie-bound one); each change is written behind as
an event naming the account that made it. Coordinators pause, resume and log out volunteers;
admins also edit them, enable or disable them and reload the dialplan.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from html import escape
from typing import Any

import structlog
from aiohttp import web

from pbx.db.events import event_op
from pbx.db.persistence import Persistence
from pbx.db.volunteers import VolunteerError, VolunteerRepository
from pbx.directory import Directory
from pbx.sip.peer import TransportKind
from pbx.sip.registrar import Registrar
from pbx.web.accounts import Account, AccountRepository, Role
from pbx.web.dialplan_view import CheckResult, DialplanView
from pbx.web.guard import LoginThrottle, Session, Sessions
from queues.dispatcher import Dispatcher
from queues.roster import Roster, RosterError, VolunteerState

log = structlog.get_logger("pbx.web.console")

SESSION_COOKIE = "helpline_console"
LOGIN_COOKIE = "helpline_login"  # the login form's CSRF token (double submit)
SHIFT_ACTIONS = ("pause", "resume", "logout")  # coordinators and admins
ADMIN_ACTIONS = ("edit", "enable", "disable")
MAX_PASSWORD_CHECKS = 2
LOGOUT_NOW = (VolunteerState.AVAILABLE, VolunteerState.WRAP_UP, VolunteerState.PAUSED)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Console:
    def __init__(
        self,
        *,
        roster: Roster,
        dispatcher: Dispatcher,
        registrar: Registrar,
        directory: Directory,
        persistence: Persistence,
        dialplan: DialplanView,
        sessions: Sessions,
        throttle: LoginThrottle,
        secure_cookies: bool,
    ) -> None:
        self.roster = roster
        self.dispatcher = dispatcher  # kicked after a shift change: matches and writes it down
        self.registrar = registrar
        self.directory = directory
        self.persistence = persistence
        self.dialplan = dialplan
        self.sessions = sessions
        self.throttle = throttle
        self.secure_cookies = secure_cookies  # served over TLS (or behind a TLS proxy)
        # each argon2 check takes 64 MiB and a core for a while: a few at a time, the rest wait
        self._checking = asyncio.Semaphore(MAX_PASSWORD_CHECKS)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/console/login", self._login_page)
        router.add_post("/console/login", self._login)
        router.add_post("/console/logout", self._logout)
        router.add_get("/console", self._signed_in(self._volunteers_page))
        router.add_post("/console/volunteers/{name}/{action}", self._signed_in(self._act))
        router.add_get("/console/dialplan", self._signed_in(self._dialplan_page))
        router.add_get("/console/dialplan.svg", self._signed_in(self._diagram))
        router.add_post("/console/dialplan/reload", self._signed_in(self._reload))

    # --- sessions ----------------------------------------------------------------------------
    def _signed_in(
        self, handler: Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
    ) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            session = self.sessions.get(request.cookies.get(SESSION_COOKIE), time.monotonic())
            if session is None:
                raise web.HTTPSeeOther("/console/login")
            if request.method == "POST":
                form = await request.post()
                token = form.get("csrf")
                if not session.csrf_ok(token if isinstance(token, str) else None):
                    raise web.HTTPForbidden(text="the form has expired: reload the page")
            return await handler(request, session)

        return wrapped

    def _cookie(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookies,
            path="/console",
        )

    async def _login_page(
        self, request: web.Request, message: str = "", status: int = 200
    ) -> web.Response:
        token = secrets.token_urlsafe(24)
        body = f"""<h1>Helpline console</h1>{_message(message)}
<form method="post" action="/console/login" class="login">
<input type="hidden" name="csrf" value="{token}">
<label>Username <input name="username" id="username" autocomplete="username" required></label>
<label>Password <input name="password" id="password" type="password"
 autocomplete="current-password" required></label>
<button type="submit" id="login">Log in</button></form>"""
        response = _page("Log in", body, status)
        self._cookie(response, LOGIN_COOKIE, token)
        return response

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))
        token, expected = str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(token, expected):
            return await self._login_page(request, "The form has expired: try again.", 403)
        source = request.remote or "?"
        wait = self.throttle.wait(source, username, time.monotonic())
        if wait > 0:
            log.warning("console_login_throttled", account=username, wait=round(wait))
            return await self._login_page(
                request, f"Too many failed logins: try again in {int(wait) + 1} s.", 429
            )
        account = await self._authenticate(username, password[:1024])
        if account is None:
            self.throttle.failed(source, username, time.monotonic())
            log.warning("console_login_failed", account=username)
            return await self._login_page(request, "Wrong username or password.", 401)
        self.throttle.succeeded(source, username)
        session = self.sessions.start(account, time.monotonic())
        self._event("console.login", account, {})
        response = web.HTTPSeeOther("/console")
        self._cookie(response, SESSION_COOKIE, session.id)
        response.del_cookie(LOGIN_COOKIE, path="/console")
        raise response

    async def _authenticate(self, username: str, password: str) -> Account | None:
        db = self.persistence.db
        if db is None:  # accounts live in the database: no login while it is away
            return None
        async with self._checking:
            return await AccountRepository(db.pool).authenticate(username, password)

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE), time.monotonic())
        form = await request.post()
        token = form.get("csrf")
        if session is not None and session.csrf_ok(token if isinstance(token, str) else None):
            self.sessions.end(session.id)
        response = web.HTTPSeeOther("/console/login")
        response.del_cookie(SESSION_COOKIE, path="/console")
        raise response

    # --- volunteers ----------------------------------------------------------------------------
    async def _volunteers_page(
        self, request: web.Request, session: Session, message: str = "", status: int = 200
    ) -> web.Response:
        rows = [self._row(v, session) for v in await self._volunteers()]
        body = f"""{_nav(session)}<h1>Volunteers</h1>{_message(message)}
<table id="volunteers"><thead><tr><th>Volunteer</th><th>State</th><th>Languages</th>
<th>Skills</th><th>Region</th><th>Handsets</th><th>Account</th><th>Actions</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>"""
        return _page("Volunteers", body, status)

    async def _volunteers(self) -> list[dict[str, Any]]:
        """From the database when it answers (disabled volunteers too), else from memory."""
        db = self.persistence.db
        if db is not None:
            try:
                listed = await VolunteerRepository(db.pool).list()
                return [
                    {
                        "username": v.username,
                        "languages": v.languages,
                        "skills": v.skills,
                        "region": v.region,
                        "disabled": v.disabled,
                    }
                    for v in listed
                ]
            except Exception as exc:
                log.warning("console_list_from_memory", error=type(exc).__name__)
        return [
            {
                "username": p.username,
                "languages": p.languages,
                "skills": p.skills,
                "region": p.region,
                "disabled": False,
            }
            for p in sorted(self.directory.profiles.values(), key=lambda p: p.username)
        ]

    def _row(self, v: dict[str, Any], session: Session) -> str:
        name = v["username"]
        state = self.roster.get(name).state if name in self.roster else VolunteerState.LOGGED_OUT
        now = time.time()
        handsets = [
            f"{'registered' if b.expires_at > now else 'expired'} · {b.source.transport.value}"
            f" · {'encrypted' if b.source.transport is TransportKind.TLS else 'not encrypted'}"
            for b in self.registrar.contacts(name, now)
        ] or ["not registered"]
        csrf = escape(session.csrf)
        base = f"/console/volunteers/{escape(name)}"

        def button(action: str, label: str) -> str:
            return (
                f'<form method="post" action="{base}/{action}" class="inline">'
                f'<input type="hidden" name="csrf" value="{csrf}">'
                f'<button type="submit" name="do" value="{action}">{label}</button></form>'
            )

        actions = [button(a, a.capitalize()) for a in SHIFT_ACTIONS]
        fields = ""
        if session.account.role is Role.ADMIN:
            toggle = "enable" if v["disabled"] else "disable"
            actions.append(button(toggle, toggle.capitalize()))
            values = {
                "languages": ",".join(v["languages"]),
                "skills": ",".join(v["skills"]),
                "region": v["region"] or "",
            }
            inputs = "".join(
                f'<input name="{k}" placeholder="{k}" title="{k}" value="{escape(x)}" size="10">'
                for k, x in values.items()
            )
            fields = (
                f'<form method="post" action="{base}/edit" class="edit">'
                f'<input type="hidden" name="csrf" value="{csrf}">{inputs}'
                '<button type="submit">Save</button></form>'
            )
        return (
            f'<tr id="v-{escape(name)}"><td>{escape(name)}</td>'
            f'<td class="state {state.value}">{state.value.replace("_", " ")}</td>'
            f'<td class="languages">{escape(", ".join(v["languages"]))}</td>'
            f'<td class="skills">{escape(", ".join(v["skills"]))}</td>'
            f'<td class="region">{escape(v["region"] or "")}</td>'
            f'<td class="handsets">{"<br>".join(escape(h) for h in handsets)}</td>'
            f'<td class="account">{"disabled" if v["disabled"] else "enabled"}</td>'
            f"<td>{''.join(actions)}{fields}</td></tr>"
        )

    async def _act(self, request: web.Request, session: Session) -> web.StreamResponse:
        name, action = request.match_info["name"], request.match_info["action"]
        if action not in SHIFT_ACTIONS + ADMIN_ACTIONS:
            raise web.HTTPNotFound()
        if action in ADMIN_ACTIONS and session.account.role is not Role.ADMIN:
            return await self._volunteers_page(request, session, "Only an admin may do that.", 403)
        form = await request.post()
        try:
            detail = await self._apply(name, action, {k: str(v) for k, v in form.items()})
        except (RosterError, VolunteerError, KeyError) as exc:
            return await self._volunteers_page(
                request, session, f"{name}: {action} refused: {exc}", 409
            )
        self._event(f"console.volunteer_{action}", session.account, {"volunteer": name, **detail})
        return await self._volunteers_page(request, session, f"{name}: {action} done.")

    async def _apply(self, name: str, action: str, form: dict[str, str]) -> dict[str, Any]:
        now = time.time()
        if action in SHIFT_ACTIONS:
            if name not in self.roster:
                raise RosterError("not on shift")
            if action == "pause":
                self.roster.pause(name, now, reason="coordinator")
            elif action == "resume":
                self.roster.resume(name, now)
            else:
                self.roster.logout(name, now, reason="coordinator")
            self.dispatcher.kick()  # matches again and writes the change behind
            return {}
        db = self.persistence.db
        if db is None:
            raise VolunteerError("the database is unavailable")
        repo = VolunteerRepository(db.pool)
        detail: dict[str, Any] = {}
        if action == "edit":
            languages = [x for x in form.get("languages", "").split(",") if x.strip()]
            skills = [x for x in form.get("skills", "").split(",") if x.strip()]
            region = form.get("region", "").strip() or None
            await repo.set_languages(name, languages)
            await repo.set_skills(name, skills)
            v = await repo.set_region(name, region)
            detail = {"languages": list(v.languages), "skills": list(v.skills), "region": v.region}
        elif action == "enable":
            await repo.enable(name)
        else:
            await repo.disable(name)
            if name in self.roster and self.roster.get(name).state in LOGOUT_NOW:
                self.roster.logout(name, now, reason="disabled")
                self.dispatcher.kick()
        await self.directory.load(db.pool)  # the registrar and new shifts see it at once
        return detail

    # --- the dialplan ----------------------------------------------------------------------------
    async def _dialplan_page(
        self, request: web.Request, session: Session, result: CheckResult | None = None
    ) -> web.Response:
        report = ""
        if result is not None:
            verdict = "Loaded." if result.loaded else "Not loaded: the running plan stays."
            lines = "\n".join(escape(m) for m in result.messages)
            report = (
                f'<div id="check" class="{"ok" if result.loaded else "error"}">'
                f'<p>{verdict}</p><pre id="messages">{lines}</pre></div>'
            )
        reload_form = ""
        if session.account.role is Role.ADMIN:
            reload_form = (
                '<form method="post" action="/console/dialplan/reload">'
                f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'
                '<button type="submit" id="reload">Check and reload</button></form>'
            )
        body = f"""{_nav(session)}<h1>Dialplan</h1>
<p>File <code>{escape(str(self.dialplan.plans.path))}</code>, version in force
<code id="version">{self.dialplan.version()}</code></p>{reload_form}{report}
<img id="diagram" src="/console/dialplan.svg" alt="the dialplan as a diagram">"""
        return _page("Dialplan", body, 200 if result is None or result.loaded else 422)

    async def _diagram(self, request: web.Request, session: Session) -> web.Response:
        return web.Response(body=await self.dialplan.diagram(), content_type="image/svg+xml")

    async def _reload(self, request: web.Request, session: Session) -> web.StreamResponse:
        if session.account.role is not Role.ADMIN:
            raise web.HTTPForbidden(text="only an admin may reload the dialplan")
        result = await self.dialplan.check_and_reload()
        self._event(
            "console.dialplan_reload",
            session.account,
            {"loaded": result.loaded, "version": self.dialplan.version()},
        )
        return await self._dialplan_page(request, session, result)

    # --- events --------------------------------------------------------------------------------
    def _event(self, kind: str, account: Account, data: dict[str, Any]) -> None:
        """Written behind like every other event; who did it is part of the record."""
        self.persistence.submit(
            event_op(
                kind,
                {"by": account.username, "role": account.role.value, **data},
                datetime.now(UTC),
            )
        )
        log.info(
            kind.replace(".", "_"),
            by=account.username,
            **{k: v for k, v in data.items() if k in ("volunteer", "loaded")},
        )


def _nav(session: Session) -> str:
    return (
        '<nav><a href="/wallboard">Wallboard</a> <a href="/console">Volunteers</a> '
        '<a href="/console/dialplan">Dialplan</a> '
        f'<span class="who">{escape(session.account.username)} '
        f"({session.account.role.value})</span>"
        '<form method="post" action="/console/logout" class="inline">'
        f'<input type="hidden" name="csrf" value="{escape(session.csrf)}">'
        '<button type="submit" id="signout">Log out</button></form></nav>'
    )


def _message(text: str) -> str:
    return f'<p id="message" class="message">{escape(text)}</p>' if text else ""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{escape(title)} · Helpline</title><link rel="stylesheet" href="/static/console.css">
</head><body>{body}</body></html>"""
    return web.Response(text=html, content_type="text/html", status=status)
