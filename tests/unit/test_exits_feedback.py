"""FeedbackTracker: rolling Sharpe per signal type moves sizing weights within bounds, every N trades."""

from __future__ import annotations

import json

import pytest

from config.settings import PipelineConfig
from pipeline.record.feedback import FeedbackTracker, rolling_sharpe

GOOD = [1.5, 2.0, -0.5, 1.0, 2.2]
BAD = [-1.0, -0.8, 0.4, -1.0, -0.9]


def config(**overrides: object) -> PipelineConfig:
    base = {"feedback_adjust_every_n_trades": 10, "feedback_window_trades": 20,
            "feedback_weight_min": 0.5, "feedback_weight_max": 1.5}
    return PipelineConfig(**{**base, **overrides})


def feed(tracker: FeedbackTracker, trades: list[tuple[str, float]]) -> list[list]:
    return [tracker.record_trade(kind, r) for kind, r in trades]


def test_rolling_sharpe():
    assert rolling_sharpe([1.0, 3.0]) == pytest.approx(2.0 / 2 ** 0.5)
    assert rolling_sharpe([1.0]) == 0.0
    assert rolling_sharpe([0.0, 0.0, 0.0]) == 0.0
    assert rolling_sharpe([1.0, 1.0]) > 0 > rolling_sharpe([-1.0, -1.0])


def test_weights_move_only_every_n_trades_up_for_good_down_for_bad():
    tracker = FeedbackTracker(config())
    trades = [(k, r) for pair in zip(GOOD, BAD, strict=True) for k, r in zip(("good", "bad"), pair, strict=True)]
    results = feed(tracker, trades[:9])
    assert results == [[]] * 9
    assert tracker.weight("good") == tracker.weight("bad") == 1.0          # not yet: 9 of 10
    adjustments = tracker.record_trade(*trades[9])
    assert {a.signal_type for a in adjustments} == {"good", "bad"}
    by_type = {a.signal_type: a for a in adjustments}
    assert 1.0 < tracker.weight("good") <= 1.5
    assert 0.5 <= tracker.weight("bad") < 1.0
    good = by_type["good"]
    assert (good.old_weight, good.new_weight, good.n_trades) == (1.0, tracker.weight("good"), 5)
    assert good.sharpe == pytest.approx(rolling_sharpe(GOOD), abs=1e-6) and good.changed
    assert by_type["bad"].sharpe < 0
    # one more trade: no adjustment until the next batch of 10
    assert tracker.record_trade("good", -5.0) == []
    assert tracker.weight("good") == good.new_weight


def test_weights_are_clipped_to_bounds():
    tracker = FeedbackTracker(config(feedback_weight_min=0.7, feedback_weight_max=1.2))
    feed(tracker, [("great", 1.0 + 0.01 * i) for i in range(5)] + [("awful", -1.0 - 0.01 * i) for i in range(5)])
    assert tracker.weight("great") == 1.2
    assert tracker.weight("awful") == 0.7


def test_types_with_too_few_trades_stay_at_one():
    tracker = FeedbackTracker(config(), min_trades=5)
    adjustments = feed(tracker, [("good", r) for r in [*GOOD, *GOOD[:1]]] + [("rare", 3.0)] * 4)[-1]
    assert tracker.weight("rare") == 1.0
    rare = next(a for a in adjustments if a.signal_type == "rare")
    assert rare.n_trades == 4 and not rare.changed
    assert tracker.weight("good") > 1.0
    assert tracker.weight("never_seen") == 1.0


def test_window_keeps_only_the_last_trades():
    tracker = FeedbackTracker(config(feedback_window_trades=5, feedback_adjust_every_n_trades=5))
    feed(tracker, [("t", r) for r in BAD])
    assert tracker.weight("t") < 1.0
    feed(tracker, [("t", r) for r in GOOD])          # the bad ones fall out of the window
    assert tracker.trade_count("t") == 5
    assert tracker.weight("t") > 1.0


def test_disabled_feedback_keeps_weights_at_one():
    tracker = FeedbackTracker(config(enable_feedback_loop=False))
    feed(tracker, [("good", r) for r in GOOD * 2])
    assert tracker.weight("good") == 1.0


def test_persistence_round_trip():
    cfg = config()
    tracker = FeedbackTracker(cfg)
    feed(tracker, [("good", r) for r in GOOD] + [("bad", r) for r in BAD] + [("good", 0.3)] * 3)
    data = json.loads(json.dumps(tracker.to_dict()))
    restored = FeedbackTracker.from_dict(data, cfg)
    assert restored.to_dict() == tracker.to_dict()
    assert restored.weight("good") == tracker.weight("good") > 1.0
    # the batch counter survives: 7 more trades complete the next batch of 10 in both
    more = [("bad", -1.0)] * 7
    assert feed(restored, more)[-1] and feed(tracker, more)[-1]
    assert restored.weights() == tracker.weights()


@pytest.mark.parametrize(("data", "field"), [
    ({"returns": {"good": [1.0, "x"]}}, r"returns\['good'\]\[1\]"),
    ({"weights": {"good": None}}, r"weights\['good'\]"),
    ({"total_trades": -1}, "total_trades"),
    ([], "feedback state"),
])
def test_bad_persisted_state_names_the_field(data, field):
    with pytest.raises(ValueError, match=field):
        FeedbackTracker.from_dict(data, config())


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "1.0", None, True])
def test_bad_trade_value_is_rejected(value):
    with pytest.raises(ValueError, match="r_multiple_or_return"):
        FeedbackTracker(config()).record_trade("good", value)
