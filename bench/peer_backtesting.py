"""The floor of the replay figure: backtesting.py's EMA cross on the same CSV, run in the bench's own venv.

Run by `bench.replay_file` as `.bench-venv/bin/python bench/peer_backtesting.py FILE.csv` (it imports nothing
of ordergate): per symbol, a long/short EMA(5)/EMA(12) cross (`Backtest.run`), timed without the CSV read
(wall clock, and CPU time for the per-CPU-second figure).
Prints one JSON line: bars, seconds, bars/s, trades and orders (an entry and an exit per trade).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover


def ema(values: np.ndarray, span: int) -> np.ndarray:
    return pd.Series(values).ewm(span=span, adjust=False).mean().to_numpy()


class EmaCross(Strategy):
    fast = 5
    slow = 12

    def init(self) -> None:
        self.f = self.I(ema, self.data.Close, self.fast)
        self.s = self.I(ema, self.data.Close, self.slow)

    def next(self) -> None:
        if crossover(self.f, self.s):
            self.position.close()
            self.buy()
        elif crossover(self.s, self.f):
            self.position.close()
            self.sell()


def main(path: str) -> None:
    frame = pd.read_csv(path)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    frame = frame.rename(columns={"open": "Open", "high": "High", "low": "Low", "close": "Close",
                                  "volume": "Volume"})
    seconds = cpu = 0.0
    bars = trades = 0
    for _, rows in frame.groupby("symbol", sort=True):
        data = rows.set_index("timestamp")[["Open", "High", "Low", "Close", "Volume"]]
        data.index = data.index.tz_localize(None)
        bt = Backtest(data, EmaCross, cash=1_000_000, commission=0.0, finalize_trades=True)
        started, cpu0 = time.perf_counter(), time.process_time()
        stats = bt.run()
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu0
        bars += len(data)
        trades += int(stats["# Trades"])
    print(json.dumps({"bars": bars, "seconds": seconds, "bars_per_s": bars / seconds,
                      "cpu_bars_per_s": bars / cpu, "trades": trades, "orders": 2 * trades}))


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    main(sys.argv[1])
