#!/usr/bin/env python3
"""kfboot's one-pass install against the guide's retry loop, on the rendered Kubeflow 26.03 bundle.

    python benchmarks/apply_vs_guide.py [--bundle PATH] [--sleep 20]

Each contender gets its own fresh sandbox (3 nodes, rook-ceph-block as the default class):
  (a) the guide's loop verbatim with the real kubectl:
      while ! kubectl apply --server-side --force-conflicts -f bundle.yaml; do sleep 20; done
  (b) kfboot kubeflow install --source bundle.yaml
  (c) the floor: the same objects created by a bare concurrent client (16 in flight, no waits, no retries)
      into a sandbox whose CRDs already exist and are Established.
For each: time to "all objects applied" and to "all Deployments Available", API requests, and kfboot's
peak RSS. Targets: (a)/(b) to all-applied ≥ 8x; (b)/(c) ≤ 1.5x; kfboot peak RSS ≤ 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import find_binary  # noqa: E402  (the binaries the tests use)

TESTDATA = Path(os.environ.get("KFBOOT_TESTDATA", REPO.parent / "shared" / "testdata"))


def sh(cmd: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)  # type: ignore[call-overload,no-any-return]


class Box:
    """A fresh sandbox with Rook's default class, in a private data dir."""

    def __init__(self, root: Path, name: str) -> None:
        self.env = dict(os.environ, KFBOOT_DATA_DIR=str(root / name), KFBOOT_CACHE_DIR=str(root / "cache"))
        bin_dir = os.environ.get("KFBOOT_SANDBOX_BIN_DIR") or str(Path.home() / ".cache" / "kfboot" / "bin")
        self.env["KFBOOT_SANDBOX_BIN_DIR"] = bin_dir
        self.name = name
        up = sh([sys.executable, "-m", "kfboot", "sandbox", "up", "--name", name, "-o", "json"], self.env)
        if up.returncode != 0:
            sys.exit(f"sandbox up failed: {up.stderr}")
        self.kubeconfig = json.loads(up.stdout)["kubeconfig"]
        self.env["KUBECONFIG"] = self.kubeconfig
        kubectl = find_binary("kubectl")
        assert kubectl is not None
        self.kubectl = str(kubectl)
        rook = TESTDATA / "rook" / "v1.20.6"
        for args in (
            ["apply", "--server-side", "-f", str(rook / "crds.yaml")],
            ["wait", "crd/cephblockpools.ceph.rook.io", "--for=condition=Established"],
            ["create", "namespace", "rook-ceph"],
            ["apply", "-f", str(rook / "csi" / "rbd" / "storageclass.yaml")],
            ["annotate", "sc", "rook-ceph-block", "storageclass.kubernetes.io/is-default-class=true"],
        ):
            sh([self.kubectl, *args], self.env, check=True)

    def deployments_available(self) -> bool:
        out = sh([self.kubectl, "get", "deploy", "-A", "-o", "json"], self.env)
        items = json.loads(out.stdout)["items"] if out.returncode == 0 else []
        return len(items) >= 49 and all(
            any(c["type"] == "Available" and c["status"] == "True" for c in d["status"].get("conditions", []))
            for d in items
        )

    def wait_available(self, timeout: float = 600) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.deployments_available():
                return time.monotonic()
            time.sleep(1)
        sys.exit("Deployments did not become Available")

    def down(self) -> None:
        sh([sys.executable, "-m", "kfboot", "sandbox", "down", "--name", self.name], self.env)


def guide_loop(box: Box, bundle: Path, sleep: float) -> dict[str, float]:
    start = time.monotonic()
    tries = requests = 0
    while True:
        tries += 1
        proc = sh([box.kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(bundle), "-v=6"], box.env)
        requests += len(re.findall(r'verb="(?:GET|PATCH|POST|PUT)"|\b(?:GET|PATCH|POST|PUT) https?://', proc.stderr))
        if proc.returncode == 0:
            break
        time.sleep(sleep)
    applied = time.monotonic()
    available = box.wait_available()
    return {"applied": applied - start, "available": available - start, "requests": requests, "tries": tries}


def kfboot_install(box: Box, bundle: Path) -> dict[str, float]:
    start, wall_start = time.monotonic(), time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kfboot", "kubeflow", "install", "--source", str(bundle), "-o", "json"],
        env=box.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate()
    end = time.monotonic()
    if proc.returncode != 0:
        sys.exit(f"kfboot install failed: {out[-2000:]}{err[-2000:]}")
    applied_at = next(
        json.loads(ln)["time"]
        for ln in err.splitlines()
        if ln.startswith("{")
        and json.loads(ln).get("event") == "done"
        and json.loads(ln).get("description", "").startswith("applying")
    )
    result = json.loads(out)
    return {
        "applied": applied_at - wall_start,
        "available": end - start,
        "requests": result["apply"]["requests"],
        "attempts": result["apply"]["attempts"],
    }


