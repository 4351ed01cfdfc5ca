"""A local fake of the Telegram Bot API (the methods the bot uses), for tests: `getMe`, `getUpdates` (long
poll over a queue the test fills), `sendMessage` (recorded), under `/bot<token>/<method>`. A wrong token is
answered 401 like the real API. Runs its own event loop in a thread, so a daemon subprocess can use it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from aiohttp import web


class FakeBotAPI:
    def __init__(self, token: str) -> None:
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 1
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    # -- test side --------------------------------------------------------------------------------
    def send_command(self, chat_id: int, text: str, *, age_seconds: float = 0.0) -> None:
        with self._lock:
            self._updates.append({"update_id": self._next_update, "message": {
                "message_id": self._next_message, "date": int(time.time() - age_seconds), "text": text,
                "chat": {"id": chat_id, "type": "private"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "operator"},
                "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]}})
            self._next_update += 1
            self._next_message += 1

    def replies(self, chat_id: int) -> list[str]:
        with self._lock:
            return [m["text"] for m in self.sent if int(m["chat_id"]) == chat_id]

    def wait_reply(self, chat_id: int, count: int, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = self.replies(chat_id)
            if len(replies) >= count:
                return replies[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no reply #{count} to chat {chat_id} within {timeout}s; sent: {self.sent}")

    # -- server side ------------------------------------------------------------------------------
    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return await request.json()
        return {k: v for k, v in (await request.post()).items()}

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append(method)
        if method == "getMe":
            return _ok({"id": 4242, "is_bot": True, "first_name": "ordergate", "username": "ordergate_test_bot"})
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            deadline = time.monotonic() + min(float(params.get("timeout") or 0), 2.0)
            while True:
                with self._lock:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                    ready = list(self._updates)
                if ready or time.monotonic() >= deadline:
                    return _ok(ready)
                await asyncio.sleep(0.05)
        if method == "sendMessage":
            with self._lock:
                self.sent.append(dict(params))
                message_id = self._next_message
                self._next_message += 1
            return _ok({"message_id": message_id, "date": int(time.time()), "text": params.get("text"),
                        "chat": {"id": int(params["chat_id"]), "type": "private"}})
        if method in ("deleteWebhook", "close", "logOut"):
            return _ok(True)
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._ready.set()

    def start(self) -> FakeBotAPI:
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            self._loop.run_until_complete(self._serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-bot-api", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "fake Bot API did not start"
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result}, dumps=json.dumps)
