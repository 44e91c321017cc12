"""Bench only, never a product setting: a directory to put first on ``PYTHONPATH`` of a ``ptt
talk`` process so that its start (``START_REDUNDANCY``) falls at the first report even when that
report saw no loss, as before ``RedundancyPolicy.GUESS_REPORTS``; everything else as built.
Python imports ``sitecustomize`` at start-up. ``bench/bench_voice_quality.py --start-guess off``
uses it, to compare the two on the same build."""

import ptt.media.sender

ptt.media.sender.RedundancyPolicy.GUESS_REPORTS = 1
