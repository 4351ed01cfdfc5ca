"""Control from a phone: a Telegram bot (python-telegram-bot's `Bot`, long polling) inside the daemon.

Commands: `/status`, `/positions`, `/kill [reason]`, `/resume`, `/flatten` (answers with a one-time code;
`/flatten <code>` within `[telegram] confirm_seconds` closes every position and cancels every open order),
`/help`. Only chats in `[telegram] allowed_chat_ids` are answered; any other chat gets no answer at all and
is logged (`telegram_refused`, with its chat id so the operator can allow it). A command older than
`max_message_age_seconds` (queued at Telegram while the daemon was down) is ignored, never acted on.

The bot token is a secret: it is part of every Bot API URL, so httpx's request log is silenced and only
method names are logged. `[telegram] base_url` points the bot at another Bot API server (a local
`telegram-bot-api`, or the fake in tests/fakes/telegram_server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import structlog

from config.settings import TelegramSettings
from daemon import tables

MAX_REPLY_CHARS = 3900  # Telegram's limit is 4096
MAX_REASON_LEN = 200
RETRY_SECONDS = 5.0
HELP = ("/status  account, P&L, kill switch, brokers\n/positions  open positions with their stops\n"
        "/kill [reason]  trip the kill switch\n/resume  clear it\n/flatten  close everything (asks for a code)")

_log = structlog.get_logger("ordergate.telegram")


class TelegramBot:
    """Polls the Bot API for commands and answers them from the daemon (`Daemon` supplies the handlers)."""

    def __init__(self, settings: TelegramSettings, daemon: Any, logger: Any = None) -> None:
        from telegram import Bot

        for name in ("httpx", "httpcore", "telegram"):  # httpx logs every URL, and the URL holds the token
            logging.getLogger(name).setLevel(logging.WARNING)
        self.settings = settings
        self.daemon = daemon
        self.log = logger if logger is not None else _log
        assert settings.token is not None
        self.bot = Bot(settings.token.get_secret_value().strip(), base_url=settings.base_url)
        self.allowed = frozenset(settings.allowed_chat_ids)
        self.offset: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending_flatten: dict[int, tuple[str, float]] = {}
        self.handled = 0
        self.refused = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="telegram")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.bot.shutdown()

    async def _run(self) -> None:
        from telegram.error import InvalidToken, TelegramError

        while True:
            try:
                await self.bot.initialize()  # getMe
                break
            except InvalidToken:
                self.log.error("telegram_token_refused")
                return
            except (TelegramError, OSError) as exc:
                self.log.warning("telegram_unreachable", error=type(exc).__name__)
                await asyncio.sleep(RETRY_SECONDS)
        self.log.info("telegram_listening", bot=self.bot.username, allowed_chats=len(self.allowed))
        while True:
            try:
                updates = await self.bot.get_updates(offset=self.offset, timeout=self.settings.poll_timeout_seconds,
                                                     allowed_updates=["message"],
                                                     read_timeout=self.settings.poll_timeout_seconds + 10)
            except (TelegramError, OSError) as exc:
                self.log.warning("telegram_poll_failed", error=type(exc).__name__)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for update in updates:
                self.offset = update.update_id + 1
                try:
                    await self.handle(update.message)
                except Exception as exc:  # one bad command never stops the bot
                    self.log.error("telegram_command_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def handle(self, message: Any) -> None:
        if message is None or not message.text:
            return
        chat_id = int(message.chat.id)
        if chat_id not in self.allowed:
            self.refused += 1
            self.log.warning("telegram_refused", chat_id=chat_id)
            return
        age = (datetime.now(UTC) - message.date).total_seconds() if message.date else 0.0
        words = message.text.strip().split()
        command = words[0].split("@", 1)[0].lower() if words else ""
        if age > self.settings.max_message_age_seconds:
            self.log.warning("telegram_stale_command", chat_id=chat_id, command=command[:32], age_seconds=round(age))
            return
        self.handled += 1
        self.log.info("telegram_command", chat_id=chat_id, command=command[:32])
        reply = await self._answer(chat_id, command, words[1:])
        if reply:
            await self.bot.send_message(chat_id=chat_id, text=reply[:MAX_REPLY_CHARS], parse_mode="HTML")

    async def _answer(self, chat_id: int, command: str, args: list[str]) -> str:
        daemon = self.daemon
        if command == "/status":
            return _pre(tables.render_status(await daemon.handlers.status({}), colour=False))
        if command == "/positions":
            return _pre(tables.render_positions(await daemon.handlers.positions({}), colour=False))
        if command == "/kill":
            reason = " ".join(args)[:MAX_REASON_LEN] or "telegram"
            if not reason.isprintable():
                reason = "telegram"
            daemon.core.kill_switch.activate(reason, source="telegram")
            info = daemon.core.kill_switch.info()
            durable = "" if info.get("durable", True) else " (NOT on disk yet: the daemon retries the write)"
            return f"kill switch <b>ACTIVE</b>: {html.escape(str(info.get('reason')))}{durable}"
        if command == "/resume":
            daemon.core.kill_switch.deactivate(source="telegram")
            return "kill switch off: entries are sent again"
        if command == "/flatten":
            return await self._flatten(chat_id, args)
        return html.escape(HELP)

    async def _flatten(self, chat_id: int, args: list[str]) -> str:
        pending = self._pending_flatten.pop(chat_id, None)
        now = time.monotonic()
        if args and pending and secrets.compare_digest(args[0], pending[0]) and now <= pending[1]:
            result = await self.daemon.handlers.flatten({})
            return "flatten sent:\n" + _pre("\n".join(f"{k}: {v}" for k, v in (result or {}).items()))
        code = f"{secrets.randbelow(10**6):06d}"
        self._pending_flatten[chat_id] = (code, now + self.settings.confirm_seconds)
        wrong = "that code is wrong or expired. " if args else ""
        return (f"{wrong}Close every position and cancel every open order? Send <code>/flatten {code}</code> "
                f"within {self.settings.confirm_seconds:g} s to confirm.")


def _pre(text: str) -> str:
    return f"<pre>{html.escape(text[:MAX_REPLY_CHARS - 20])}</pre>"
