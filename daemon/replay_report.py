"""`ordergate replay --report FILE.html`: one self-contained HTML page a trader reads.

The equity curve against buy-and-hold, the drawdown, each symbol's price with the trades on it (entries and
exits, coloured by outcome), and the figures: performance, signals by stage, top rejection reasons, trades by
exit type. Charts are plotly with plotly.js inlined in the page: no CDN, no network, opens offline.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from daemon.replay_summary import percent

EQUITY_COLOUR = "#d62728"   # the strategy's equity line (the screenshot test looks for it)
HOLD_COLOUR = "#7f7f7f"
DRAWDOWN_COLOUR = "#1f77b4"
WIN_COLOUR, LOSS_COLOUR = "#2ca02c", "#9467bd"


def drawdown(values: list[float]) -> list[float]:
    """Drawdown from the running peak at each point, as a negative fraction (0 at a new high)."""
    peak, out = 0.0, []
    for v in values:
        peak = max(peak, v)
        out.append(v / peak - 1.0 if peak > 0 else 0.0)
    return out


def _equity_figure(result: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    curve, hold = result["equity_curve"], result["buy_and_hold_curve"]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.05,
                        subplot_titles=("Equity: strategy vs buy-and-hold", "Drawdown"))
    days, values = [d for d, _ in curve], [v for _, v in curve]
    fig.add_trace(go.Scatter(x=days, y=values, name="strategy", line={"color": EQUITY_COLOUR, "width": 3}),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=[d for d, _ in hold], y=[v for _, v in hold], name="buy & hold",
                             line={"color": HOLD_COLOUR, "width": 1.5, "dash": "dot"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=days, y=[x * 100 for x in drawdown(values)], name="drawdown %", fill="tozeroy",
                             line={"color": DRAWDOWN_COLOUR, "width": 1}), row=2, col=1)
    fig.update_layout(height=620, template="plotly_white", margin={"t": 40, "b": 30, "l": 60, "r": 20},
                      legend={"orientation": "h", "y": 1.08})
    return fig


def _trades_figure(symbol: str, closes: list[tuple[str, float]], trades: list[dict[str, Any]]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[d for d, _ in closes], y=[c for _, c in closes], name=f"{symbol} close",
                             line={"color": "#333333", "width": 1}))
    mine = [t for t in trades if t["symbol"] == symbol]
    fig.add_trace(go.Scatter(
        x=[t["entry_time"][:10] for t in mine], y=[t["entry_price"] for t in mine], mode="markers", name="entry",
        marker={"symbol": ["triangle-up" if t["direction"] == "long" else "triangle-down" for t in mine], "size": 9,
                "color": "#ff7f0e"},
        text=[f"{t['direction']} {t['quantity']:g} @ {t['entry_price']:.2f}" for t in mine]))
    fig.add_trace(go.Scatter(
        x=[t["exit_time"][:10] for t in mine], y=[t["exit_price"] for t in mine], mode="markers", name="exit",
        marker={"symbol": "x", "size": 8, "color": [WIN_COLOUR if t["pnl"] > 0 else LOSS_COLOUR for t in mine]},
        text=[f"{t['exit_type']}: {t['pnl']:+,.2f}" for t in mine]))
    fig.update_layout(title=f"{symbol}: {len(mine)} trades on the price", height=380, template="plotly_white",
                      margin={"t": 40, "b": 30, "l": 60, "r": 20})
    return fig


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures_html(result: dict[str, Any]) -> str:
    perf, hold = result["performance"], result["buy_and_hold"]
    rows = [[label, f"{p['total_return']:.2%}", percent(p['annualised_return']), f"{p['sharpe']:.2f}",
             f"{p['max_drawdown']:.2%}", f"{p.get('exposure', 0):.1%}", f"{p['final_equity']:,.2f}"]
            for label, p in (("strategy", perf), ("buy & hold", hold))]
    parts = ["<h2>Performance</h2>", _table(rows, ["", "total", "annualised", "Sharpe", "max drawdown", "exposure",
                                                  "final equity"])]
    strategies = result.get("strategies") or {}
    if strategies and result.get("account"):  # each strategy's share; the columns add up to the account's line
        parts += ["<h2>By strategy</h2>", _table(
            [[name, s["trades"], s["wins"], f"{s['realized_pnl']:,.2f}", f"{s['unrealized_pnl']:,.2f}",
              f"{s['pnl']:,.2f}", f"{s['return']:.2%}"]
             for name, s in [*strategies.items(), ("account", result["account"])]],
            ["strategy", "trades", "wins", "realized", "unrealized", "P&L", "return"])]
    by_exit = result["total"].get("by_exit_type") or {}
    parts += ["<h2>Trades by exit type</h2>", _table(
        [[k, v["trades"], v["wins"], f"{v['gross_pnl']:,.2f}"] for k, v in sorted(by_exit.items())],
        ["exit type", "trades", "wins", "gross P&L"])]
    stages = [[stage, outcome, n] for stage, outcomes in result["stages"].items() for outcome, n in outcomes.items()]
    parts += ["<h2>Signals by stage</h2>", _table(stages, ["stage", "outcome", "signals"])]
    parts += ["<h2>Top rejection reasons</h2>", _table(
        [[r["count"], f"{r['stage']}/{r['kind']}", r["example"]] for r in result["top_rejections"]],
        ["count", "kind", "example"])]
    return "\n".join(parts)


def render_report(result: dict[str, Any]) -> str:
    """The report page as one HTML string (plotly.js inlined once)."""
    figures = [_equity_figure(result)]
    closes: dict[str, list[tuple[str, float]]] = result.get("closes") or {}
    figures += [_trades_figure(symbol, series, result["trades"]) for symbol, series in sorted(closes.items())]
    charts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
              for i, fig in enumerate(figures)]
    title = html.escape(f"ordergate replay: {result['file']}")
    summary = html.escape(f"{result['bars']:,} {result['timeframe']} bars, {result['signals']} signals, "
                          f"{result['entries']} entries, {result['total']['trades']} closed trades")
    style = ("body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
            f"<body><h1>{title}</h1><p>{summary}</p>{charts[0]}{_figures_html(result)}"
            f"<h2>Trades on the price</h2>{''.join(charts[1:])}</body></html>")


def write_report(result: dict[str, Any], path: Path) -> None:
    """Write the report page to `path` (atomically enough for a report: a temp file renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(result), encoding="utf-8")
    tmp.replace(path)
