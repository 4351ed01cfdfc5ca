"""OrderResolver against a real PaperBroker: when an order not found becomes never_reached, and when it never does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.paper import PaperBroker
from config.settings import PaperSettings
from pipeline.core.clock import SimulatedClock
from pipeline.core.models import OrderIntent, Side, client_order_id_for
from pipeline.execution.order_resolver import OpenOrder, OrderResolver, Verdict

NOW = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _order(name: str, kind: str = "entry", acknowledged: bool = False) -> OpenOrder:
    intent = OrderIntent(client_order_id=client_order_id_for(name), signal_id=name, symbol="AAPL", side=Side.BUY,
                         quantity=5, kind=kind, reference_price=100.0)
    return OpenOrder(intent, "paper", acknowledged=acknowledged)


@pytest.fixture
async def paper() -> PaperBroker:
    broker = PaperBroker(PaperSettings(), SimulatedClock(NOW))
    broker.set_price("AAPL", 100.0)
    await broker.connect()
    return broker


async def test_never_reached_needs_two_misses_and_the_bound(paper: PaperBroker) -> None:
    ticks = Ticks()
    resolver = OrderResolver({"paper": paper}, never_reached_after=120, timeout=2, now=ticks)
    order = _order("sig-a")
    assert [r.verdict for r in await resolver.resolve([order])] == [Verdict.MISSING]
    ticks.t += 119
    assert [r.verdict for r in await resolver.resolve([order])] == [Verdict.MISSING]  # two misses, too soon
    ticks.t += 1
    assert [r.verdict for r in await resolver.resolve([order])] == [Verdict.NEVER_REACHED]
    assert resolver.misses(order.intent.client_order_id) == 0


async def test_an_acknowledged_order_is_never_declared_never_reached(paper: PaperBroker) -> None:
    ticks = Ticks()
    resolver = OrderResolver({"paper": paper}, never_reached_after=0, timeout=2, now=ticks)
    order = _order("sig-b", acknowledged=True)
    for _ in range(3):
        (r,) = await resolver.resolve([order])
        assert r.verdict == Verdict.MISSING
        ticks.t += 600
    assert resolver.misses(order.intent.client_order_id) == 3


async def test_found_resets_the_misses_and_acknowledged_orders_are_rechecked_less_often(paper: PaperBroker) -> None:
    ticks = Ticks()
    resolver = OrderResolver({"paper": paper}, never_reached_after=0, timeout=2, now=ticks,
                             recheck_acknowledged_after=60)
    order = _order("sig-c")
    (first,) = await resolver.resolve([order])
    assert first.verdict == Verdict.MISSING
    await paper.submit_order(order.intent)  # it arrives after all (a late send)
    (found,) = await resolver.resolve([order])
    assert found.verdict == Verdict.FOUND and found.result is not None and resolver.misses(found.client_order_id) == 0
    acked = OpenOrder(order.intent, "paper", acknowledged=True)
    assert resolver.due([acked]) == []
    ticks.t += 60
    assert resolver.due([acked]) == [acked]


def _resolver_of_a_broker_down(paper: PaperBroker) -> tuple[OrderResolver, list[float]]:
    """A resolver of `paper`, which is down; the list its test's sleep records the waits in."""
    paper.faults.unavailable = True
    return OrderResolver({"paper": paper}, never_reached_after=0, timeout=2), []


async def test_unanswered_is_asked_again_with_backoff_until_it_answers(paper: PaperBroker) -> None:
    resolver, slept = _resolver_of_a_broker_down(paper)

    async def sleep(delay: float) -> None:
        slept.append(delay)
        if sum(slept) >= 0.5 + 1.0 + 1.5 - 1e-9:
            paper.faults.unavailable = False  # the broker comes back after three waits

    exit_order, entry = _order("sig-x", kind="exit"), _order("sig-e")
    resolutions = await resolver.resolve_until_answered([entry, exit_order], backoff=(0.5, 1.5), sleep=sleep)
    assert sum(slept) == pytest.approx(3.0) and max(slept) <= 0.25  # 0.5, 1.0, 1.5 in quarter-second steps
    assert [(r.order.intent.kind, r.verdict) for r in resolutions] == [("exit", Verdict.MISSING),
                                                                      ("entry", Verdict.MISSING)]


async def test_a_broker_that_does_not_answer_is_asked_once_per_pass(paper: PaperBroker) -> None:
    resolver = OrderResolver({"paper": paper}, never_reached_after=0, timeout=0.1)
    paper.faults.latency_s = 0.5  # connected, but no call is answered within the timeout
    before = len(paper.request_log)
    resolutions = await resolver.resolve([_order(f"sig-{n}") for n in range(5)])
    assert {r.verdict for r in resolutions} == {Verdict.UNANSWERED}
    assert len(paper.request_log) - before == 1


async def test_the_retry_loop_gives_up_only_when_the_process_stops(paper: PaperBroker) -> None:
    resolver, waits = _resolver_of_a_broker_down(paper)

    async def sleep(delay: float) -> None:
        waits.append(delay)

    resolutions = await resolver.resolve_until_answered([_order("sig-s")], backoff=(0.5, 30.0), sleep=sleep,
                                                        stop=lambda: len(waits) >= 7)
    assert [r.verdict for r in resolutions] == [Verdict.UNANSWERED] and len(waits) == 7


def _made_at(name: str, at: datetime, kind: str = "exit") -> OpenOrder:
    order = _order(name, kind=kind)
    order.intent.created_at = at
    return order


async def test_an_order_an_earlier_life_made_long_ago_is_never_reached_in_a_short_life(paper: PaperBroker) -> None:
    """Found by the 200-crash chaos run: an exit journaled, then SIGKILL before its send. Every later life of the
    daemon was shorter than never_reached_after, and each started its count of misses again, so the exit stayed
    pending for ever (two simulated days, to the end of the run). Made by an earlier process long enough ago, its
    send (if any) is over: two misses in one pass settle it."""
    clock = SimulatedClock(NOW)
    resolver = OrderResolver({"paper": paper}, never_reached_after=120, timeout=2, now=Ticks(), clock=clock)
    old = _made_at("sig-old", NOW - timedelta(seconds=121))
    resolver.book.restore(old.intent, None, "paper")  # rebuilt from the journal at start
    (r,) = await resolver.resolve([old])
    assert r.verdict == Verdict.NEVER_REACHED


async def test_a_recent_order_or_one_this_life_made_waits_for_the_bound(paper: PaperBroker) -> None:
    clock = SimulatedClock(NOW)
    resolver = OrderResolver({"paper": paper}, never_reached_after=120, timeout=2, now=Ticks(), clock=clock)
    recent = _made_at("sig-recent", NOW - timedelta(seconds=60))  # an earlier life, but the broker may still lag
    resolver.book.restore(recent.intent, None, "paper")
    assert [r.verdict for r in await resolver.resolve([recent])] == [Verdict.MISSING]
    clock.advance(600)
    mine = _made_at("sig-mine", NOW - timedelta(hours=1))  # made by this life (not rebuilt): the monotonic bound
    assert [r.verdict for r in await resolver.resolve([mine])] == [Verdict.MISSING]
