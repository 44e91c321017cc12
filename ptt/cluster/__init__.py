"""The cluster's adapters: engines, group ownership, the directory and the bus (issue #17).

I/O is allowed here, beside ``ptt.server``; the cluster's rules live sans-I/O in
``ptt/protocol/cluster_*.py`` and its byte layouts in ``ptt/wire/cluster.py``.
"""
