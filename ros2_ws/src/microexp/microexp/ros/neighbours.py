"""Who publishes a recorded topic: the session's own nodes, or a neighbour on the same DDS domain.

From the ROS graph (``get_publishers_info_by_topic``): node name and namespace, the endpoint GID, and from
the GID's Fast DDS GUID prefix the host id (bytes 2-3: equal for every process of one machine) and the low
16 bits of the process id (bytes 4-5). A publisher is **expected** when its node is one of the session's
graph (``expected`` fully qualified names; empty = any name) and, when the session runs in one process
(``same_process``), it shares the recorder's GUID prefix, else it runs on the recorder's host (unless
``allow_remote``). Anything else is **foreign**: its messages are still recorded, but the topic, the
segment and the summary say so.
"""

from __future__ import annotations

import time

UNKNOWN = "_NODE_NAME_UNKNOWN_"
UNKNOWN_GRACE_S = 3.0


def _gid_bytes(info) -> bytes:
    gid = info.endpoint_gid
    return bytes(gid) if not isinstance(gid, bytes) else gid


def describe(info) -> dict:
    gid = _gid_bytes(info)
    ns = info.node_namespace or "/"
    return {
        "node": (ns.rstrip("/") + "/" + info.node_name) if info.node_name else "",
        "gid": gid[:16].hex(),
        "host_id": gid[2:4].hex(),
        "pid16": int.from_bytes(gid[4:6], "little"),
    }


class PublisherWatch:
    """Tracks the publishers of a set of topics for one node (the recorder)."""

    def __init__(self, node, expected: list[str] | None = None, same_process: bool = False, allow_remote: bool = False):
        self.node = node
        self.expected = {e.rstrip("/") if e != "/" else e for e in (expected or [])}
        self.same_process = same_process
        self.allow_remote = allow_remote
        self.publishers: dict[str, dict[str, dict]] = {}  # topic -> gid -> entry
        self._own_prefix: bytes | None = None
        self._unnamed: dict[str, float] = {}

    def set_expected(self, expected: list[str], same_process: bool | None = None) -> None:
        self.expected = {e.rstrip("/") for e in expected}
        if same_process is not None:
            self.same_process = same_process
        for entries in self.publishers.values():  # re-judge what was seen so far
            for e in entries.values():
                e["foreign"] = self._foreign_reason(bytes.fromhex(e["gid"]), e["node"])

    def own_prefix(self, probe_topic: str) -> bytes | None:
        """The GUID prefix (12 bytes) of this node's participant, from one of its own publishers."""
        if self._own_prefix is None:
            me = self.node.get_fully_qualified_name()
            for info in self.node.get_publishers_info_by_topic(probe_topic):
                if describe(info)["node"] == me:
                    self._own_prefix = _gid_bytes(info)[:12]
        return self._own_prefix

    def _foreign_reason(self, gid: bytes, node: str) -> str:
        if self.expected and node not in self.expected:
            return f"node {node or '(unnamed)'} is not part of this session's graph"
        own = self._own_prefix
        if own is not None:
            if self.same_process and gid[:12] != own:
                return "published from another process than this session's"
            if not self.allow_remote and gid[2:4] != own[2:4]:
                return "published from another host"
        return ""

    def update(self, topics, probe_topic: str) -> list[tuple[str, dict]]:
        """Look at the publishers of ``topics``; returns the (topic, entry) pairs of foreign publishers seen
        for the first time."""
        self.own_prefix(probe_topic)
        new_foreign = []
        for topic in topics:
            known = self.publishers.setdefault(topic, {})
            infos = self.node.get_publishers_info_by_topic(topic)
            present = set()
            for info in infos:
                entry = describe(info)
                present.add(entry["gid"])
                if entry["gid"] in known:
                    continue
                if UNKNOWN in entry["node"]:
                    # discovery announces endpoints before their node's name: judge once the name is known, or
                    # after UNKNOWN_GRACE_S (a plain DDS program never names a node)
                    first = self._unnamed.setdefault(entry["gid"], time.monotonic())
                    if time.monotonic() - first < UNKNOWN_GRACE_S:
                        continue
                entry["foreign"] = self._foreign_reason(_gid_bytes(info), entry["node"])
                known[entry["gid"]] = entry
                if entry["foreign"]:
                    new_foreign.append((topic, entry))
            for gid, e in known.items():
                e["present"] = gid in present
        return new_foreign

    def listing(self) -> dict:
        """``{topic: [publisher entries]}`` of every topic that had a publisher during the session."""
        return {
            t: [
                {k: e[k] for k in ("node", "gid", "host_id", "pid16", "foreign")}
                for e in sorted(v.values(), key=lambda e: (e["node"], e["gid"]))
            ]
            for t, v in sorted(self.publishers.items())
            if v
        }

    def foreign(self, present_only: bool = False) -> list[dict]:
        """Foreign publishers seen (``present_only``: those on the graph at the last look), with their topic."""
        return [
            dict(topic=t, **{k: e[k] for k in ("node", "gid", "host_id", "pid16", "foreign")})
            for t, v in sorted(self.publishers.items())
            for e in v.values()
            if e["foreign"] and (e.get("present", True) or not present_only)
        ]
