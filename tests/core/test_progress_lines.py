"""Progress in a log file: a loop still running after UNLEARNKIT_LOG_INTERVAL seconds prints a line
with its ETA (a bench or search redirected to a file said nothing for 40 minutes before)."""

from __future__ import annotations

import pytest

from unlearnkit.training import loop


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(loop, "_clock", fake)
    monkeypatch.setenv("UNLEARNKIT_QUIET", "0")  # captured stderr is not a terminal: the line bar
    monkeypatch.setenv("UNLEARNKIT_LOG_INTERVAL", "60")
    return fake


def _lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_a_long_loop_prints_a_progress_line_with_its_eta_once_per_interval(clock, capsys):
    bar = loop.progress(None, 10, "tune gan", unit="trial", leave=True)
    clock.t += 30
    bar.n = 1
    bar.refresh()
    assert _lines(capsys) == []  # under the interval: nothing yet
    clock.t += 31
    bar.n = 2
    bar.set_postfix_str("best 1.2 (#1)")
    assert _lines(capsys) == ["tune gan: 2 trials of 10, 20%, 01:01 elapsed, ETA 04:04 (best 1.2 (#1))"]
    clock.t += 30
    bar.refresh()
    assert _lines(capsys) == []  # 30 s after the last line
    clock.t += 30
    bar.n = 5
    bar.refresh()
    assert _lines(capsys) == ["tune gan: 5 trials of 10, 50%, 02:01 elapsed, ETA 02:01 (best 1.2 (#1))"]
    bar.close()
    (summary,) = _lines(capsys)
    assert summary.startswith("tune gan: 5 trials in ")


def test_the_epochs_of_one_run_share_the_interval_and_the_eta_counts_the_epochs_left(clock, capsys):
    out = []
    for epoch in range(1, 5):
        bar = loop.progress(None, 10, f"retrain {epoch}/4")
        clock.t += 25  # each epoch: 10 steps in 25 s
        bar.n = 10
        bar.refresh()
        out += _lines(capsys)
        bar.close()
        out += _lines(capsys)
    # Epoch 3 ends 75 s into the run: the first line; epoch 4 ends 25 s after it: no second one.
    assert out[0] == "retrain: epoch 3/4, 01:15 elapsed, ETA 00:25"
    assert out[1].startswith("retrain: 4 epochs, 40 steps in ")
    assert len(out) == 2
    assert loop._epoch_lines == {}  # the finished run leaves nothing for the next run of that name


def test_the_bench_bar_counting_estimated_cost_shows_a_share_not_a_count(clock, capsys):
    bar = loop.progress(None, 200.0, "bench", leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
    clock.t += 600
    bar.update(50.0)
    bar.set_postfix_str("3/28 jobs, retrain/random:0.1/retrain/seed100")
    assert _lines(capsys) == ["bench: 25%, 10:00 elapsed, ETA 30:00 (3/28 jobs, retrain/random:0.1/retrain/seed100)"]
    bar.close()


@pytest.mark.parametrize("interval", ["0", "-1"])
def test_an_interval_of_zero_turns_the_progress_lines_off(clock, capsys, monkeypatch, interval):
    monkeypatch.setenv("UNLEARNKIT_LOG_INTERVAL", interval)
    bar = loop.progress(None, 10, "audit", unit="step")
    clock.t += 3600
    bar.n = 5
    bar.refresh()
    assert _lines(capsys) == []
    bar.close()
    assert _lines(capsys)[0].startswith("audit: 5 steps in ")


def test_quiet_prints_nothing_at_all(clock, capsys, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_QUIET", "1")
    bar = loop.progress(None, 10, "audit", unit="step")
    clock.t += 3600
    bar.n = 5
    bar.refresh()
    bar.close()
    assert capsys.readouterr().err == ""


def test_a_bad_interval_warns_once_naming_the_variable_and_keeps_the_default(clock, capsys, monkeypatch):
    monkeypatch.setenv("UNLEARNKIT_LOG_INTERVAL", "1m")
    loop._parse_interval.cache_clear()
    with pytest.warns(UserWarning, match=r"UNLEARNKIT_LOG_INTERVAL='1m' is not a number of seconds; using 60"):
        bar = loop.progress(None, 10, "audit", unit="step")
    clock.t += 61
    bar.n = 5
    bar.refresh()
    assert _lines(capsys)[0].startswith("audit: 5 steps of 10, 50%, 01:01 elapsed")
    bar.close()
