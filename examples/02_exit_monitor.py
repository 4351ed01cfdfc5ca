"""The spec's "Exit Monitoring (7 Strategies)" example; only the imports differ, and the two inputs the spec
leaves undefined (`current_cloud_states`, `recent_bars_df`) are given: no cloud history yet, no bars."""

from pipeline import ExecutorConfig, ExitMonitor, ExitSignal, Position  # noqa: F401

current_cloud_states = []  # the ticker's recent cloud states, oldest first (none yet: the cloud exits skip)
recent_bars_df = None      # accepted for the spec's signature; the cloud states carry the closes

monitor = ExitMonitor(ExecutorConfig(
    reward_to_risk_target=2.0,
    time_stop_minutes=120,
    eod_close_time="15:55",
    trailing_stop_cloud="pullback",
))

position = Position(
    ticker="AAPL", direction="long",
    entry_price=180.0, current_price=170.0,
    shares=100, stop_loss=175.0,
    target_price=190.0,
)

# Check all 7 exit conditions
exit_signal = monitor.check_all(
    position=position,
    current_price=170.0,
    cloud_states=current_cloud_states,  # For cloud flip detection
    bars=recent_bars_df,                # For trailing stop, exhaustion
)

if exit_signal:
    print(f"EXIT: {exit_signal.exit_type} (priority {exit_signal.priority})")
    print(f"Reason: {exit_signal.reason}")
else:
    print("No exit signal -- hold position")

# Individual exit checks (available separately)
stop = monitor.check_stop_loss(position, current_price=170.0)
target = monitor.check_profit_target(position, current_price=195.0)
time_exit = monitor.check_time_stop(position)
eod = monitor.check_eod_close(position)
