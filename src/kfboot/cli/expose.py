"""`kfboot expose --https`: the dashboard for other machines, over HTTPS only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kfboot.cli._common import emit_json, handled, run_with_client, state
from kfboot.errors import BadInputError
from kfboot.steps.day2 import expose as ex


def expose(
    ctx: typer.Context,
    https: Annotated[bool, typer.Option("--https", help="required: the dashboard is exposed over HTTPS only")] = False,
    mode: Annotated[str, typer.Option("--mode", help="nodeport | loadbalancer | ingress")] = "nodeport",
    host: Annotated[
        str | None, typer.Option("--host", help="name or IP in the certificate (default: a node's address)")
    ] = None,
    cert: Annotated[Path | None, typer.Option("--cert", help="PEM certificate (chain), not self-signed")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="PEM private key of --cert")] = None,
    ingress_class: Annotated[str | None, typer.Option("--ingress-class", help="class for --mode ingress")] = None,
) -> None:
    """Expose istio-ingressgateway beyond this machine with a certificate (cert-manager self-signed, or
    --cert/--key): NodePort or LoadBalancer with HTTPS on the gateway and 80 redirected, or an Ingress."""
    st = state(ctx)
    if not https:
        with handled(st):
            raise BadInputError(ex.PLAIN_HTTP_REFUSED, "add --https (or use `kfboot connect` for 127.0.0.1)")
    result = run_with_client(
        st,
        lambda client: ex.expose(
            client, st.reporter(), mode=mode, host=host, cert=cert, key=key, ingress_class=ingress_class
        ),
    )
    if st.json:
        emit_json(result)
        return
    st.out.success(f"Kubeflow exposed over HTTPS ({result.mode}, {result.certificate} certificate)")
    for url in result.urls:
        st.out.line(f"  {url}")
    for note in result.notes:
        st.out.line("  ", (note, "dim"))
