"""The peer datagram: a voice frame or a floor message from one cluster node to another.

Voice between nodes goes by UDP, node to node, as MCPTT carries media between the participating
and controlling functions over RTP/UDP; so do the floor messages a client waits on (a request
forwarded to its group's home, the home's news), as MCPTT carries floor control between those
functions directly (TS 23.379, TS 24.380). Everything else between nodes stays on NATS
(``ptt.wire.cluster``). Each node listens on a *peer port* (``ptt.cluster.config``: ``peer``)
and sends another node a datagram of this layout::

    0      1      2      3      4                    4+n            12+n           20+n
    +------+------+------+------+--------------------+--------------+--------------+---------+-------+
    | 'P'  | ver  | kind | n    | sender node id (n) | epoch    u64 | counter  u64 | payload | TAG16 |
    +------+------+------+------+--------------------+--------------+--------------+---------+-------+

* ``kind``: what the payload is, :data:`VOICE` (a voice frame as the sender's relay forwards
  it, ``ptt.wire.voice``, MAC removed, still the talker's ciphertext in an encrypted group) or
  :data:`CONTROL` (one ``ptt.wire.cluster`` message, as it would cross the bus);
* ``epoch``: the sender's life (a number it picks at start and announces over the bus,
  ``ptt.wire.cluster.Peer``); a receiver takes datagrams of the epoch it was told alone, so
  a datagram recorded from an earlier life of the node is refused;
* ``counter``: counts the sender's datagrams within its epoch, both kinds, for the receiver's
  replay window (``ptt.crypto.replay``);
* ``TAG16``: keyed BLAKE2s-128 of everything before it under the cluster's peer key
  (:func:`peer_key`, derived from the secret every node of a cluster already shares).

This module is the only one that knows where a field sits. :func:`open_datagram` checks the
layout and the tag and nothing else: the epoch, the replay window and whether the payload is
what its kind says are the receiver's (``ptt.protocol.cluster_peers``).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from ptt.errors import ProtocolError

__all__ = [
    "MAX_PEER_DATAGRAM",
    "PEER_MAGIC",
    "PEER_VERSION",
    "CONTROL",
    "VOICE",
    "TAG_SIZE",
    "ForgedDatagram",
    "PeerDatagram",
    "fits",
    "key_check",
    "open_datagram",
    "peer_key",
    "seal",
]

PEER_MAGIC = 0x50  # "P"
PEER_VERSION = 2
VOICE = 1  # the payload is a voice frame
CONTROL = 2  # the payload is a node-to-node message (ptt.wire.cluster)
KINDS = (VOICE, CONTROL)
TAG_SIZE = 16
MAX_NODE_ID = 64  # ptt.cluster.config's node ids: 1-64 characters
# a voice frame (ptt.wire.voice.MAX_VOICE_DATAGRAM) and this header; a floor message larger
# than its room goes by the bus (a news of a queue of hundreds of names)
MAX_PEER_DATAGRAM = 2_048
_HEAD = struct.Struct("!BBBB")
_NUMBERS = struct.Struct("!QQ")
_MIN = _HEAD.size + 1 + _NUMBERS.size + TAG_SIZE
_PEER_KEY_INFO = b"ptt-cluster-peer-v1"
_KEY_CHECK_INFO = b"ptt-cluster-peer-key-check-v1"
_blake2s = hashlib.blake2s
_compare = hmac.compare_digest


class ForgedDatagram(ProtocolError):
    """A peer datagram whose tag is wrong: not made with the cluster's peer key."""


@dataclass(frozen=True, slots=True)
class PeerDatagram:
    node: str
    epoch: int
    counter: int
    frame: bytes  # the payload: a voice frame, or a cluster message (``kind``)
    kind: int = VOICE


def peer_key(shared_secret: bytes) -> bytes:
    """The key of the peer datagrams' tags, from a secret every node of the cluster holds (the
    server's stored secret: the cluster's PostgreSQL directory, or copies of one database).
    Its own derivation, so the tag key says nothing of the secret's other uses."""
    if not shared_secret:
        raise ProtocolError("the peer key needs a non-empty shared secret")
    return hmac.digest(shared_secret, _PEER_KEY_INFO, "sha256")


def key_check(key: bytes) -> int:
    """A 56-bit number that two nodes holding the same peer key compute alike, and that tells
    nothing of the key: announced with the peer port (``ptt.wire.cluster.Peer``), so a node
    whose key differs (its database not a copy of the others') is told apart at once instead
    of having every datagram refused as forged."""
    return int.from_bytes(_blake2s(_KEY_CHECK_INFO, digest_size=7, key=key).digest(), "big")


def fits(node: str, payload: bytes) -> bool:
    """Does ``payload`` from ``node`` fit in one peer datagram?"""
    return (_HEAD.size + len(node.encode()) + _NUMBERS.size + len(payload) + TAG_SIZE
            <= MAX_PEER_DATAGRAM)


def seal(key: bytes, node: str, epoch: int, counter: int, frame: bytes,
         kind: int = VOICE) -> bytes:
    """The datagram carrying ``frame`` (of ``kind``) from ``node``: header, frame, tag."""
    sender = node.encode()
    if not 0 < len(sender) <= MAX_NODE_ID:
        raise ProtocolError(f"a node id is 1-{MAX_NODE_ID} bytes, not {len(sender)}")
    if kind not in KINDS:
        raise ProtocolError(f"peer datagram kind {kind}")
    body = (_HEAD.pack(PEER_MAGIC, PEER_VERSION, kind, len(sender)) + sender
            + _NUMBERS.pack(epoch, counter) + frame)
    return body + _blake2s(body, digest_size=TAG_SIZE, key=key).digest()


def open_datagram(key: bytes, data: bytes) -> PeerDatagram:
    """The datagram's fields once its tag is right under ``key``. ProtocolError for anything
    that is not a peer datagram; :class:`ForgedDatagram` (one of them) for a wrong tag."""
    size = len(data)
    if size < _MIN or size > MAX_PEER_DATAGRAM:
        raise ProtocolError(f"peer datagram of {size} bytes")
    magic, version, kind, n = _HEAD.unpack_from(data)
    if magic != PEER_MAGIC:
        raise ProtocolError(f"not a peer datagram (first byte {magic:#04x})")
    if version != PEER_VERSION:
        raise ProtocolError(f"peer datagram version {version}, expected {PEER_VERSION}")
    if kind not in KINDS:
        raise ProtocolError(f"peer datagram of kind {kind}")
    start = _HEAD.size + n
    end = size - TAG_SIZE
    if not 0 < n <= MAX_NODE_ID or start + _NUMBERS.size > end:
        raise ProtocolError("peer datagram: bad node id length")
    if not _compare(_blake2s(data[:end], digest_size=TAG_SIZE, key=key).digest(), data[end:]):
        raise ForgedDatagram("peer datagram: wrong tag")
    try:
        node = data[_HEAD.size:start].decode()
    except UnicodeDecodeError:
        raise ProtocolError("peer datagram: node id not UTF-8") from None
    epoch, counter = _NUMBERS.unpack_from(data, start)
    return PeerDatagram(node, epoch, counter, data[start + _NUMBERS.size:end], kind)
