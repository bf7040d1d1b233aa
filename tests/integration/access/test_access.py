"""`kfboot connect` and `kfboot auth` on a sandbox with Kubeflow 26.03, through the real login chain:
kfboot's port-forward → kube-apiserver → kwok → oauth2-proxy → Dex (see chain.py)."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import bcrypt
import httpx2 as httpx
import pytest
import yaml

from tests.helpers.access import require_login_binaries, running_connect, wait_rollout
from tests.helpers.browser import assert_screenshot, chromium_page, dex_login, find_chromium
from tests.helpers.chain import Chain, login_chain
from tests.helpers.harness import Sandbox, make_env, start_sandbox, stop_sandbox
from tests.terminal import run_in_pty

pytestmark = pytest.mark.sandbox

DEFAULT = "12341234"
NEW_PASSWORD = "kfboot-Test-pw-9f3c1e"  # distinctive, so a leak is greppable
JANE_PASSWORD = "jane-Secret-pw-77a0b2"
JANE_PASSWORD2 = "jane-Other-pw-0c41d9"
PROMPTED_PASSWORD = "prompted-Pw-5e2d11"
BOB_PASSWORD = "bob-Secret-pw-e61f2a"


@pytest.fixture(scope="module")
def kf(tmp_path_factory: pytest.TempPathFactory, testdata_dir: Path) -> Iterator[Chain]:
    """One sandbox with Kubeflow 26.03 applied (the rendered bundle) and the login chain running."""
    require_login_binaries()
    root = tmp_path_factory.mktemp("access")
    sb = start_sandbox(make_env(root), "access", "--nodes", "1")
    sb.env.env["KUBECONFIG"] = str(sb.kubeconfig)
    try:
        bundle = testdata_dir / "kubeflow" / "kubeflow-26.03-example.yaml.gz"
        proc = sb.env.kfboot("kubeflow", "install", "--source", str(bundle), "--no-wait", timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        for namespace, deployment in (("istio-system", "istio-ingressgateway"), ("auth", "dex")):
            wait_rollout(sb, namespace, deployment)
        with login_chain(sb, root / "chain") as chain:
            yield chain
    finally:
        stop_sandbox(sb)


def check(chain: Chain, user: str | None, password: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["connect", "--check", *args]
    if user is not None:
        cmd += ["--user", user, "--password-stdin"]
    return chain.sb.env.kfboot(*cmd, input=None if password is None else password + "\n", timeout=120)


def gateway_pods(sb: Sandbox) -> list[str]:
    items = sb.kubectl_json("-n", "istio-system", "get", "pods", "-l", "app=istio-ingressgateway")["items"]
    assert isinstance(items, list)
    return [p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")]


def test_check_reaches_login_form_and_logs_in(kf: Chain) -> None:
    ensure_password(kf, DEFAULT)
    form = check(kf, None, None, "-o", "json")
    assert form.returncode == 0, form.stderr
    result = json.loads(form.stdout)
    assert result["stage"] == "login-form" and "/dex/auth/local/login" in result["url"]
    # oauth2-proxy's sign-in page, its start URL, Dex's authorize endpoint, then its password form
    assert [h.split()[2] for h in result["hops"]] == [
        "/",
        "/oauth2/start",
        "/dex/auth",
        "/dex/auth/local",
        "/dex/auth/local/login",
    ]

    ok = check(kf, "user@example.com", DEFAULT, "-o", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    result = json.loads(ok.stdout)
    assert result["stage"] == "authenticated" and result["session_cookie"] == "oauth2_proxy_kubeflow"
    paths = [h.split()[2] for h in result["hops"]]
    assert "/oauth2/callback" in paths and paths[-1] == "/"
    # the real components saw it: Dex logged the login, oauth2-proxy the session
    assert re.search(r'msg="login successful" .*email=user@example.com', kf.dex_log.read_text())
    assert re.search(r"user@example.com .*\[AuthSuccess\]", (kf.workdir / "oauth2-proxy.log").read_text())

    text = check(kf, "user@example.com", DEFAULT)
    assert text.returncode == 0 and "logged in as user@example.com" in text.stdout


def test_check_wrong_password_is_one_clear_line(kf: Chain) -> None:
    ensure_password(kf, DEFAULT)
    bad = check(kf, "user@example.com", "not-the-password")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: Dex rejected the login of user@example.com: wrong email or password"]
    assert "not-the-password" not in bad.stdout + bad.stderr


def _login(base: str) -> httpx.Client:
    """A browser-like session logged in through the forward (cookies kept)."""
    http = httpx.Client(base_url=base, follow_redirects=True, timeout=30, trust_env=False)
    page = http.get("/oauth2/start", params={"rd": "/"})
    action = re.search(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text)
    assert action, page.text[:500]
    done = http.post(
        str(page.url.join(action.group(1).replace("&amp;", "&"))),
        data={"login": "user@example.com", "password": DEFAULT},
    )
    assert done.status_code == 200 and done.json()["upstream"] == "ok", done.text[:300]
    return http


def test_connect_forwards_concurrently_and_follows_the_replacement_pod(kf: Chain) -> None:
    ensure_password(kf, DEFAULT)  # it logs in with it, and connect warns about it (below)
    sb = kf.sb
    with running_connect(sb) as (port, stderr):
        base = f"http://127.0.0.1:{port}"
        [old_pod] = gateway_pods(sb)
        session = _login(base)
        cookies = dict(session.cookies)

        def one(i: int) -> tuple[int, str]:
            if i == 60:  # mid-run: the forwarded pod goes away; its ReplicaSet makes a new one
                sb.kubectl("-n", "istio-system", "delete", "pod", old_pod, "--wait=false")
            with httpx.Client(base_url=base, cookies=cookies, timeout=60, trust_env=False) as http:
                try:
                    resp = http.get("/", params={"i": i})
                except httpx.HTTPError as exc:  # reported below with connect's own lines
                    return 0, repr(exc)
                return resp.status_code, resp.text

        start = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(one, range(200)))
        took = time.monotonic() - start
        failed = [(i, r) for i, r in enumerate(results) if r[0] != 200 or json.loads(r[1])["upstream"] != "ok"]
        assert failed == [], f"{len(failed)} of 200 failed, e.g. {failed[:3]}\n{''.join(stderr)[-2000:]}"
        assert all(json.loads(body)["email"] == "user@example.com" for _, body in results)

        # the forward moved to the replacement pod (and requests after the move went through it)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("forwarding to" in ln and old_pod not in ln for ln in stderr):
            session.get("/")
            time.sleep(0.5)
        moved = [ln for ln in stderr if "forwarding to pod istio-system/" in ln]
        assert len(moved) >= 2 and old_pod in moved[0], moved
        new_pod = moved[-1].split("istio-system/")[1].split()[0]
        assert new_pod != old_pod and new_pod in gateway_pods(sb)
        assert session.get("/").json()["upstream"] == "ok"
        session.close()
        # the bundle's default password is still in place: connect says so, with the fix
        assert any("user@example.com still has Kubeflow's published default password" in ln for ln in stderr)
        assert any("kfboot auth set-password --user user@example.com" in ln for ln in stderr)
        assert took < 120, took


def test_a_browser_logs_in_through_connect(kf: Chain, tmp_path: Path) -> None:
    """Headless Chromium at `kfboot connect`'s URL: oauth2-proxy's sign-in page, Dex's form, the session.
    Screenshots of both pages are kept in the test's folder."""
    ensure_password(kf, DEFAULT)
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium-headless-shell) for the browser test")
    with running_connect(kf.sb) as (port, _), chromium_page(chromium, tmp_path / "profile") as page:
        shots = dex_login(page, port, "user@example.com", DEFAULT, shots=tmp_path)
        answer = json.loads(page.eval("document.body.innerText"))
        assert answer == {"upstream": "ok", "email": "user@example.com"}
    for png in shots:
        assert_screenshot(png)
    assert len(shots) == 2


