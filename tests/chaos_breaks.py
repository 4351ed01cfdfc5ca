"""Deliberately broken builds of the daemon, one way each, to prove the chaos scoreboard can see every loss.

    python -m tests.chaos_breaks BREAK [ordergate arguments...]

applies the break named BREAK to the daemon's own code (a monkeypatch, in this process only) and then runs
`daemon.cli.main` exactly as `ordergate` does. `BREAKS` maps each break to the scoreboard counter it must move.
Nothing here is imported by the daemon itself.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Callable
from typing import Any

BREAKS: dict[str, str] = {
    "journal_skips_intents": "broker_orders_unknown_to_journal",
    "journal_invents_acks": "journal_orders_unknown_to_broker",
    "final_statuses_dropped": "orders_left_non_final",
    "final_statuses_misread": "status_mismatches",
    "entries_sent_twice": "entries_with_two_orders",
    "fills_not_journaled": "fills_missing_from_journal",
    "phantom_fill_journaled": "journal_fills_unknown_to_broker",
    "fill_quantity_halved": "fill_quantity_mismatches",
    "exits_never_journaled_as_fills": "positions_differ",
    "commission_dropped": "cash_differs",
    "trade_rows_dropped": "trade_rows_mismatch",
    "rebuild_skips_a_fill": "ledger_differs",
    "reservations_never_released": "reservation_leaks",
    "kill_switch_forgotten": "kill_switch_wrong",
    "stops_never_placed": "protection_gaps",
    "exits_leave_the_stop": "oversold",
}


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    setattr(owner, name, make(getattr(owner, name)))


def apply(name: str) -> None:
    """Break the daemon's code one way (see BREAKS)."""
    from pipeline.core.models import Fill, OrderResult, OrderStatus
    from pipeline.execution import order_router
    from pipeline.record import journal, trade_journal
    from pipeline.safety import state_manager

    J = journal.Journal
    if name == "journal_skips_intents":
        async def skip_intent(self: Any, intent: Any, broker: str, ts: Any) -> bool:
            return True  # "journaled" (it is not)
        def skip_started(self: Any, intent: Any, broker: str, ts: Any) -> Any:
            done = asyncio.get_running_loop().create_future()
            done.set_result(True)  # the router's early start: "journaled" as well
            return done
        J.record_order_intent = skip_intent  # type: ignore[method-assign]
        J.start_order_intent = skip_started  # type: ignore[method-assign]
    elif name == "journal_invents_acks":
        def invent(original: Any) -> Any:
            entries = itertools.count()

            async def send(self: Any, name_: str, intent: Any, logger: Any, may_exist: bool = False) -> Any:
                # the first entry of each run and every third after it "accepted", never sent (a count, not a
                # hash of the id: a run with few entries still has one)
                if intent.kind == "entry" and next(entries) % 3 == 0:
                    return OrderResult(intent.client_order_id, OrderStatus.NEW, name_), order_router._Attempts()
                return await original(self, name_, intent, logger, may_exist)
            return send
        _patch(order_router.OrderRouter, "_send_with_retries", invent)
    elif name in ("final_statuses_dropped", "final_statuses_misread"):
        def misjournal(original: Any) -> Any:
            async def update(self: Any, coid: str, status: Any, **kw: Any) -> None:
                if OrderStatus(status).is_final:
                    if name == "final_statuses_dropped":
                        return
                    status = OrderStatus.EXPIRED if status == OrderStatus.FILLED else status
                await original(self, coid, status, **kw)
            return update
        _patch(J, "update_order", misjournal)
    elif name == "entries_sent_twice":
        import dataclasses

        def twice(original: Any) -> Any:
            def dispatch(self: Any, intent: Any) -> Any:
                if intent.kind == "entry":
                    original(self, dataclasses.replace(intent, client_order_id=intent.client_order_id[:-2] + "zz"))
                return original(self, intent)
            return dispatch
        _patch(order_router.OrderRouter, "dispatch", twice)
    elif name in ("fills_not_journaled", "phantom_fill_journaled", "fill_quantity_halved",
                  "exits_never_journaled_as_fills", "commission_dropped"):
        def bad_fill(original: Any) -> Any:
            seen = itertools.count()

            async def record(self: Any, fill: Fill, *args: Any) -> bool:  # args: the fill's strategy
                n = next(seen)
                if name == "fills_not_journaled" and n % 4 == 3:
                    return True
                if name == "exits_never_journaled_as_fills" and fill.client_order_id.startswith("og-exit"):
                    return True
                if name == "phantom_fill_journaled" and n % 4 == 3:
                    await original(self, Fill(f"phantom-{fill.fill_id}", fill.client_order_id, fill.symbol, fill.side,
                                              fill.quantity, fill.price, fill.timestamp, fill.broker,
                                              fill.broker_order_id), *args)
                if name == "fill_quantity_halved" and n % 4 == 3:
                    fill = Fill(fill.fill_id, fill.client_order_id, fill.symbol, fill.side, fill.quantity / 2,
                                fill.price, fill.timestamp, fill.broker, fill.broker_order_id, fill.commission)
                if name == "commission_dropped":
                    fill = Fill(fill.fill_id, fill.client_order_id, fill.symbol, fill.side, fill.quantity,
                                fill.price, fill.timestamp, fill.broker, fill.broker_order_id, 0.0)
                return await original(self, fill, *args)
            return record
        _patch(J, "record_fill", bad_fill)
    elif name == "trade_rows_dropped":
        async def drop(self: Any, trade: Any) -> int:
            return 0
        trade_journal.TradeJournalWriter.record = drop  # type: ignore[method-assign]
    elif name == "rebuild_skips_a_fill":
        def skip_last(original: Any) -> Any:
            async def fills(self: Any) -> list[dict[str, Any]]:
                rows = await original(self)
                return rows[:-1]
            return fills
        _patch(J, "fills", skip_last)
    elif name == "reservations_never_released":
        from pipeline.execution import order_record
        from pipeline.positions import lifecycle

        def keep_filled(self: Any, client_order_id: str, quantity: float) -> None:
            return None  # a fill no longer moves its part of the reservation to the ledger
        order_record.OrderBook.entry_filled = keep_filled  # type: ignore[method-assign]
        # nor does a final status release what is left of it
        _patch(lifecycle.LifecycleManager, "_entry_final", lambda original: lambda self, *a, **k: None)
    elif name == "kill_switch_forgotten":
        def forget(original: Any) -> Any:
            def load(self: Any) -> Any:
                return state_manager.default_state()
            return load
        _patch(state_manager.PersistentStateManager, "_load_or_fail_closed", forget)
    elif name == "stops_never_placed":
        from pipeline.execution import protective_stops

        async def place_nothing(self: Any, pos: Any, qty: float, price: float) -> None:
            return None
        protective_stops.ProtectiveStops._place = place_nothing  # type: ignore[method-assign]
    elif name == "exits_leave_the_stop":
        from pipeline.execution import protective_stops

        async def leave(self: Any, exit_intent: Any) -> Any:
            return exit_intent  # the daemon's exit goes out while the broker's stop still rests
        protective_stops.ProtectiveStops.release = leave  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown break {name!r}; known: {', '.join(BREAKS)}")


def main() -> int:
    if len(sys.argv) < 2:
        raise SystemExit(f"usage: python -m tests.chaos_breaks BREAK [ordergate args]; breaks: {', '.join(BREAKS)}")
    apply(sys.argv[1])
    from daemon.cli import main as ordergate_main

    return ordergate_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
