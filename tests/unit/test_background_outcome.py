"""tests/background.py under xdist: the campaign worker's outcome files, as another worker reads them."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.background import OutcomeFile, _write_outcome


def _done(value: object = None, error: BaseException | None = None) -> Future[object]:
    future: Future[object] = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future


def test_a_value_comes_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "m.key.outcome"
    _write_outcome(path, _done({"fills": 3, "losses": []}))
    assert OutcomeFile(path).result(timeout=1) == {"fills": 3, "losses": []}


def test_an_error_is_raised_in_the_waiting_test(tmp_path: Path) -> None:
    path = tmp_path / "m.key.outcome"
    _write_outcome(path, _done(error=AssertionError("lost a fill")))
    with pytest.raises(AssertionError, match="lost a fill"):
        OutcomeFile(path).result(timeout=1)


def test_an_outcome_that_will_not_pickle_fails_with_its_text(tmp_path: Path) -> None:
    path = tmp_path / "m.key.outcome"
    _write_outcome(path, _done(lambda: None))
    with pytest.raises(RuntimeError, match="could not be pickled"):
        OutcomeFile(path).result(timeout=1)


def test_no_file_is_a_timeout_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError, match=r"gw0 wrote no outcome to .*missing\.outcome"):
        OutcomeFile(tmp_path / "missing.outcome").result(timeout=0.3)
