"""`kfboot up` killed with SIGKILL at several points of the storage and Kubeflow steps, and with the API
server restarted mid-apply: a re-run always completes, and ends with the same objects (same spec hashes)
as an uninterrupted run on the same sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import harness
from tests.helpers.harness import Env, Sandbox, make_env
from tests.helpers.kubeflow import offline_config

pytestmark = pytest.mark.sandbox

NAME = "upr"

#: (the phase of a JSON event on `up -o json`'s stderr, seconds to wait after it, then SIGKILL); phases are
#: kfboot's stable names for where the work is (kfboot.reporting), unlike the wording of the messages
KILL_POINTS = [
    ("rook:common.yaml", 0.0),  # mid Rook manifests
    ("rook-operator", 0.0),  # Rook applied, CephCluster not yet
    ("storage-probe", 0.3),  # the probe claim exists
    ("apply", 1.0),  # Kubeflow apply starting
    ("apply", 8.0),  # mid Kubeflow apply
    ("readiness", 0.5),  # Kubeflow applied, readiness wait
]


def phase_of(line: str) -> str | None:
    """The phase of a start (or info) event; None for other lines."""
    if not line.startswith("{"):
        return None
    event = json.loads(line)
    return event.get("phase") if event.get("event") in ("start", "info") else None


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    harness.require_sandbox_binaries()
    e = make_env(tmp_path_factory.mktemp("resume"))
    yield e
    e.kfboot("sandbox", "down", "--name", NAME, timeout=120)


def up_command(env: Env, cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "kfboot", "--config", str(cfg), "up", "--sandbox", "--sandbox-name", NAME, *extra]


def run_until(env: Env, cfg: Path, marker: str, delay: float, after: str | None = None) -> bool:
    """Start `up -o json`; when an event of phase ``marker`` starts (after one of phase ``after``, if given),
    wait ``delay`` and SIGKILL it. Returns whether the kill happened (False: the run ended first)."""
    proc = subprocess.Popen(
        up_command(env, cfg, "-o", "json"),
        env=env.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    armed = after is None
    killed = False
    for line in proc.stderr:
        phase = phase_of(line)
        if not armed and after is not None and phase == after:
            armed = True
            continue
        if armed and phase == marker:
            time.sleep(delay)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
            break
    proc.stderr.close()
    code = proc.wait(timeout=60)
    assert killed or code == 0, f"`up` ended with {code} before {marker!r}"
    return killed


def full_up(env: Env, cfg: Path) -> None:
    proc = env.kfboot("--config", str(cfg), "up", "--sandbox", "--sandbox-name", NAME, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def sandbox(env: Env) -> Sandbox:
    return Sandbox(NAME, env, env.data / "sandbox" / "clusters" / NAME / "kubeconfig.yaml", {})


def without_state(snap: dict[str, str]) -> dict[str, str]:
    """kfboot's own records (progress with timestamps, fingerprints of what it applied) are not part of
    what was installed."""
    return {k: v for k, v in snap.items() if not k.startswith("ConfigMap. kfboot-system/kfboot-")}


@pytest.mark.timeout(1200)  # eight `up` runs, three of them complete installs, and a `down --destroy-data`
def test_sigkill_at_six_points_then_rerun_equals_an_uninterrupted_run(env: Env, tmp_path: Path) -> None:
    cfg = offline_config(tmp_path / "kfboot.yaml")
    if sandbox(env).kubeconfig.is_file():  # the other test ran first: the kill points need a fresh sandbox
        assert env.kfboot("sandbox", "down", "--name", NAME, timeout=120).returncode == 0
    kills = 0
    for i, (marker, delay) in enumerate(KILL_POINTS):
        # the Kubeflow markers must come after the storage step's own lines
        after = "step:kubeflow" if i >= 3 else None
        killed = run_until(env, cfg, marker, delay, after)
        print(f"kill point {i} {marker!r}: {'killed' if killed else 'run ended first'}")
        kills += killed
        sb = sandbox(env)
        if i == 2:  # killed inside the storage step: its record says so
            state = sb.kubectl_json("get", "cm", "kfboot-state", "-n", "kfboot-system")["data"]
            assert '"outcome": "running"' in state["storage"]
    assert kills >= 5, f"only {kills} of {len(KILL_POINTS)} kill points were reached"
    full_up(env, cfg)
    sb = sandbox(env)
    resumed = without_state(sb.snapshot())
    assert sb.kubectl("get", "pvc", "-n", "kfboot-system", "--no-headers").stdout.strip() == ""  # probe gone
    # the reference: the same sandbox wiped by kfboot and installed again without interruption
    gone = env.kfboot(
        "down",
        "--destroy-data",
        "--confirm",
        "yes-really-destroy-data",
        extra_env={"KUBECONFIG": str(sb.kubeconfig)},
        timeout=600,
    )
    assert gone.returncode == 0, gone.stderr[-2000:]
    assert sb.snapshot() == {}
    full_up(env, cfg)
    reference = without_state(sb.snapshot())
    assert len(reference) > 700
    assert sorted(set(resumed) ^ set(reference)) == []
    assert {k for k in reference if resumed[k] != reference[k]} == set()


def test_api_server_restart_mid_apply_then_up_completes(env: Env, tmp_path: Path) -> None:
    """Kubeflow is installed (by the previous test, or here when run alone); `--from kubeflow` applies all
    of it again, and the API server is killed and restarted while it does."""
    cfg = offline_config(tmp_path / "kfboot.yaml")
    sb = sandbox(env)
    if not sb.kubeconfig.is_file() or sb.kubectl("get", "namespace", "kubeflow", check=False).returncode != 0:
        full_up(env, cfg)
    # without the record of what was applied, every object is sent again (else nothing would be in flight)
    sb.kubectl("delete", "configmap", "kfboot-applied-kubeflow", "-n", "kfboot-system", "--ignore-not-found")
    proc = subprocess.Popen(
        up_command(env, cfg, "--from", "kubeflow", "-o", "json"),
        env=env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stdout is not None
    restarted = threading.Event()
    restart_done: list[float] = []
    lines: list[str] = []

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if not restarted.is_set() and phase_of(line) == "apply":
                time.sleep(1.0)
                sb.restart_apiserver(down_seconds=4.0)
                restart_done.append(time.time())
                restarted.set()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    out = proc.stdout.read()
    proc.wait(timeout=900)
    t.join(timeout=10)
    assert restarted.is_set(), "".join(lines[-20:])
    assert proc.returncode == 0, out[-2000:] + "".join(lines[-30:])
    # the restart really hit the apply: it was still going when the API server came back
    applied = [e for e in map(json.loads, (ln for ln in lines if ln.startswith("{"))) if e.get("phase") == "apply"]
    assert [e["event"] for e in applied] == ["start", "done"], applied
    assert applied[1]["time"] > restart_done[0], (applied, restart_done)
    result = json.loads(out)
    # every step that ran is in the result, a failed one too (then ok is false and the exit code not 0)
    assert result["ok"] and result["error"] is None, result
    assert [(s["step"], s["action"]) for s in result["steps"]] == [("kubeflow", "ran"), ("access", "ran")], result
    deadline = time.monotonic() + 60  # the restarted API server finishes its own start-up hooks
    while sb.kubectl("get", "--raw", "/readyz", check=False).stdout.strip() != "ok":
        assert time.monotonic() < deadline, sb.kubectl("get", "--raw", "/readyz?verbose", check=False).stdout
        time.sleep(1)
    status = env.kfboot("status", "-o", "json", extra_env={"KUBECONFIG": str(sb.kubeconfig)})
    assert status.returncode == 0, status.stdout[-2000:]
