"""An exit that never reached its broker is replaced only for the position it was made for.

Found with the resolver fix for the 200-crash chaos run: an exit journaled before a SIGKILL and never sent is
declared never_reached later, when the position it was for may be long gone (closed by its stop) and another one
opened on the symbol since. A fresh exit then would close the new position, which no exit rule asked for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pipeline.core.models import OrderIntent, OrderKind, Side, client_order_id_for
from tests.conftest import enter


def _stuck_exit(core: Any, side: Side, age: timedelta) -> OrderIntent:
    return OrderIntent(client_order_id=client_order_id_for("sig-old", "exit0"), signal_id="sig-old", symbol="AAPL",
                       side=side, quantity=10, kind=OrderKind.EXIT, reference_price=100.0,
                       created_at=core.clock.now() - age)


async def test_a_stuck_exit_is_replaced_for_its_own_position(paper_core: Callable[..., Awaitable[Any]]) -> None:
    core = await paper_core()
    await enter(core)
    core.clock.advance(60)
    fresh = core.lifecycle.resend_exit(_stuck_exit(core, Side.SELL, timedelta(seconds=30)), "test")
    assert fresh is not None and fresh.side is Side.SELL and fresh.kind is OrderKind.EXIT


async def test_a_stuck_exit_of_an_earlier_position_is_not_resent(paper_core: Callable[..., Awaitable[Any]]) -> None:
    core = await paper_core()
    await enter(core)
    # made before this long was opened (for a position closed since): the long is not due to exit
    assert core.lifecycle.resend_exit(_stuck_exit(core, Side.SELL, timedelta(hours=2)), "test") is None
    # a buy-to-cover of an earlier short never closes a long
    assert core.lifecycle.resend_exit(_stuck_exit(core, Side.BUY, timedelta(seconds=0)), "test") is None
    assert core.ledger.position("AAPL") is not None and not core.lifecycle.exiting("AAPL")
