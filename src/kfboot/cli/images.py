"""`kfboot images list | mirror | pull`: the images an install needs, copying them into a mirror, and
pre-pulling them on the nodes (issue 16)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from lightkube import AsyncClient

from kfboot.cli._common import State, duration, emit_json, handled, run, run_with_client, state
from kfboot.errors import BadInputError, ExitCode
from kfboot.steps import images

app = typer.Typer(
    help="Images: list what an install pulls, mirror it into a registry, pre-pull it on the nodes.",
    no_args_is_help=True,
)

ScopeOpt = Annotated[
    str, typer.Option("--only", help="all | kubeflow | rook: which part of the install to list", show_default=True)
]
ImagesFileOpt = Annotated[
    Path | None,
    typer.Option("--images", help="a file of image references, one a line (default: `images list`)"),
]


def _read_images_file(path: Path) -> list[images.ImageRef]:
    refs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        ref = images.parse(text)
        if ref is None:
            raise BadInputError(f"{path}:{n}: {text!r} is not an image reference", "fix the line")
        refs.append(ref)
    return refs


def _scope(only: str) -> tuple[bool, bool]:
    if only not in ("all", "kubeflow", "rook"):
        raise BadInputError(f"--only {only!r} is not one of all, kubeflow, rook", "e.g. --only kubeflow")
    return only in ("all", "kubeflow"), only in ("all", "rook")


@app.command("list")
def list_(ctx: typer.Context, only: ScopeOpt = "all") -> None:
    """Every image the install needs (kfboot.yaml's Kubeflow release less its exclusions, and Rook), with
    the objects that use each and where they name it (pod template, configmap, arg, env, custom resource)."""
    st = state(ctx)

    async def go() -> list[images.Image]:
        kubeflow, rook = _scope(only)
        return await images.install_images(st.config(), st.reporter(), kubeflow=kubeflow, rook=rook)

    found = run(st, go)
    if st.json:
        emit_json(images.ImageList.of(found))
        return
    for i in found:
        st.out.line(f"{i.ref}  [{', '.join(i.sources)}]  {', '.join(i.components)}: {i.uses[0].object}")
        if len(i.uses) > 1:
            st.out.line(f"    and {len(i.uses) - 1} more use(s)")
    st.out.line(f"{len(found)} images")


@app.command("mirror")
def mirror(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="the mirror: host[:port][/prefix]")],
    images_file: ImagesFileOpt = None,
    only: ScopeOpt = "all",
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=32, help="images copied at once")] = 4,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="plain HTTP / unverified TLS for the registries (test rigs)")
    ] = False,
    authfile: Annotated[
        str | None, typer.Option("--authfile", help="credentials (containers-auth.json / docker config.json)")
    ] = None,
) -> None:
    """Copy every image, all platforms, by digest (skopeo copy --all --preserve-digests) into the mirror as
    <to>/<source host>/<path>. What the mirror already has with the same digest is skipped; a different
    digest is refused. Then set images.registry in kfboot.yaml."""
    st = state(ctx)

    async def go() -> images.MirrorResult:
        if images_file is not None:
            refs = _read_images_file(images_file)
        else:
            kubeflow, rook = _scope(only)
            refs = [
                i.ref for i in await images.install_images(st.config(), st.reporter(), kubeflow=kubeflow, rook=rook)
            ]
        return await images.mirror(
            list(dict.fromkeys(refs)), to, st.reporter(), concurrency=concurrency, insecure=insecure, authfile=authfile
        )

    result = run(st, go)
    if st.json:
        emit_json(result.doc())
        if not result.ok:  # the document says which and why; the exit code says how
            raise typer.Exit(int(ExitCode.CHECK_FAILED if result.count("digest mismatch") else ExitCode.RUNTIME))
        return
    _render(st, result)
    with handled(st):
        images.check(result)


def _render(st: State, result: images.MirrorResult) -> None:
    for o in result.outcomes:
        if o.status in ("copied", "present"):
            st.out.line(f"  {o.status:8} {o.target}")
        else:
            st.out.problem(o.status, f"{o.source}: {o.reason}")
    if result.ok:
        st.out.success(
            f"{result.count('copied')} copied, {result.count('present')} already in {result.registry}; "
            f"set images.registry: {result.registry} in kfboot.yaml"
        )


@app.command("pull")
def pull(
    ctx: typer.Context,
    images_file: ImagesFileOpt = None,
    only: ScopeOpt = "all",
    timeout: Annotated[str, typer.Option("--timeout", help="how long the nodes may take (e.g. 30m, 1h)")] = "30m",
) -> None:
    """Pull every image of the install on every schedulable node at once: with `crictl pull` over SSH on the
    nodes kfboot.yaml lists with an address, elsewhere with a short-lived DaemonSet in kfboot-system (no
    SSH): one container per image, imagePullPolicy IfNotPresent, running only a copied
    static busybox (nothing of the image). References are pointed at images.registry as `up` points them,
    with images.pullSecret. Progress per node; each failure names the image, the node, the cause (rate
    limit, auth, not found) and the fix. The DaemonSet is deleted when done."""
    st = state(ctx)
    seconds = duration(st, timeout, "--timeout")

    async def go(client: AsyncClient) -> images.PullResult:
        cfg = st.config()
        if images_file is not None:
            listed = _read_images_file(images_file)
            found = [images.Image(r, [images.Use("file", str(images_file), "", "file", str(r))]) for r in listed]
        else:
            kubeflow, rook = _scope(only)
            found = await images.install_images(cfg, st.reporter(), kubeflow=kubeflow, rook=rook)
        refs, untagged = images.pull_refs(found, cfg.images)
        if untagged:
            st.reporter().info(f"{len(untagged)} image(s) named without a tag are left out: {', '.join(untagged)}")
        return await images.pull(
            client,
            refs,
            st.reporter(),
            pull_secret=cfg.images.pullSecret,
            helper=images.helper_ref(cfg.images),
            timeout=seconds,
            nodes=cfg.nodes,
        )

    result = run_with_client(st, go)
    if st.json:
        emit_json(result.doc())
        if not result.ok:
            raise typer.Exit(int(ExitCode.RUNTIME))
        return
    doc = result.doc()
    for n in doc.nodes:
        how = "crictl over SSH" if n.via == "ssh" else "DaemonSet"
        st.out.line(f"  {n.node}: {n.pulled}/{n.total} images present ({how})")
    for fb in doc.fallback:
        st.out.line(f"  {fb.node}: pulled by the DaemonSet, not over SSH: {fb.reason}")
    for f in result.failures:
        st.out.problem(f.cause, f"{f.image} on {f.node}: {f.message}\n    fix: {f.fix}")
    if result.ok:
        st.out.success(f"{len(result.images)} images present on {len(result.nodes)} node(s) ({result.seconds:.0f} s)")
    with handled(st):
        images.check_pull(result)
