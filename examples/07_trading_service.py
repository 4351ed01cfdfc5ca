"""The spec's "High-Level Trading Service" example; the import differs (the standalone service is wired by the
daemon package: a paper broker of its own, offline) and the awaits run inside `asyncio.run(main())`."""

import asyncio

from daemon import TradingConfig, TradingService


async def main() -> None:
    config = TradingConfig(paper_trading=True, initial_cash=100_000)
    service = TradingService(config)
    await service.connect()

    # Simple buy/sell
    result = await service.buy("AAPL", dollars=5_000)
    result = await service.sell("AAPL", shares=25)

    # Rebalance to target weights
    target = {"AAPL": 0.30, "MSFT": 0.30, "GOOGL": 0.40}
    proposal = await service.preview_rebalance(target)
    print(f"Trades needed: {len(proposal.trades)}")
    print(f"Estimated cost: ${proposal.estimated_cost:.2f}")
    proposal.approved = True
    executed = await service.execute_rebalance(proposal)
    print(f"Sold: {result.filled_qty:g} AAPL; rebalance ok: {executed.ok}")
    await service.close()


asyncio.run(main())
