"""The terminal renderings: text from the cluster is shown as it is (never Rich markup), a progress
block always ends, `-v` shows debug events and the causes of an error."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from kfboot.cli.terminal import JsonReporter, PlainReporter, RichReporter, Terminal
from kfboot.reporting import NullReporter, Reporter

#: text that Rich markup would eat ([bold], [/healthz]) or choke on ([/] with nothing open)
UNTRUSTED = "GET [/healthz] 500: [bold]pod[/bold] log says [/] and [red]x"


def terminal(buf: io.StringIO, *, tty: bool = False) -> Terminal:
    return Terminal(Console(file=buf, force_terminal=tty, markup=False, highlight=False, width=300, color_system=None))


def test_terminal_methods_print_untrusted_text_exactly() -> None:
    buf = io.StringIO()
    t = terminal(buf)
    t.success(UNTRUSTED)
    t.failure(UNTRUSTED)
    t.fix(UNTRUSTED)
    t.problem("failed", UNTRUSTED)
    t.error(UNTRUSTED, UNTRUSTED, [UNTRUSTED])
    t.table(("a", "b"), [(UNTRUSTED, (UNTRUSTED, "red"))])
    lines = buf.getvalue().splitlines()
    assert lines[:4] == [f"✓ {UNTRUSTED}", f"✗ {UNTRUSTED}", f"      fix: {UNTRUSTED}", f"  failed {UNTRUSTED}"]
    assert lines[4:7] == [f"error: {UNTRUSTED}", f"  fix: {UNTRUSTED}", f"  caused by: {UNTRUSTED}"]
    assert lines[-1].split() == [*UNTRUSTED.split(), *UNTRUSTED.split()]


def test_rich_reporter_shows_untrusted_text_and_progress_exactly() -> None:
    buf = io.StringIO()
    rep = RichReporter(terminal(buf, tty=True))
    rep.info(UNTRUSTED)
    rep.warn(UNTRUSTED)
    with rep.progress(UNTRUSTED) as task:
        task.update(f"done: {UNTRUSTED}")
    out = buf.getvalue()
    assert f"\n{UNTRUSTED}\n" in f"\n{out}" and f"WARNING: {UNTRUSTED}" in out
    assert f"✓ done: {UNTRUSTED} (" in out


@pytest.mark.parametrize("kind", ["plain", "rich", "json", "null"])
def test_a_progress_block_that_raises_ends_failed(kind: str) -> None:
    buf = io.StringIO()
    factories: dict[str, Callable[[], Reporter]] = {
        "plain": lambda: PlainReporter(buf),
        "rich": lambda: RichReporter(terminal(buf, tty=True)),
        "json": lambda: JsonReporter(buf),
        "null": NullReporter,
    }
    rep = factories[kind]()
    with pytest.raises(ZeroDivisionError), rep.progress("dividing"):
        _ = 1 / 0
    if kind == "json":
        assert [json.loads(ln)["event"] for ln in buf.getvalue().splitlines()] == ["start", "failed"]
    elif kind == "null":
        assert isinstance(rep, NullReporter) and rep.messages[-1] == ("failed", "dividing")
    else:
        last = buf.getvalue().splitlines()[-1]  # plain: "HH:MM:SS ✗ …"; rich: after the live display's erase codes
        assert last.rsplit("\x1b[2K", 1)[-1].split(" ", 1 if kind == "plain" else 0)[-1].startswith("✗ dividing ("), (
            last
        )


def test_debug_only_when_verbose() -> None:
    quiet, loud = io.StringIO(), io.StringIO()
    for buf, verbose in ((quiet, False), (loud, True)):
        PlainReporter(buf, verbose=verbose).debug("detail")
        JsonReporter(buf, verbose=verbose).debug("detail")
    assert quiet.getvalue() == ""
    lines = loud.getvalue().splitlines()
    assert lines[0].endswith(" debug: detail") and json.loads(lines[1])["event"] == "debug"


# -------------------------------------------------------------------------------------- through the CLI


def kfboot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KFBOOT_")}
    env.update(KFBOOT_DATA_DIR=str(cwd / "data"), KFBOOT_CACHE_DIR=str(cwd / "cache"), COLUMNS="300")
    return subprocess.run(
        [sys.executable, "-m", "kfboot", *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


def test_an_error_with_brackets_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("storage:\n  '[/x] and [bold]y': 1\n")
    proc = kfboot("--config", str(cfg), "preflight", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "storage.[/x] and [bold]y: unknown key" in proc.stderr


def test_verbose_shows_the_causes_of_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "kfboot.yaml"
    cfg.write_text("kubeflow: [unclosed\n")
    quiet = kfboot("--config", str(cfg), "preflight", cwd=tmp_path)
    loud = kfboot("--config", str(cfg), "preflight", "-v", cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 2
    assert "caused by" not in quiet.stderr
    assert "caused by: ParserError: while parsing a flow sequence" in loud.stderr
    doc = json.loads(kfboot("--config", str(cfg), "-v", "-o", "json", "preflight", cwd=tmp_path).stdout)
    assert doc["causes"][0].startswith("ParserError: while parsing a flow sequence")


BUNDLE = """apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c, namespace: a}
"""


def test_verbose_shows_debug_events(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.yaml"
    bundle.write_text(BUNDLE)
    args = ("-o", "json", "kubeflow", "render", "--source", str(bundle), "-o", str(tmp_path / "out.yaml"))
    quiet = kfboot(*args, cwd=tmp_path)
    loud = kfboot("-v", *args, cwd=tmp_path)
    assert quiet.returncode == loud.returncode == 0, loud.stderr
    events = [json.loads(ln) for ln in loud.stderr.splitlines()]
    assert [e["message"] for e in events if e["event"] == "debug"] == [
        f"kubeflow.source {bundle} is a rendered bundle: read as it is, no kustomize"
    ]
    assert '"debug"' not in quiet.stderr


def test_render_dash_o_json_is_the_render_output_path(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.yaml"
    bundle.write_text(BUNDLE)
    proc = kfboot("kubeflow", "render", "--source", str(bundle), "-o", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == [
        "0000-namespace-a.yaml",
        "0001-configmap-a-c.yaml",
    ]
    # a second -o text|json after render's own is the output format
    doc = kfboot("kubeflow", "render", "--source", str(bundle), "-o", "out.yaml", "-o", "json", cwd=tmp_path)
    assert json.loads(doc.stdout) == {"objects": 2, "output": "out.yaml"}


def test_up_keeps_the_failed_step_in_its_result(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n"
    )
    proc = kfboot("--kubeconfig", str(kubeconfig), "up", "--only", "preflight", "-o", "json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert [(s["step"], s["action"]) for s in doc["steps"]] == [("preflight", "failed")]
    assert doc["error"]["exitCode"] == 3 and "unreachable" in doc["error"]["reason"]
    text = kfboot("--kubeconfig", str(kubeconfig), "up", "--only", "preflight", cwd=tmp_path)
    assert text.returncode == 3
    assert text.stdout.startswith("✗ preflight") and "error: preflight failed" in text.stderr


def test_json_events_carry_the_phase_and_other_renderers_ignore_it() -> None:
    buf = io.StringIO()
    rep = JsonReporter(buf)
    rep.info("── step 5/6: kubeflow", phase="step:kubeflow")
    with rep.progress("applying 3 objects", total=3, phase="apply"):
        pass
    rep.info("no phase here")
    events = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    assert [(e["event"], e.get("phase")) for e in events] == [
        ("info", "step:kubeflow"),
        ("start", "apply"),
        ("done", "apply"),
        ("info", None),
    ]
    plain = io.StringIO()
    with PlainReporter(plain).progress("applying 3 objects", phase="apply"):
        pass
    assert "apply" in plain.getvalue() and "phase" not in plain.getvalue()
