"""One reconciliation pass: broker open orders, then positions, against the ledger and the external positions.

A difference counts only once `MismatchConfirmer` confirms it (two checks in a row, no order activity within
`[reconcile] grace_seconds`); until then it is pending (reported, never "OK"), and what the broker holds beyond
the book is counted by the risk gate meanwhile. A counted difference is *external* when it adds to the
broker's side of a symbol on which no order of ours is unfinished (`[reconcile] external`: ignore = recorded
in `Core.external`, counted as risk, never traded; adopt = taken into the ledger with a visible stop) and
*unexplained* otherwise (alerted once, `[reconcile] policy` applied, the unexplained notional judged in total
against `kill_notional_threshold`).

What is *not* unexplained: a broker position on a symbol where every order ordergate ever sent is final and its
fills are all in the journal cannot be ordergate's, so it is external (the journal being lost or damaged is the
start-up's concern: it fails closed). What is: a position ordergate holds that the broker lacks (or holds less
of, or on the other side), and broker quantity on a symbol with an unfinished order of ours (a lost fill).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from daemon.broker_time import fills_through
from daemon.cash_sync import CashSync
from daemon.expiries import Expiries
from daemon.splits import Splits
from pipeline.core.models import Position
from pipeline.execution.protective_stops import STOP_KIND
from pipeline.positions.external import JOURNAL_KEY as EXTERNAL_KEY
from pipeline.positions.external import ExternalPosition
from pipeline.positions.reconciler import Judgement, Mismatch, MismatchConfirmer, ReconciliationReport

if TYPE_CHECKING:
    from daemon.core import Core

log = structlog.get_logger("ordergate.daemon")
FILL_GRACE = timedelta(minutes=5)  # a finished entry's awaited fills: after this, reconciliation takes over


class Reconciliation:
    """The reconcile loop's pass over a Core (its brokers, ledger, external book, kill switch)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.confirmer = MismatchConfirmer(core.settings.reconcile.grace_seconds)
        self._lock = asyncio.Lock()  # the timer and `ordergate reconcile` never interleave their checks
        self.splits = Splits(core)
        self.cash = CashSync(core, self.confirmer)
        self.expiries = Expiries(core)
        self._saved_external: list[dict[str, Any]] | None = None  # what the journal holds (kv `external`)
        self._agreed: dict[str, tuple[float, float]] = {}  # symbol -> (broker qty, avg) when it last agreed

    def reconfigure(self, grace_seconds: float) -> None:
        """A new [reconcile] grace_seconds (a reload) for the confirmer."""
        self.confirmer.reconfigure(grace_seconds)

    async def run(self) -> ReconciliationReport:
        """One check (serialised with any other under way); see `_check`."""
        async with self._lock:
            return await self._check()

    async def _check(self) -> ReconciliationReport:
        """Broker positions vs the ledger and the external positions, for every connected broker.

        Each broker's open orders are read before its positions (an order that appeared, filled some more or
        went away since the last check is activity on its symbol). A difference counts only when the same
        difference is seen on two consecutive checks and its symbol has had no order activity within
        `[reconcile] grace_seconds`; until then it is pending (reported, never "OK"; a broker-only quantity is
        counted by the risk gate meanwhile). A counted difference is *external* when it adds to what the broker
        holds of a symbol on which no order of ours is unfinished (`[reconcile] external` decides what then);
        otherwise it is *unexplained*: alerted, `[reconcile] policy` applied, and the unexplained notional in
        total judged against `kill_notional_threshold`. The report returned holds the unexplained mismatches.
        """
        now = self.core.clock.now()
        for stale, awaited in self.core.book.expire(now, FILL_GRACE):
            log.warning("reservation_expired", client_order_id=stale.client_order_id, symbol=stale.intent.symbol,
                        awaited_qty=awaited, reason="final status seen, its fills never arrived")
        broker_positions: list[dict[str, Any]] = []
        through: dict[str, datetime | None] = {}  # each broker's positions hold its fills up to (broker time)
        skipped: set[str] = set()
        for broker in self.core.brokers.values():
            if not broker.is_connected():
                continue
            try:
                orders = await broker.get_open_orders()  # the order set first, then the positions
            except Exception as exc:  # without it a difference cannot be judged: this broker waits a check
                log.warning("reconcile_orders_unreadable", broker=broker.name, error=str(exc))
                skipped.add(broker.name)
                continue
            self.confirmer.observe_orders(broker.name, orders, now)
            through[broker.name] = await fills_through(broker, self.core.clock,
                                                       self.core.settings.reconcile.grace_seconds,
                                                       self.core.settings.broker.request_timeout_seconds)
            try:
                positions = await broker.get_positions()
            except Exception as exc:  # likewise: this broker's holdings are judged at the next check
                log.warning("reconcile_positions_unreadable", broker=broker.name, error=str(exc))
                skipped.add(broker.name)
                continue
            for bp in positions:
                broker_positions.append({"symbol": bp.symbol, "shares": bp.quantity, "price": bp.market_price
                                         or bp.avg_price, "broker": broker.name, "avg_price": bp.avg_price})
        # a position held at a broker that is not connected cannot be checked: it is not an orphan
        unreachable = {name for name, broker in self.core.brokers.items() if not broker.is_connected()} | skipped
        internal = [
            {"symbol": position.symbol, "shares": abs(quantity),
             "direction": "long" if quantity > 0 else "short", "price": position.current_price}
            for position, quantity in self.core.ledger.held_at(unreachable)
        ] + [
            {"symbol": e.symbol, "shares": abs(e.quantity), "direction": "long" if e.quantity > 0 else "short",
             "price": e.avg_price}
            for e in self.core.external.held() if e.broker not in unreachable
        ]
        raw = self.core.reconciler.reconcile(internal, broker_positions)
        mismatches = await self._take_splits(raw.mismatches, broker_positions, now)
        mismatches = await self.expiries.take(mismatches, now, self._ours_unfinished)
        self._note_agreed(broker_positions, {m.symbol for m in raw.mismatches})
        judged = self.confirmer.judge(mismatches, now, self.core.lifecycle.activity)
        found, unexplained = await self._classify(judged.confirmed)
        self._take_external(found, broker_positions, now, through)
        self.core.external.set_pending(self._broker_only(m) for m, _why in judged.pending)
        await self._save_external()
        report = ReconciliationReport(raw.matches, unexplained, self.core.settings.reconcile.kill_notional_threshold)
        await self._report(report, judged, found, now, skipped)
        in_agreement = not raw.mismatches and not judged.pending
        await self.cash.check(now, in_agreement, skipped, through)
        if unexplained:
            if self.core.settings.reconcile.policy == "adopt":
                self._adopt(report, broker_positions)
            if report.severe(self.core.settings.reconcile.kill_notional_threshold) \
                    and not self.core.state.is_kill_switch_active():
                limit = self.core.settings.reconcile.kill_notional_threshold
                reason = (f"reconciliation: unexplained broker notional ${report.unexplained_notional:,.2f} in "
                          f"total above kill_notional_threshold ${limit:,.2f}: "
                          + ", ".join(f"{m.symbol} {m.mismatch_type}" for m in report.severe_mismatches(limit)))
                self.core.kill_switch.activate(reason, source="reconciliation")  # logs and alerts the trip
        return report

    async def _save_external(self) -> None:
        """The confirmed external positions into the journal when they changed (kv `external`): a restart starts
        from them, so a split made while it was down is judged on the whole book and a hand fill the figures held
        is not counted again."""
        saved = self.core.external.to_json()
        if self.core.journal is None or saved == self._saved_external:
            return
        await self.core.journal.set_kv(EXTERNAL_KEY, saved)
        self._saved_external = saved

    async def at_start(self) -> ReconciliationReport:
        """The start-up reconciliation (before READY): differences seen by the first check are checked once more
        after `[reconcile] confirm_seconds`, so what the broker holds is judged before trading starts."""
        report = await self.run()
        pending = (self.core.last_reconciliation or {}).get("pending") or []
        if any(p["why"].startswith("first sighting") for p in pending):
            await asyncio.sleep(self.core.settings.reconcile.confirm_seconds)
            report = await self.run()
        return report

    async def _take_splits(self, mismatches: list[Mismatch], broker_positions: list[dict[str, Any]],
                           now: datetime) -> list[Mismatch]:
        """Apply the stock splits among this check's differences (daemon.splits); returns the others, to be
        confirmed as any difference. One sighting is enough: no lagging view of our own fills or of a hand trade
        keeps the cost while the quantity moves. A symbol with order activity within the grace period, or an
        order of ours unfinished, is never one (the difference may be that order's fill)."""
        rest = []
        for m in mismatches:
            quiet = self.confirmer.last_activity(m.symbol, now, self.core.lifecycle.activity) is None
            if not (quiet and await self._split(m.symbol, broker_positions)):
                rest.append(m)
        return rest

    def _note_agreed(self, broker_positions: list[dict[str, Any]], differing: set[str]) -> None:
        """Each symbol's broker quantity and average while the broker agrees with the book (a split's before)."""
        for bp in broker_positions:
            if bp["symbol"] not in differing:
                self._agreed[bp["symbol"]] = (float(bp["shares"]), float(bp.get("avg_price") or 0.0))
        for symbol in [s for s in self._agreed if s not in {bp["symbol"] for bp in broker_positions}]:
            del self._agreed[symbol]

    async def _split(self, symbol: str, broker_positions: list[dict[str, Any]]) -> bool:
        """Apply the split that explains what the broker holds of `symbol`, if one does; True when applied."""
        ratio = self.splits.ratio(symbol, broker_positions, self._agreed.get(symbol))
        if ratio is None or await self._ours_unfinished(symbol):
            return False
        bp = next(p for p in broker_positions if p["symbol"] == symbol)
        await self.splits.apply(symbol, ratio, float(bp["shares"]), str(bp["broker"]))
        return True

    async def splits_at_start(self) -> int:
        """Before the start-up's stop check: a split made while the daemon was down is applied to the book the
        journal rebuilt, so no stop is placed or resized at a pre-split level (a sell stop above the new price
        would sell at once). One read of each broker's positions; the start-up reconciliation judges the rest.
        Returns how many splits were applied."""
        async with self._lock:
            rows: list[dict[str, Any]] = []
            for broker in self.core.brokers.values():
                if not broker.is_connected():
                    continue
                try:
                    positions = await broker.get_positions()
                except Exception as exc:  # judged by the start-up reconciliation instead
                    log.warning("split_check_positions_unreadable", broker=broker.name, error=str(exc))
                    continue
                rows += [{"symbol": bp.symbol, "shares": bp.quantity, "avg_price": bp.avg_price,
                          "broker": broker.name} for bp in positions]
            applied = 0
            for symbol in sorted({r["symbol"] for r in rows}):
                held = self.core.ledger.net(symbol) + self.core.external.quantity(symbol)
                broker_qty = sum(float(r["shares"]) for r in rows if r["symbol"] == symbol)
                if abs(held) > 1e-9 and abs(broker_qty - held) > 1e-9 and await self._split(symbol, rows):
                    applied += 1
            return applied

    async def _classify(self, confirmed: list[Mismatch]) -> tuple[list[Mismatch], list[Mismatch]]:
        """(external, unexplained): a difference is external when it moves the external part of a symbol
        without flipping it, or adds to the broker's side of a symbol on which no order of ours is unfinished."""
        external, unexplained = [], []
        for m in confirmed:
            ours = self.core.ledger.signed_quantities().get(m.symbol, 0.0)
            held = self.core.external.quantity(m.symbol)
            rest = m.broker_qty - ours  # what would be external
            if held and (abs(rest) < 1e-9 or (rest > 0) == (held > 0)):
                external.append(m)
            elif not held and abs(rest) > 1e-9 and (abs(ours) < 1e-9 or (rest > 0) == (ours > 0)) \
                    and not await self._ours_unfinished(m.symbol):
                external.append(m)
            else:
                unexplained.append(m)
        return external, unexplained

    async def _ours_unfinished(self, symbol: str) -> bool:
        """An order of ours on this symbol whose outcome the book does not fully hold: not final, or final with
        more filled than the journal has fills for (a broker position there may be ours). A resting protective stop
        is not one: it only ever reduces the position, so it cannot explain what the broker holds beyond ours."""
        if any(r.intent.symbol == symbol and r.intent.kind != STOP_KIND for r in self.core.book.working()):
            return True
        if self.core.journal is None:
            return False
        return await self.core.journal.has_unsettled_order(symbol, except_kind=STOP_KIND)

    def _take_external(self, found: list[Mismatch], broker_positions: list[dict[str, Any]], now: Any,
                       through: dict[str, datetime | None]) -> None:
        """Record confirmed external quantities, or adopt them into the ledger (`[reconcile] external = adopt`),
        each with the broker time up to which the broker's positions held every fill (daemon.broker_time: a hand
        fill that reaches us only later is not counted on top)."""
        by_symbol = {p["symbol"]: p for p in broker_positions}
        for m in found:
            bp = by_symbol.get(m.symbol, {})
            ours = self.core.ledger.signed_quantities().get(m.symbol, 0.0)
            qty = m.broker_qty - ours
            avg = float(bp.get("avg_price") or bp.get("price") or m.price or 0.0)
            broker = str(bp.get("broker") or self.core.settings.broker.primary)
            held_through = through.get(broker)
            if self.core.settings.reconcile.external == "adopt" and abs(ours) < 1e-9 and abs(qty) > 1e-9:
                self.core.external.remove(m.symbol, held_through)
                position = self._adopted_position(m.symbol, qty, avg, float(bp.get("price") or avg), broker,
                                                  "adopted")
                self.core.ledger.adopt(position, qty)
                self.core.lifecycle.rebuild_index()
                self.core.stops.request_sync(m.symbol)  # managed now: its stop rests at the broker
                log.warning("external_position_adopted", symbol=m.symbol, quantity=qty, avg_price=avg,
                            stop_loss=position.stop_loss, broker=broker)
                continue
            self.core.external.set(m.symbol, qty, avg, broker, now, held_through)
            log.warning("external_position", symbol=m.symbol, quantity=qty, avg_price=avg, broker=broker,
                        policy=self.core.settings.reconcile.external,
                        description="held at the broker, not opened by ordergate: counted as risk, not traded")

    def _broker_only(self, m: Mismatch) -> ExternalPosition:
        """The part of a pending difference that the broker holds beyond the book (counted by the gate)."""
        gap = m.broker_qty - m.internal_qty
        adds = abs(m.broker_qty) > abs(m.internal_qty) and (abs(m.internal_qty) < 1e-9
                                                            or (m.broker_qty > 0) == (m.internal_qty > 0))
        return ExternalPosition(m.symbol, gap if adds else 0.0, m.price or 0.0)

    async def _report(self, report: ReconciliationReport, judged: Judgement, found: list[Mismatch],
                      now: Any, skipped: set[str]) -> None:
        """Log, alert (once per difference) and keep the outcome for `status` / `ordergate reconcile`; a connected
        broker whose orders or positions could not be read (`skipped`) leaves the check not OK."""
        policy = self.core.settings.reconcile.policy
        fresh = {id(m) for m in judged.newly_confirmed}
        for m in report.mismatches:
            log.warning("reconciliation_mismatch", symbol=m.symbol, type=m.mismatch_type, description=m.description,
                        notional=round(m.notional, 2), policy=policy)
            if id(m) in fresh:
                await self.core.alert("reconciliation_mismatch", f"{m.symbol}: {m.mismatch_type}: {m.description}")
        for m in found:
            if id(m) in fresh:
                await self.core.alert("external_position", f"{m.symbol}: broker holds {m.broker_qty:+g}, "
                                      f"ordergate {m.internal_qty:+g}: not opened by ordergate (external = "
                                      f"{self.core.settings.reconcile.external})", "info")
        for m, why in judged.pending:
            log.info("reconciliation_pending", symbol=m.symbol, type=m.mismatch_type, description=m.description,
                     why=why)
        ok = not report.mismatches and not judged.pending and not skipped
        if ok:
            log.info("reconciliation_ok", matches=report.matches, external=len(self.core.external.held()))
        self.core.last_reconciliation = {
            "ok": ok, "checked_at": now.isoformat(), "matches": report.matches,
            "mismatches": [{"symbol": m.symbol, "type": m.mismatch_type, "description": m.description,
                            "notional": round(m.notional, 2)} for m in report.mismatches],
            "unexplained_notional": round(report.unexplained_notional, 2),
            "pending": [{"symbol": m.symbol, "type": m.mismatch_type, "description": m.description, "why": why}
                        for m, why in judged.pending],
            "external": [{"symbol": e.symbol, "quantity": e.quantity} for e in self.core.external.held()],
            "unread_brokers": sorted(skipped),
        }

    def _adopted_position(self, symbol: str, qty: float, avg: float, price: float, broker: str,
                          origin: str = "") -> Position:
        """A position taken over from the broker, with a stop `[reconcile] adopt_stop_pct` away from its price
        (never at the price itself: that would sell on the first tick against it)."""
        pct = self.core.settings.reconcile.adopt_stop_pct
        basis = avg or price
        stop = basis * (1 - pct) if qty > 0 else basis * (1 + pct)
        now = self.core.clock.now()
        # a signal id of its own: its exits get client order ids no earlier run used (the key is per position)
        return Position(ticker=symbol, direction="long" if qty > 0 else "short", entry_price=basis,
                        current_price=price or basis, shares=abs(qty), stop_loss=round(stop, 4),
                        entry_time=now, broker=broker, origin=origin, signal_id=f"adopt-{symbol}-{now.isoformat()}")

    def _adopt(self, report: ReconciliationReport, broker_positions: list[dict[str, Any]]) -> None:
        """`[reconcile] policy = adopt`: the ledger takes the broker's quantity of our own unexplained positions."""
        by_symbol = {p["symbol"]: p for p in broker_positions}
        for m in report.mismatches:
            bp = by_symbol.get(m.symbol)
            qty = m.broker_qty - self.core.external.quantity(m.symbol)
            if bp is None or abs(qty) < 1e-9:
                self.core.ledger.drop(m.symbol)
                continue
            if self.core.ledger.resize(m.symbol, qty):  # keep its stop, target and signal: only the size was wrong
                continue
            price = float(bp.get("avg_price") or bp.get("price") or 0.0)
            position = self._adopted_position(m.symbol, qty, price, float(bp.get("price") or price),
                                              str(bp.get("broker", "")))
            self.core.ledger.adopt(position, qty)
        self.core.lifecycle.rebuild_index()
        for m in report.mismatches:  # the resting stops follow the adopted quantities (or go with a dropped one)
            self.core.stops.request_sync(m.symbol)
