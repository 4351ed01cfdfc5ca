"""The live dashboard: one page on loopback, served by the daemon with the webhook's aiohttp stack.

Off unless `[dashboard] token` is set (`ORDERGATE_DASHBOARD__TOKEN`, 16+ characters). Open
`http://127.0.0.1:8789/#token=<token>`: the page keeps the token in the tab's session storage (the fragment
never reaches the server and is removed from the address bar) and sends it as `Authorization: Bearer` on
every request. Routes:

- `GET /`, `GET /static/...`: the page and its script/stylesheet, from the package (no CDN). No data.
- `GET /api/snapshot`: account, P&L, positions with their stops, working orders, the newest decisions,
  alerts, the kill switch, broker health, the equity curves (day and journal history).
- `GET /api/events`: the same snapshot pushed as server-sent events (`text/event-stream`) whenever it
  changes, at most every `push_interval_seconds`; one computation serves every open view. At most
  `max_streams` views at a time (more are answered 503).
- `GET /api/decisions?before=<seq>&limit=<n>`: older decisions, a page at a time (the feed stays light with
  any number of journal rows).
- `POST /api/kill`, `POST /api/resume`: JSON `{"confirm": true[, "reason": "..."]}`. CSRF-safe: the token
  must come in the Authorization header (a cross-site form or image cannot set it, and no CORS preflight is
  ever answered), a present `Origin` must be this server's own, `Sec-Fetch-Site` (when sent) must be
  same-origin, and the body must be JSON with `confirm: true` (the page asks first).

Connections are capped at `max_connections` like the webhook's; the page is served with a strict
Content-Security-Policy (`default-src 'self'`) and may not be framed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from adapters.http_server import CappedHttpServer
from config.settings import DashboardSettings

STATIC = Path(__file__).with_name("static")
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
FINAL_ORDER_STATUSES = ("filled", "canceled", "rejected", "expired", "replaced", "never_reached")
MAX_ALERTS = 50
MAX_WORKING_ORDERS = 100
MAX_CURVE_POINTS = 400
MAX_REASON_LEN = 500
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none';"
                               " form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_log = structlog.get_logger("ordergate.dashboard")
Snapshot = Callable[[], Awaitable[dict[str, Any]]]


def downsample(points: list[tuple[str, float]], limit: int = MAX_CURVE_POINTS) -> list[tuple[str, float]]:
    """At most `limit` points of a curve, the last one always kept."""
    if len(points) <= limit:
        return points
    step = len(points) / (limit - 1)
    picked = [points[int(i * step)] for i in range(limit - 1)]
    return [*picked, points[-1]]


def cumulative(rows: list[dict[str, Any]]) -> list[tuple[str, float]]:
    total = 0.0
    out = []
    for row in rows:
        total += float(row.get("pnl") or 0.0)
        out.append((str(row.get("exit_time")), round(total, 2)))
    return out


class DashboardData:
    """What the page shows, read from the running daemon (its status) and its journal."""

    def __init__(self, daemon: Any, page_rows: int) -> None:
        self.daemon = daemon
        self.page_rows = page_rows

    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        journal = self.daemon.core.journal
        return [] if journal is None else await journal.query(sql, params)

    async def decisions(self, before: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest signals (before `before`, by journal sequence) with the stage each stopped at and why."""
        limit = max(1, min(limit or self.page_rows, 500))
        where = "WHERE s.rowid < ?" if before is not None else ""
        params: tuple[Any, ...] = (before, limit) if before is not None else (limit,)
        return await self._query(
            "SELECT s.rowid AS seq, s.signal_id, s.ts, s.ticker, s.direction, s.signal_type, s.timeframe,"
            " s.entry_price, s.stop_loss, s.source, d.stage, d.outcome, d.reason FROM signals s"
            " LEFT JOIN decisions d ON d.id = (SELECT MAX(id) FROM decisions WHERE signal_id = s.signal_id)"
            f" {where} ORDER BY s.rowid DESC LIMIT ?", params)

    async def snapshot(self) -> dict[str, Any]:
        daemon = self.daemon
        status = await daemon.handlers.status({})
        final = ",".join("?" * len(FINAL_ORDER_STATUSES))
        working = await self._query(
            "SELECT client_order_id, kind, broker, symbol, side, quantity, order_type, status, filled_qty, created_ts"
            f" FROM orders WHERE status NOT IN ({final}) ORDER BY created_ts DESC LIMIT ?",
            (*FINAL_ORDER_STATUSES, MAX_WORKING_ORDERS))
        alerts = await self._query("SELECT id, kind, severity, message, ts FROM alerts ORDER BY id DESC LIMIT ?",
                                   (MAX_ALERTS,))
        day = str(daemon.core.calendar.trading_day(daemon.clock.now()))
        day_rows = await self._query("SELECT exit_time, pnl FROM trades WHERE day = ? ORDER BY exit_time, id", (day,))
        history = await self._query(
            "SELECT day AS exit_time, SUM(pnl) AS pnl FROM trades GROUP BY day ORDER BY day")
        counts = await self._query("SELECT (SELECT COUNT(*) FROM signals) AS signals,"
                                   " (SELECT COUNT(*) FROM trades) AS trades")
        return {
            "status": status,
            "working_orders": working,
            "alerts": alerts,
            "decisions": await self.decisions(),
            "equity": {"day": day, "day_curve": downsample(cumulative(day_rows)),
                       "history_curve": downsample(cumulative(history))},
            "journal": counts[0] if counts else {},
        }


