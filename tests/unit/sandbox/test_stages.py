from __future__ import annotations

from kfboot.sandbox.simulation import load_bundled_stages


def test_bundled_stages_cover_default_lifecycles_and_rook() -> None:
    stages = load_bundled_stages()
    assert all(s["apiVersion"] == "kwok.x-k8s.io/v1alpha1" and s["kind"] == "Stage" for s in stages)
    names = {s["metadata"]["name"] for s in stages}
    assert {"node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete", "pod-delete"} <= names
    refs = {(s["spec"]["resourceRef"]["apiGroup"], s["spec"]["resourceRef"]["kind"]) for s in stages}
    assert {
        ("v1", "Node"),
        ("v1", "Pod"),
        ("ceph.rook.io/v1", "CephCluster"),
        ("ceph.rook.io/v1", "CephBlockPool"),
    } <= refs
    assert len(names) == len(stages), "stage names must be unique"
