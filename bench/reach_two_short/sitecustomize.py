"""Bench only, never a product setting: a directory to put first on ``PYTHONPATH`` of a ``ptt
listen`` process so that its jitter buffer grows, against copies spread against runs, two frames
short of their reach whatever the delay its burst started at (``ptt.media.jitter.REACH_JITTERS``
None), as before that setting; everything else as built. Python imports ``sitecustomize`` at
start-up. ``bench/bench_voice_quality.py --before`` uses it, to compare on the same build."""

import ptt.media.jitter

ptt.media.jitter.REACH_JITTERS = None