def test_connect_bad_input(kf: Chain) -> None:
    sb = kf.sb
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = sb.env.kfboot("connect", "--port", str(port), timeout=60)
    assert busy.returncode == 2
    assert f"error: 127.0.0.1:{port} is already in use" in busy.stderr

    usage = sb.env.kfboot("connect", "--user", "user@example.com", timeout=60)
    assert usage.returncode == 2 and "--user and --password-stdin go with --check" in usage.stderr

    sb.kubectl("-n", "istio-system", "scale", "deployment/istio-ingressgateway", "--replicas=0")
    try:
        deadline = time.monotonic() + 60
        while gateway_pods(sb) and time.monotonic() < deadline:
            time.sleep(0.5)
        none = sb.env.kfboot("connect", "--check", timeout=60)
        assert none.returncode == 3, none.stderr
        assert "error: service istio-system/istio-ingressgateway has no Ready pod" in none.stderr
    finally:
        sb.kubectl("-n", "istio-system", "scale", "deployment/istio-ingressgateway", "--replicas=1")
        wait_rollout(sb, "istio-system", "istio-ingressgateway")
    back = sb.env.kfboot("connect", "--check", timeout=60)
    assert back.returncode == 0, back.stderr


def test_connect_without_kubeflow(sandbox: Sandbox) -> None:
    proc = sandbox.env.kfboot("--kubeconfig", str(sandbox.kubeconfig), "connect", "--check", timeout=60)
    assert proc.returncode == 3
    assert "error: service istio-system/istio-ingressgateway does not exist" in proc.stderr


