"""Byte layouts: the one place that knows where each byte of a datagram sits.

* :mod:`ptt.wire.voice`: the voice header (flags, pack/unpack, peeks for the hot paths), the
  session MAC trailer and the place of the talker signature.
* :mod:`ptt.wire.control`: control messages as msgpack arrays (framing, field encoding and
  validation, size ceilings, the heartbeat fast path), for any table of message dataclasses; the
  protocol's own table and its bound codec are in ``ptt.protocol.messages``.

The sealed envelope around control messages (``ptt.crypto.channel``) and a voice frame's AEAD
(``ptt.crypto.voice``) belong to crypto, which builds on these. Sans-I/O and below everything
else: this package imports nothing from ptt but ``ptt.errors``.
"""
