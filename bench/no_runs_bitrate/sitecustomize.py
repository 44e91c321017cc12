"""Bench only, never a product setting: a directory to put first on ``PYTHONPATH`` of a ``ptt
talk`` process so that it runs without the Opus rate against loss runs (``RUNS_BITRATE``):
``RedundancyPolicy`` then asks for no least bitrate, everything else as built. Python imports
``sitecustomize`` at start-up. ``bench/bench_voice_quality.py --runs-bitrate off`` uses it, to
compare the two on the same build."""

import ptt.media.sender

setattr(ptt.media.sender, "RUNS_BITRATE", None)  # typed int: None asks for no least rate