class DashboardServer:
    """The aiohttp dashboard server. `start()` binds it (or does nothing without a token), `stop()` closes it."""

    def __init__(self, settings: DashboardSettings, data: Any, kill_switch: Any, logger: Any = None) -> None:
        self.settings = settings
        self.data = data
        self.kill_switch = kill_switch
        self.log = logger if logger is not None else _log
        token = settings.token.get_secret_value().strip() if settings.token is not None else ""
        self._token_digest = hashlib.sha256(token.encode()).digest() if token else None
        self.port: int | None = None
        self._http = CappedHttpServer(self.log)
        self._stopping = asyncio.Event()
        self._streams = 0
        self._cache: tuple[float, str] | None = None
        self._cache_lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self._token_digest is not None

    @property
    def open_connections(self) -> int:
        return self._http.open_connections

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024, middlewares=[self._middleware])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/snapshot", self._snapshot)
        app.router.add_get("/api/events", self._events)
        app.router.add_get("/api/decisions", self._decisions)
        app.router.add_post("/api/kill", self._kill)
        app.router.add_post("/api/resume", self._resume)
        return app

    async def start(self) -> int | None:
        if not self.enabled:
            self.log.info("dashboard_disabled", reason="no token configured")
            return None
        self.port = await self._http.start(
            self.build_app(), self.settings.host, self.settings.port, self.settings.max_connections,
            keepalive_timeout=self.settings.idle_timeout_seconds, shutdown_timeout=2.0)
        self.log.info("dashboard_listening", host=self.settings.host, port=self.port,
                      url=f"http://{self.settings.host}:{self.port}/", max_connections=self.settings.max_connections)
        return self.port

    async def stop(self) -> None:
        self._stopping.set()
        if await self._http.stop():
            self.log.info("dashboard_stopped")

    # -- plumbing -------------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Awaitable[Any]]) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = web.json_response({"error": exc.reason}, status=exc.status)
        except Exception as exc:  # never a traceback to the page
            self.log.error("dashboard_error", path=request.path[:200], error=f"{type(exc).__name__}: {exc}"[:300])
            response = web.json_response({"error": "internal error"}, status=503)
        if not response.prepared:
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
        return response

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, presented = request.headers.get("Authorization", "").strip().partition(" ")
        digest = hashlib.sha256(presented.strip().encode("utf-8", "replace")).digest()
        return (self._token_digest is not None and scheme.lower() == "bearer" and bool(presented)
                and hmac.compare_digest(digest, self._token_digest))

    def _require_token(self, request: web.Request) -> None:
        if not self._authorized(request):
            raise web.HTTPUnauthorized(reason="missing or invalid bearer token")

    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return False
        site = request.headers.get("Sec-Fetch-Site")
        return site in (None, "same-origin", "none")

    async def _cached_snapshot(self) -> str:
        """One snapshot per push interval, whatever the number of views."""
        async with self._cache_lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] >= self.settings.push_interval_seconds * 0.9:
                self._cache = (now, json.dumps(await self.data.snapshot(), default=str))
            return self._cache[1]

    # -- routes ---------------------------------------------------------------------------------------
    async def _index(self, _request: web.Request) -> web.Response:
        return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type=STATIC_TYPES[path.suffix], charset="utf-8")

    async def _snapshot(self, request: web.Request) -> web.Response:
        self._require_token(request)
        return web.Response(text=await self._cached_snapshot(), content_type="application/json")

    async def _decisions(self, request: web.Request) -> web.Response:
        self._require_token(request)
        try:
            before = int(request.query["before"]) if "before" in request.query else None
            limit = int(request.query.get("limit", self.settings.page_rows))
        except ValueError:
            raise web.HTTPBadRequest(reason="before and limit must be integers") from None
        rows = await self.data.decisions(before, limit)
        return web.json_response({"decisions": rows}, dumps=lambda o: json.dumps(o, default=str))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self._require_token(request)
        if self._streams >= self.settings.max_streams:
            raise web.HTTPServiceUnavailable(reason=f"at most {self.settings.max_streams} live views")
        self._streams += 1
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                                   "X-Accel-Buffering": "no"})
            await response.prepare(request)
            last = None
            while not self._stopping.is_set():
                body = await self._cached_snapshot()
                if body != last:
                    await response.write(f"event: snapshot\ndata: {body}\n\n".encode())
                    last = body
                else:
                    await response.write(b": keep-alive\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.settings.push_interval_seconds)
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            self._streams -= 1

    async def _control_body(self, request: web.Request) -> dict[str, Any]:
        self._require_token(request)
        if not self._same_origin(request):
            raise web.HTTPForbidden(reason="cross-origin request refused")
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(reason="send application/json")
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(reason="body must be JSON") from None
        if not isinstance(body, dict) or body.get("confirm") is not True:
            raise web.HTTPBadRequest(reason='not confirmed: send {"confirm": true}')
        return body

    async def _kill(self, request: web.Request) -> web.Response:
        body = await self._control_body(request)
        reason = str(body.get("reason") or "dashboard")[:MAX_REASON_LEN]
        if not reason.isprintable():
            raise web.HTTPBadRequest(reason="reason must be printable")
        self.kill_switch.activate(reason, source="dashboard")
        self._cache = None
        self.log.warning("dashboard_kill", reason=reason, remote=request.remote)
        return web.json_response(self.kill_switch.info(), dumps=lambda o: json.dumps(o, default=str))

    async def _resume(self, request: web.Request) -> web.Response:
        await self._control_body(request)
        self.kill_switch.deactivate(source="dashboard")
        self._cache = None
        self.log.warning("dashboard_resume", remote=request.remote)
        return web.json_response(self.kill_switch.info(), dumps=lambda o: json.dumps(o, default=str))
