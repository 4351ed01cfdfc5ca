"""The control socket's commands (`ordergate status | kill | resume | flatten | ...`, the dashboard, Telegram):
each a small handler over the daemon's core."""

from __future__ import annotations

import os
from datetime import date
from typing import TYPE_CHECKING, Any

from config.settings import scrub_secrets

if TYPE_CHECKING:
    from daemon.process import Daemon


class ControlHandlers:
    """The handlers of one daemon; `table()` maps command names to them."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._trading: Any = None

    def table(self) -> dict[str, Any]:
        """Command name -> its handler, for the control socket."""
        return {
            "status": self.status,
            "kill": self.kill,
            "resume": self.resume,
            "positions": self.positions,
            "orders": self.orders,
            "flatten": self.flatten,
            "reconcile": self.reconcile,
            "journal": self.journal,
            "signal": self.signal,
            "buy": self.buy,
            "sell": self.sell,
            "rebalance": self.rebalance,
            "decisions": self.decisions,
        }

    async def status(self, _args: dict[str, Any]) -> dict[str, Any]:
        """The running daemon's whole state (`ordergate status`, the dashboard, Telegram's /status)."""
        core = self.daemon.core
        info = core.kill_switch.info()
        equity = core.ledger.equity()
        exposure: dict[str, float] = {}
        for p in core.ledger.positions():
            sector = core.sectors.get(p.ticker) or "unknown"
            exposure[sector] = round(exposure.get(sector, 0.0) + p.market_value, 2)
        return {
            "running": True,
            "pid": os.getpid(),
            "ready": self.daemon.ready,
            "kill_switch": {"active": bool(info.get("active")), "reason": info.get("reason"),
                            "since": info.get("since"), "durable": info["durable"],
                            "write_error": info["write_error"]},
            "daily_pnl": core.state.get_daily_pnl(),
            "open_positions": core.ledger.count(),
            "positions": core.positions(),
            "strategies": core.budgets.status(core.ledger.positions(), core.calendar.trading_day(core.clock.now())),
            "external_positions": core.external_positions(),  # not ordergate's: counted as risk, never traded
            "open_orders": len(core.book.reserved()) + len(core.book.exits),
            "working_orders": sorted({r.client_order_id for r in core.book.reserved()} | set(core.book.exits.values())),
            "order_book": core.book.snapshot(),  # every working order's record (state, fills, reservation, venue)
            "equity": round(equity, 2),
            "cash": round(core.ledger.cash, 2),
            "realized_pnl": round(core.ledger.realized_pnl, 2),
            "unrealized_pnl": round(core.ledger.unrealized_pnl(), 2),
            "exposure_by_sector": exposure,
            "circuit_breaker": core.state.get_circuit_breaker_status(),
            "brokers": core.router.broker_health(),
            "stats": {"bars": core.engine.bars, "signals": core.engine.signals, "entries": core.engine.entries,
                      "exits": core.engine.exits, "round_trips": core.lifecycle.round_trips,
                      "feed_done": self.daemon.feed.done},
            "clock": self.daemon.clock.now().isoformat(),
            "quotes": {t: core.ledger.last_price(t) for t in self.daemon.settings.data.tickers},
            "last_reconciliation": core.last_reconciliation,
        }

    async def decisions(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """The newest signals and where each stopped (`ordergate watch`, the dashboard's feed)."""
        from daemon.dashboard import DashboardData

        before = args.get("before")
        return await DashboardData(self.daemon, self.daemon.settings.dashboard.page_rows).decisions(
            int(before) if before is not None else None, int(args.get("limit") or 50))

    async def kill(self, args: dict[str, Any]) -> dict[str, Any]:
        """Trip the kill switch (`ordergate kill`)."""
        # the reason is logged, alerted and kept in the state file: a pasted credential is blanked out first
        reason = scrub_secrets(str(args.get("reason") or "ordergate kill"), self.daemon.settings.secret_values())
        self.daemon.core.kill_switch.activate(reason, source="cli")  # logs and alerts; never raises for a failed write
        return self.daemon.core.kill_switch.info()

    async def resume(self, _args: dict[str, Any]) -> dict[str, Any]:
        """Reset the kill switch (`ordergate resume`)."""
        self.daemon.core.kill_switch.deactivate(source="cli")
        return self.daemon.core.kill_switch.info()

    async def positions(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        """Ours and the external positions."""
        return self.daemon.core.positions() + self.daemon.core.external_positions()

    async def orders(self, _args: dict[str, Any]) -> list[dict[str, Any]]:
        """The newest 200 orders from the journal."""
        if self.daemon.core.journal is None:
            return []
        return await self.daemon.core.journal.recent_orders(200)

    async def flatten(self, _args: dict[str, Any]) -> dict[str, Any]:
        """Close every position now."""
        return await self.daemon.core.flatten("ordergate flatten")

    async def reconcile(self, _args: dict[str, Any]) -> dict[str, Any]:
        """One reconciliation pass; its report."""
        await self.daemon.core.reconcile()
        return self.daemon.core.last_reconciliation or {}

    async def journal(self, args: dict[str, Any]) -> dict[str, Any]:
        """A trading day's summary (the New York trading day by default)."""
        core = self.daemon.core
        day = date.fromisoformat(args["day"]) if args.get("day") else core.calendar.trading_day(self.daemon.clock.now())
        return await core.daily_summary(day)

    def trading_service(self) -> Any:
        """The high-level buy/sell/rebalance API over this daemon's core (built on first use)."""
        if self._trading is None:
            from pipeline.trading_service import TradingConfig, TradingService

            core = self.daemon.core
            self._trading = TradingService(
                TradingConfig.from_settings(self.daemon.settings), orchestrator=core.orchestrator, ledger=core.ledger,
                price_lookup=core.orchestrator.market_price, account=core.account.account_state,
                clock=self.daemon.clock, lifecycle=core.lifecycle, settle=core.settle,
            )
        return self._trading

    async def buy(self, args: dict[str, Any]) -> dict[str, Any]:
        """TradingService.buy."""
        result = await self.trading_service().buy(str(args.get("ticker", "")), **_trade_size(args))
        return result.to_dict()

    async def sell(self, args: dict[str, Any]) -> dict[str, Any]:
        """TradingService.sell (or a short)."""
        service = self.trading_service()
        result = await service.sell(str(args.get("ticker", "")), short=bool(args.get("short")), **_trade_size(args))
        return result.to_dict()

    async def rebalance(self, args: dict[str, Any]) -> dict[str, Any]:
        """Preview a rebalance, and execute it with `execute`."""
        service = self.trading_service()
        targets = args.get("targets")
        if not isinstance(targets, dict):
            raise ValueError("targets: expected a table of ticker = weight")
        proposal = await service.preview_rebalance({str(k): v for k, v in targets.items()})
        if not args.get("execute"):
            return {"executed": False, "proposal": proposal.to_dict()}
        proposal.approved = True
        result = await service.execute_rebalance(proposal)
        return {"executed": result.executed, "proposal": proposal.to_dict(), "result": result.to_dict()}

    async def signal(self, args: dict[str, Any]) -> dict[str, Any]:
        """A manual signal decided by the pipeline now."""
        from pipeline.core.models import TradeSignal

        signal = TradeSignal(
            signal_type=args.get("signal_type", "manual"), direction=args.get("direction", ""),
            ticker=str(args.get("ticker", "")).upper(), timeframe=args.get("timeframe", "5m"),
            conviction=float(args.get("conviction", 75)), entry_price=float(args.get("entry_price", 0)),
            stop_loss=float(args.get("stop_loss", 0)),
            target_price=float(args["target_price"]) if args.get("target_price") else None,
            timestamp=self.daemon.clock.now(), source="cli", strategy=str(args.get("strategy") or ""),
        )
        result = await self.daemon.core.engine.decide_signal(signal)
        accepted = result.success and result.intent is not None
        reply: dict[str, Any] = {"accepted": accepted, "signal_id": signal.signal_id}
        if not accepted:
            reply.update(stage=result.pipeline_stage, reason=result.rejection_reason)
        return reply



def _trade_size(args: dict[str, Any]) -> dict[str, float | None]:
    dollars, shares = args.get("dollars"), args.get("shares")
    return {"dollars": float(dollars) if dollars is not None else None,
            "shares": float(shares) if shares is not None else None}

