"""The spec's "Persistent State Manager" example; only the import differs."""

from pipeline import PersistentStateManager

# State survives process restarts (atomic JSON file)
state_mgr = PersistentStateManager(state_dir=".bot_state")

# Kill switch
state_mgr.activate_kill_switch("Daily loss limit exceeded")
is_active = state_mgr.is_kill_switch_active()
state_mgr.deactivate_kill_switch()

# Daily P&L tracking
state_mgr.record_pnl(150.0)
daily_pnl = state_mgr.get_daily_pnl()

# Circuit breaker
state_mgr.increment_circuit_breaker()
cb_status = state_mgr.get_circuit_breaker_status()

# Day rollover
state_mgr.check_day_rollover()
print(f"kill switch was active: {is_active}; daily P&L {daily_pnl}; circuit breaker {cb_status}")
