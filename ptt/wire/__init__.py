"""Byte layouts: the one place that knows where each byte of a datagram sits.

* :mod:`ptt.wire.voice`: the voice header (flags, pack/unpack, peeks for the hot paths), the
  session MAC trailer and the place of the talker signature.

Sans-I/O and below everything else: it imports nothing from ptt but ``ptt.errors``, so the
protocol cores, crypto and the adapters all build on it.
"""