def dex_password_hash(sb: Sandbox) -> str:
    data = sb.kubectl_json("-n", "auth", "get", "secret", "dex-passwords")["data"]
    assert isinstance(data, dict)
    return base64.b64decode(data["DEX_USER_PASSWORD"]).decode()


def ensure_password(kf: Chain, password: str) -> None:
    """user@example.com logs in with ``password`` (whatever the tests before changed): each test sets up
    the state it relies on, so the module passes in any order and each test alone. ``kfboot auth`` refuses
    the published default, so that one goes into the Secret directly (as the manifests have it)."""
    if bcrypt.checkpw(password.encode(), dex_password_hash(kf.sb).encode()):
        return
    if password == DEFAULT:
        hashed = bcrypt.hashpw(DEFAULT.encode(), bcrypt.gensalt(12)).decode()
        patch = json.dumps({"stringData": {"DEX_USER_PASSWORD": hashed}})
        kf.sb.kubectl("-n", "auth", "patch", "secret", "dex-passwords", "--type=merge", "-p", patch)
    else:
        proc = kf.sb.env.kfboot("auth", "set-password", "--password-stdin", input=password + "\n", timeout=240)
        assert proc.returncode == 0, proc.stderr
    kf.start_dex()


def test_set_password_through_the_chain(kf: Chain) -> None:
    ensure_password(kf, DEFAULT)
    sb = kf.sb
    before = dex_password_hash(sb)
    outputs: list[str] = []

    too_long = sb.env.kfboot("auth", "set-password", "--password-stdin", input="é" * 37 + "\n", timeout=60)
    outputs += [too_long.stdout, too_long.stderr]
    assert too_long.returncode == 2
    assert "longer than 72 bytes" in too_long.stderr and dex_password_hash(sb) == before

    generation = sb.kubectl_json("-n", "auth", "get", "deployment", "dex")["metadata"]["generation"]
    proc = sb.env.kfboot("auth", "set-password", "--password-stdin", input=NEW_PASSWORD + "\n", timeout=240)
    outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stderr
    assert "password of user@example.com changed; Dex restarted" in proc.stdout
    after = dex_password_hash(sb)
    assert after.startswith("$2b$12$") and bcrypt.checkpw(NEW_PASSWORD.encode(), after.encode())
    assert not bcrypt.checkpw(DEFAULT.encode(), after.encode())
    dep = sb.kubectl_json("-n", "auth", "get", "deployment", "dex")
    assert dep["metadata"]["generation"] > generation
    assert "kubectl.kubernetes.io/restartedAt" in dep["spec"]["template"]["metadata"]["annotations"]

    kf.start_dex()  # what the Deployment's new pod does: Dex reads the changed Secret
    old = check(kf, "user@example.com", DEFAULT)
    outputs += [old.stdout, old.stderr]
    assert old.returncode == 1 and "wrong email or password" in old.stderr
    new = check(kf, "user@example.com", NEW_PASSWORD)
    outputs += [new.stdout, new.stderr]
    assert new.returncode == 0, new.stderr

    users = sb.env.kfboot("auth", "list-users", "-o", "json", timeout=60)
    outputs += [users.stdout, users.stderr]
    [user] = json.loads(users.stdout)["users"]
    assert user["email"] == "user@example.com" and user["default_password"] is False
    assert user["profile"] == "kubeflow-user-example-com"

    assert all(NEW_PASSWORD not in text for text in outputs)
    leaks = [p for p in (sb.logs_dir, kf.workdir) for f in p.glob("*.log") if NEW_PASSWORD in f.read_text("latin-1")]
    assert leaks == []