def peak_rss_mb(box: Box, bundle: Path) -> float:
    """kfboot's peak RSS for a (no-op) install, measured by the kernel for the child process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kfboot", "kubeflow", "install", "--source", str(bundle)],
        env=box.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, _, usage = os.wait4(proc.pid, 0)
    return usage.ru_maxrss / 1024


async def bare_client(box: Box, bundle: Path) -> dict[str, float]:
    from kfboot.kube.client import async_client, count_requests
    from kfboot.kube.discovery import ResourceCatalog
    from kfboot.kube.manifest import read_manifest_file

    manifests = read_manifest_file(bundle)
    crds = [m for m in manifests if m.kind == "CustomResourceDefinition"]
    sh(
        [box.kubectl, "apply", "--server-side", "-f", "-"],
        box.env,
        check=True,
        input="\n---\n".join(json.dumps(m.body) for m in crds),
    )
    sh([box.kubectl, "wait", "crd", "--all", "--for=condition=Established", "--timeout=120s"], box.env, check=True)
    client = async_client(box.kubeconfig)
    catalog = ResourceCatalog()
    await catalog.refresh(client)
    counter = count_requests(client)
    sem = asyncio.Semaphore(16)

    async def one(m: object) -> None:
        info = catalog.for_manifest(m)  # type: ignore[arg-type]
        assert info is not None
        async with sem:
            await client.apply(catalog.resource_class(info).from_dict(m.body), field_manager="floor", force=True)  # type: ignore[attr-defined]

    namespaces = [m for m in manifests if m.kind == "Namespace"]
    rest = [m for m in manifests if m.kind != "Namespace"]
    start = time.monotonic()
    await asyncio.gather(*(one(m) for m in namespaces))
    await asyncio.gather(*(one(m) for m in rest))
    applied = time.monotonic()
    await client.close()
    available = box.wait_available()
    return {"applied": applied - start, "available": available - start, "requests": counter.count}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=TESTDATA / "kubeflow" / "kubeflow-26.03-example.yaml.gz")
    ap.add_argument("--sleep", type=float, default=20.0, help="the guide's sleep between tries")
    ap.add_argument("--only", choices=["a", "b", "c"], action="append", help="run only these contenders")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kfboot-bench-") as tmp:
        root = Path(tmp)
        bundle = root / "kubeflow.yaml"
        bundle.write_bytes(
            gzip.decompress(args.bundle.read_bytes()) if args.bundle.suffix == ".gz" else args.bundle.read_bytes()
        )
        results = {}
        for label, fn in (
            ("a", lambda b: guide_loop(b, bundle, args.sleep)),
            ("b", lambda b: kfboot_install(b, bundle)),
            ("c", lambda b: asyncio.run(bare_client(b, bundle))),
        ):
            if args.only and label not in args.only:
                continue
            box = Box(root, f"bench-{label}")
            try:
                results[label] = fn(box)
                if label == "b":
                    results[label]["peak_rss_mb"] = peak_rss_mb(box, bundle)  # a second, no-op install
                    t0 = time.monotonic()
                    again = sh(
                        [sys.executable, "-m", "kfboot", "kubeflow", "install", "--source", str(bundle)], box.env
                    )
                    results[label]["second_run"] = time.monotonic() - t0
                    if again.returncode != 0:
                        sys.exit(f"second install failed: {again.stderr[-2000:]}")
            finally:
                box.down()
            print(f"({label}) {json.dumps({k: round(v, 2) for k, v in results[label].items()})}", flush=True)
    if len(results) < 3:
        return 0
    a, b, c = results["a"], results["b"], results["c"]
    print(
        f"(a) guide loop : all applied {a['applied']:.1f} s ({a['tries']:.0f} tries, {a['requests']:.0f} requests),"
        f" all Available {a['available']:.1f} s"
    )
    print(
        f"(b) kfboot     : all applied {b['applied']:.1f} s ({b['requests']:.0f} requests), "
        f"all Available {b['available']:.1f} s, peak RSS {b['peak_rss_mb']:.0f} MB"
    )
    print(
        f"(c) floor      : all applied {c['applied']:.1f} s ({c['requests']:.0f} requests), "
        f"all Available {c['available']:.1f} s"
    )
    print(f"ratio (a)/(b) all applied  : {a['applied'] / b['applied']:.1f}x (target >= 8x)")
    print(f"ratio (a)/(b) all Available: {a['available'] / b['available']:.1f}x")
    print(f"ratio (b)/(c) all applied  : {b['applied'] / c['applied']:.2f}x (target <= 1.5x)")
    print(f"kfboot peak RSS            : {b['peak_rss_mb']:.0f} MB (target <= 200 MB)")
    print(f"kfboot second (no-op) run  : {b['second_run']:.1f} s wall-clock (target < 5 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
