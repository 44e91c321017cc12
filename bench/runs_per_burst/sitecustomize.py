"""Bench only, never a product setting: a directory to put first on ``PYTHONPATH`` of a ``ptt
listen`` process so that its loss reports count runs of lost frames as before
``BurstReceiver._period_runs``: by the jitter buffer's burst-long counter, so that a run going on
from the last report period is no run of the next one (lost frames and a mean run of 0).
Python imports ``sitecustomize`` at start-up. ``bench/bench_voice_quality.py --build before``
uses it, to compare on the same build."""

from ptt.media.receiver import BurstReceiver, LossReport


def _loss_report(self: BurstReceiver) -> LossReport:
    st = self.buffer.stats
    now = (st.lost, st.lost + st.played_received, st.loss_runs, st.late)
    before = getattr(self, "_before_reported", (0, 0, 0, 0))
    missed, due, runs, late = (a - b for a, b in zip(now, before, strict=True))
    self._before_reported = now  # type: ignore[attr-defined]
    lost = max(0, missed - late)
    runs = min(runs, lost)
    return LossReport(due, lost / due if due else 0.0, lost / runs if runs else 0.0, lost, runs,
                      late)


BurstReceiver.loss_report = _loss_report  # type: ignore[method-assign]
