"""ptt: open push-to-talk group paging.

A UDP floor-control server grants the right to talk per group; lightweight clients
capture, Opus-encode and send 20 ms voice frames by multicast or through the server's relay.
"""

__version__ = "0.1.0"
