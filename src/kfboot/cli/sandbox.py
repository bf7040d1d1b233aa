"""`kfboot sandbox up | down | status | kubeconfig`: a local kwok cluster to rehearse installs on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kfboot.cli._common import emit_json, handled, run, state
from kfboot.errors import BadInputError, ExitCode
from kfboot.sandbox import cluster
from kfboot.sandbox.spec import KubeconfigDoc
from kfboot.sandbox.versions import KUBERNETES_VERSION

app = typer.Typer(
    help="A local sandbox: real etcd, kube-apiserver, controller-manager and scheduler; nodes, pods and "
    "operators simulated by kwok.",
    no_args_is_help=True,
)

NameOpt = Annotated[str, typer.Option("--name", help="sandbox name")]


@app.command("up")
def up(
    ctx: typer.Context,
    name: NameOpt = "kfboot",
    nodes: Annotated[
        int | None, typer.Option("--nodes", help="number of simulated nodes (default 3; 0 with --real-ceph)")
    ] = None,
    node_cpu: Annotated[str, typer.Option("--node-cpu", help="CPU capacity of each node")] = "8",
    node_memory: Annotated[str, typer.Option("--node-memory", help="memory capacity of each node")] = "32Gi",
    node_pods: Annotated[int, typer.Option("--node-pods", help="pod capacity of each node")] = 110,
    kubernetes_version: Annotated[
        str, typer.Option("--kubernetes-version", help="Kubernetes release")
    ] = KUBERNETES_VERSION,
    port: Annotated[
        int | None, typer.Option("--port", help="kube-apiserver port on 127.0.0.1 (default: a free one)")
    ] = None,
    strict_admission: Annotated[
        bool, typer.Option("--strict-admission", help="enable admission webhooks (for real URL webhooks on 127.0.0.1)")
    ] = False,
    merge_kubeconfig: Annotated[
        bool, typer.Option("--merge-kubeconfig", help="also add the context to ~/.kube/config")
    ] = False,
    login: Annotated[
        bool,
        typer.Option(
            "--login/--no-login",
            help="serve Kubeflow's login (its Dex + oauth2-proxy as local processes) once installed",
        ),
    ] = True,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for each start-up stage")] = 120.0,
    real_nodes: Annotated[
        int,
        typer.Option(
            "--real-nodes",
            help="real nodes (containerd + kubelet in their own network namespace; Linux, root) beside the "
            "simulated ones",
        ),
    ] = 0,
    real_ceph: Annotated[
        bool,
        typer.Option(
            "--real-ceph",
            help="Ceph for real: each real node gets the Ceph, Rook and ceph-csi-operator images (Rook v1.20.6's "
            "tags), a raw 10 GiB loop disk and no taint; no Rook simulation",
        ),
    ] = False,
    bin_dir: Annotated[
        Path | None, typer.Option("--bin-dir", help="directory with the binaries (or $KFBOOT_SANDBOX_BIN_DIR)")
    ] = None,
) -> None:
    """Create and start a sandbox, and wait until its nodes are Ready."""
    st = state(ctx)
    spec = cluster.SandboxSpec(
        name=name,
        nodes=nodes if nodes is not None else (0 if real_ceph else 3),
        node_cpu=node_cpu,
        node_memory=node_memory,
        node_pods=node_pods,
        kubernetes_version=kubernetes_version,
        port=port,
        strict_admission=strict_admission,
        merge_kubeconfig=merge_kubeconfig,
        login=login,
        timeout=timeout,
        real_nodes=real_nodes,
        real_ceph=real_ceph,
    )
    result = run(st, lambda: cluster.up(spec, st.reporter(), bin_dir=bin_dir))
    if st.json:
        emit_json(result)
        return
    out = st.out
    counted = f"{result.nodes} simulated + {len(result.real_nodes)} real" if result.real_nodes else str(result.nodes)
    took = f"{result.seconds:.1f} s"
    out.success(f"sandbox {result.name} is up: Kubernetes {result.version}, {counted} Ready nodes, {took}")
    out.line(f"  API server  {result.server}")
    out.line(f"  kubeconfig  {result.kubeconfig}")
    out.line(f"  note        {result.admission}")
    out.line(f"  login       {result.login}")
    if result.real_nodes:
        out.line(f"  real nodes  {', '.join(result.real_nodes)} ({result.real_node_note})")
    out.line(f"\n  export KUBECONFIG={result.kubeconfig}")


@app.command("down")
def down(ctx: typer.Context, name: NameOpt = "kfboot") -> None:
    """Stop a sandbox and delete it: its processes, ports and data."""
    st = state(ctx)
    result = run(st, lambda: cluster.down(name, st.reporter()))
    if st.json:
        emit_json(result)
        return
    st.out.success(
        f"sandbox {name} removed ({len(result.stopped)} processes stopped"
        + (f", {len(result.killed)} killed" if result.killed else "")
        + ")"
    )


@app.command("status")
def status(ctx: typer.Context, name: NameOpt = "kfboot") -> None:
    """Show a sandbox's processes, API server, nodes and admission profile. Exit 1 unless running."""
    st = state(ctx)
    result = run(st, lambda: cluster.status(name))
    if st.json:
        emit_json(result)
    else:
        out = st.out
        colour = {"running": "green", "degraded": "yellow"}.get(result.state, "red")
        out.line("sandbox ", (result.name, "bold"), ": ", (result.state, colour))
        if result.version:
            out.line(f"  Kubernetes  {result.version}")
        if result.server:
            out.line(f"  API server  {result.server}")
        out.line(f"  kubeconfig  {result.kubeconfig}")
        out.line(f"  admission   {result.admission}")
        out.table(("component", "state"), result.components.items())
        if result.nodes:
            out.table(
                ("node", "ready", "cpu", "memory", "pods"),
                ((n.name, "Ready" if n.ready else "NotReady", n.cpu, n.memory, n.pods) for n in result.nodes),
            )
        if result.real_nodes:
            rows = []
            for rn in result.real_nodes:
                procs = ", ".join(f"{k} {v}" for k, v in rn.processes.items())
                rows.append((rn.name, rn.node_ip, rn.host_link, procs))
            out.table(("real node", "InternalIP", "host link", "processes"), rows)
        for p in result.problems:
            out.line("  ", ("problem:", "yellow"), f" {p}")
    if result.state != "running":
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


@app.command("kubeconfig")
def kubeconfig(ctx: typer.Context, name: NameOpt = "kfboot") -> None:
    """Print the path of the sandbox's kubeconfig file."""
    st = state(ctx)
    with handled(st):
        if not cluster.exists(name):
            raise BadInputError(f"no sandbox named {name!r}", "create it with `kfboot sandbox up`")
        path = cluster.kubeconfig_path(name)
        if st.json:
            emit_json(KubeconfigDoc(name=name, kubeconfig=str(path)))
        else:
            print(path)
