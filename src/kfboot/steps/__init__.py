"""The guide's knowledge, one module per step, each idempotent and resumable: preflight, host (disks) and
host_prepare, storage/ (Rook-Ceph and the default class), tools (kustomize v5), kubeflow (+ kubeflow_release),
access and auth (Dex users) — plus what the install uses around them: images/ (list, mirror, pull) and plan.
Day two (status, doctor, expose, upgrade, teardown, host wipe) lives in :mod:`kfboot.steps.day2`."""