def test_add_and_remove_user(kf: Chain) -> None:
    ensure_password(kf, PROMPTED_PASSWORD)  # not the default: list-users says so below
    sb = kf.sb
    outputs: list[str] = []

    def kfboot(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = sb.env.kfboot(*args, input=None if password is None else password + "\n", timeout=240)
        outputs.extend([proc.stdout, proc.stderr])
        return proc

    add = kfboot("auth", "add-user", "jane@example.com", "--password-stdin", password=JANE_PASSWORD)
    assert add.returncode == 0, add.stderr
    assert "user jane@example.com added (Profile kubeflow-jane-example-com); Dex restarted" in add.stdout
    profile = sb.kubectl_json("get", "profile", "kubeflow-jane-example-com")
    assert profile["spec"] == {"owner": {"kind": "User", "name": "jane@example.com"}}
    sb.kubectl("get", "namespace", "kubeflow-jane-example-com")  # the profile controller's doing
    again = kfboot("auth", "add-user", "jane@example.com", "--password-stdin", password=JANE_PASSWORD)
    assert again.returncode == 2 and "already has a user jane@example.com" in again.stderr

    listed = json.loads(kfboot("auth", "list-users", "-o", "json").stdout)["users"]
    assert [(u["email"], u["source"], u["default_password"], u["profile"]) for u in listed] == [
        ("user@example.com", "Secret dex-passwords", False, "kubeflow-user-example-com"),
        ("jane@example.com", "ConfigMap dex", False, "kubeflow-jane-example-com"),
    ]

    kf.start_dex()
    assert check(kf, "jane@example.com", JANE_PASSWORD).returncode == 0

    # an added user's password lives in the Dex config: set-password --user changes it there
    changed = kfboot("auth", "set-password", "--user", "jane@example.com", "--password-stdin", password=JANE_PASSWORD2)
    assert changed.returncode == 0, changed.stderr
    kf.start_dex()
    assert check(kf, "jane@example.com", JANE_PASSWORD).returncode == 1
    assert check(kf, "jane@example.com", JANE_PASSWORD2).returncode == 0

    # without --delete-namespace the Profile (and the user's work) stays
    rm = kfboot("auth", "remove-user", "jane@example.com")
    assert rm.returncode == 0, rm.stderr
    assert "Profile kubeflow-jane-example-com and its namespace kept" in rm.stderr
    sb.kubectl("get", "profile", "kubeflow-jane-example-com")
    kf.start_dex()
    gone = check(kf, "jane@example.com", JANE_PASSWORD2)
    assert gone.returncode == 1 and "wrong email or password" in gone.stderr
    missing = kfboot("auth", "remove-user", "jane@example.com")
    assert missing.returncode == 2 and "Dex has no user jane@example.com" in missing.stderr

    # re-adding finds the kept Profile; removing with --delete-namespace deletes it
    assert kfboot("auth", "add-user", "jane@example.com", "--password-stdin", password=JANE_PASSWORD).returncode == 0
    rm = kfboot("auth", "remove-user", "jane@example.com", "--delete-namespace")
    assert rm.returncode == 0, rm.stderr
    assert sb.kubectl("get", "profile", "kubeflow-jane-example-com", check=False).returncode != 0
    last = kfboot("auth", "remove-user", "user@example.com")
    assert last.returncode == 2 and "Dex's only user" in last.stderr

    assert all(JANE_PASSWORD not in text and JANE_PASSWORD2 not in text for text in outputs)


def test_prompted_passwords_are_not_echoed(kf: Chain) -> None:
    """At a terminal: set-password asks twice, connect --check once; nothing typed shows."""
    third = PROMPTED_PASSWORD
    code, shown = run_in_pty(["auth", "set-password"], [third, third], env=kf.sb.env.env)
    assert code == 0, shown
    assert "New password: " in shown and "New password (again): " in shown and third not in shown
    kf.start_dex()
    code, shown = run_in_pty(["connect", "--check", "--user", "user@example.com"], [third], env=kf.sb.env.env)
    assert code == 0 and "logged in as user@example.com" in shown and third not in shown, shown


def test_connect_json_on_a_free_port_and_sigterm(kf: Chain) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kfboot", "connect", "--port", "0", "-o", "json"],
        env=kf.sb.env.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        doc = json.loads(proc.stdout.readline())
        assert doc["address"] == "127.0.0.1" and doc["port"] > 0
        assert doc["url"] == f"http://localhost:{doc['port']}/"
        users = json.loads(kf.sb.env.kfboot("auth", "list-users", "-o", "json").stdout)["users"]
        assert doc["defaultPasswordUsers"] == [u["email"] for u in users if u["default_password"]]
        resp = httpx.get(f"http://127.0.0.1:{doc['port']}/oauth2/sign_in", timeout=30)
        assert resp.status_code == 200 and "Sign in with Dex" in resp.text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in err.splitlines()]
    assert any(e["event"] == "info" and e["message"].startswith("stopped: ") for e in events), events


