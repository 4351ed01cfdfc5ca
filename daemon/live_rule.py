"""Live means live: a real broker (alpaca, ibkr) runs only on live bars and the live clock.

The daemon's clock is live exactly when its bars are (`data.source = "alpaca"`); synthetic and replayed
bars run on a simulated clock and so only against the paper broker. `ordergate run` refuses any other
combination at start, before a broker is built or connected. (`ordergate replay` always trades paper, and
tests may assemble a `Core` with a real broker's fake on a simulated clock: the rule is the process's.)
"""

from __future__ import annotations

from config.settings import Settings

REAL_BROKERS = frozenset({"alpaca", "ibkr"})
LIVE_DATA_SOURCE = "alpaca"


def _real_brokers(settings: Settings) -> list[tuple[str, str]]:
    return [(field, name) for field, name in (("broker.primary", settings.broker.primary),
                                              ("broker.fallback", settings.broker.fallback))
            if name in REAL_BROKERS]


def live_rule_problem(settings: Settings) -> str | None:
    """One line naming the settings and what to set, or None when the broker and the data go together.

    A real broker also needs the journal: without it every restart rebuilds an empty ledger beside the
    account's positions (the failure a lost journal is halted for).
    """
    real = _real_brokers(settings)
    if real and not settings.journal.enabled:
        named = " and ".join(f"{field}={name!r}" for field, name in real)
        return (f"invalid setting journal.enabled=False with {named}: a real broker needs the journal to rebuild"
                " its positions after a restart; set journal.enabled = true (ORDERGATE_JOURNAL__ENABLED=true)")
    source = settings.data.source
    if source == LIVE_DATA_SOURCE or not real:
        return None
    named = " and ".join(f"{field}={name!r}" for field, name in real)
    instead = " and ".join(
        'broker.primary = "paper" (ORDERGATE_BROKER__PRIMARY=paper)' if field == "broker.primary"
        else "no broker.fallback (unset ORDERGATE_BROKER__FALLBACK)" for field, _ in real)
    return (f"invalid setting {named} with data.source={source!r}: a real broker trades only on live bars and the"
            f' live clock; set data.source = "alpaca" (ORDERGATE_DATA__SOURCE=alpaca, with [alpaca] keys for the'
            f" data feed), or trade {source} bars on the paper broker: {instead}")


__all__ = ["LIVE_DATA_SOURCE", "REAL_BROKERS", "live_rule_problem"]