def test_reinstall_keeps_what_auth_changed(kf: Chain, testdata_dir: Path) -> None:
    """`kfboot kubeflow install` again (as `up` does) must not bring the default password back nor drop
    added users: it carries kfboot auth's changes into the manifests it applies."""
    ensure_password(kf, PROMPTED_PASSWORD)
    sb = kf.sb
    add = sb.env.kfboot("auth", "add-user", "bob@example.com", "--password-stdin", input=BOB_PASSWORD + "\n")
    assert add.returncode == 0, add.stderr
    bundle = testdata_dir / "kubeflow" / "kubeflow-26.03-example.yaml.gz"
    try:
        for _ in range(2):  # twice: the first re-apply must leave kfboot auth's ownership in place
            proc = sb.env.kfboot("kubeflow", "install", "--source", str(bundle), "--no-wait", timeout=300)
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert "kept what `kfboot auth` changed in Secret auth/dex-passwords: DEX_USER_PASSWORD" in proc.stderr
            assert "kept what `kfboot auth` changed in ConfigMap auth/dex: staticPasswords" in proc.stderr
        users = json.loads(sb.env.kfboot("auth", "list-users", "-o", "json").stdout)["users"]
        assert [(u["email"], u["default_password"]) for u in users] == [
            ("user@example.com", False),
            ("bob@example.com", False),
        ]
        config = sb.kubectl_json("-n", "auth", "get", "configmap", "dex")["data"]["config.yaml"]
        assert "issuer: http://dex.auth.svc.cluster.local:5556/dex" in config  # the rest is the bundle's
        kf.start_dex()
        assert check(kf, "user@example.com", PROMPTED_PASSWORD).returncode == 0
        assert check(kf, "bob@example.com", BOB_PASSWORD).returncode == 0
        assert check(kf, "user@example.com", DEFAULT).returncode == 1
    finally:  # the other tests of this module expect only the users they add
        sb.env.kfboot("auth", "remove-user", "bob@example.com", "--delete-namespace", timeout=240)


ANN_PASSWORD = "ann-Secret-pw-3b9e40"
ANN_PASSWORD2 = "ann-Other-pw-51c7aa"


def dex_users(sb: Sandbox) -> list[dict[str, str]]:
    config = sb.kubectl_json("-n", "auth", "get", "configmap", "dex")["data"]["config.yaml"]
    users = yaml.safe_load(config)["staticPasswords"]
    assert isinstance(users, list)
    return users


def test_up_keeps_the_users_of_kfboot_yaml(kf: Chain, tmp_path: Path) -> None:
    """auth.users: each a Dex login with exactly the configured bcrypt hash, and a Profile; applied by
    `up`'s access step, idempotently (Dex restarts only when a login changed)."""
    sb = kf.sb
    cfg = tmp_path / "kfboot.yaml"
    outputs: list[str] = []

    def up_with(hashed: str) -> list[str]:
        cfg.write_text(
            "apiVersion: kfboot/v1alpha1\nkind: Environment\n"
            f"auth:\n  users:\n  - {{email: ann@example.com, passwordHash: '{hashed}'}}\n"
        )
        proc = sb.env.kfboot("--config", str(cfg), "up", "--only", "access", "-o", "json", timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert hashed not in proc.stdout + proc.stderr
        outputs.extend([proc.stdout, proc.stderr])
        users: list[str] = json.loads(proc.stdout)["access"]["users"]
        return users

    first = bcrypt.hashpw(ANN_PASSWORD.encode(), bcrypt.gensalt(12)).decode()
    assert up_with(first) == ["added ann@example.com"]
    assert [u["hash"] for u in dex_users(sb) if u["email"] == "ann@example.com"] == [first]
    profile = sb.kubectl_json("get", "profile", "kubeflow-ann-example-com")
    assert profile["spec"] == {"owner": {"kind": "User", "name": "ann@example.com"}}
    kf.start_dex()
    assert check(kf, "ann@example.com", ANN_PASSWORD).returncode == 0

    # the same kfboot.yaml again: nothing is written, Dex is not restarted
    restarted_at = sb.kubectl_json("-n", "auth", "get", "deployment", "dex")["spec"]["template"]["metadata"]
    version = sb.kubectl_json("-n", "auth", "get", "configmap", "dex")["metadata"]["resourceVersion"]
    assert up_with(first) == []
    assert sb.kubectl_json("-n", "auth", "get", "configmap", "dex")["metadata"]["resourceVersion"] == version
    assert sb.kubectl_json("-n", "auth", "get", "deployment", "dex")["spec"]["template"]["metadata"] == restarted_at

    # another hash in kfboot.yaml is another password: the old one stops working
    second = bcrypt.hashpw(ANN_PASSWORD2.encode(), bcrypt.gensalt(12)).decode()
    assert up_with(second) == ["new password for ann@example.com"]
    kf.start_dex()
    assert check(kf, "ann@example.com", ANN_PASSWORD).returncode == 1
    assert check(kf, "ann@example.com", ANN_PASSWORD2).returncode == 0

    rm = sb.env.kfboot("auth", "remove-user", "ann@example.com", "--delete-namespace", timeout=240)
    assert rm.returncode == 0, rm.stderr
    assert all(secret not in text for text in outputs for secret in (ANN_PASSWORD, ANN_PASSWORD2, first, second))


ROLL_PASSWORD = "roll-Secret-pw-8d21f0"
ROLL_PASSWORD2 = "roll-Other-pw-47b9c3"


def test_set_password_returns_once_only_the_new_dex_pod_serves(kf: Chain) -> None:
    """Dex's pods as the Deployment runs them (one Dex per pod, the Service sends a connection to a Ready
    pod; chain.DexPods). The bundle's readinessProbe makes a new Dex pod Ready 10 s after it starts, and
    with one replica and surge 1 the old pod serves until then: set-password must return only once the
    new pod is Ready and the old one is gone, so the old password is refused the moment it returns."""
    sb = kf.sb
    email = "roll@example.com"
    [container] = sb.kubectl_json("-n", "auth", "get", "deployment", "dex")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["initialDelaySeconds"] == 10
    add = sb.env.kfboot("auth", "add-user", email, "--password-stdin", input=ROLL_PASSWORD + "\n", timeout=240)
    assert add.returncode == 0, add.stderr
    try:
        with kf.dex_pods() as pods:
            deadline = time.monotonic() + 60
            while check(kf, email, ROLL_PASSWORD).returncode != 0:  # the current pod's Dex is up
                assert time.monotonic() < deadline, kf.logs()
                time.sleep(0.5)
            [before] = [p["metadata"]["name"] for p in pods.pods()]
            proc = sb.env.kfboot(
                "auth", "set-password", "--user", email, "--password-stdin", input=ROLL_PASSWORD2 + "\n", timeout=240
            )
            old = check(kf, email, ROLL_PASSWORD)  # at once: no wait of any kind before this
            assert proc.returncode == 0, proc.stderr
            assert old.returncode == 1 and "wrong email or password" in old.stderr, old.stdout + old.stderr
            assert check(kf, email, ROLL_PASSWORD2).returncode == 0
            [after] = pods.pods()
            assert after["metadata"]["name"] != before and after["metadata"]["name"] in pods.started
            # the simulated kubelet made it Ready only after the probe's initial delay
            started = after["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
            ready = next(c for c in after["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True"
            seconds = (parse_time(ready["lastTransitionTime"]) - parse_time(started)).total_seconds()
            assert seconds >= 9, (started, ready)  # API times are whole seconds
    finally:
        rm = sb.env.kfboot("auth", "remove-user", email, "--delete-namespace", timeout=240)
        assert rm.returncode == 0, rm.stderr


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
