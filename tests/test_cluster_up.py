"""`ray up` end to end on loopback (marker ``cluster``; run with ``make test-cluster``).

An sshd on 127.0.0.1:22 stands in for two machines: the head at 127.0.0.1 and a worker at
127.0.0.2. The config is cluster.local.yaml with only what one host needs
changed: addresses, the SSH key, the installed venv instead of a fresh install, and the worker's own
node IP and temp dir. Then the README workflow: `ray up`, `ray dashboard` (SSH tunnel), `ray job
submit --working-dir .` of the digits smoke search, polling the dashboard's REST API with the token
until SUCCEEDED, the exported configs, the trials placed on the worker, `ray down`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.cluster, pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SSHD_CONFIG = """Port 22
ListenAddress 127.0.0.1
ListenAddress 127.0.0.2
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
StrictModes no
UsePAM no
"""


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A throw-away sshd on loopback port 22 accepting one throw-away key; yields the key path."""
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists() or not shutil.which("rsync"):
        pytest.skip("needs root, openssh-server and rsync (make test-cluster installs them)")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 22)) == 0:
            pytest.skip("port 22 on loopback is taken by another sshd")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    shutil.copy(d / "id.pub", d / "authorized_keys")
    (d / "sshd_config").write_text(SSHD_CONFIG.format(d=d))
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation dir sshd insists on
    subprocess.run(["/usr/sbin/sshd", "-f", str(d / "sshd_config")], check=True)
    yield d / "id"
    pid = (d / "sshd.pid").read_text().strip()
    subprocess.run(["kill", pid], check=False)


def loopback_config(key: Path, work: Path, worker_tmp: Path) -> dict:
    cfg = yaml.safe_load((ROOT / "cluster.local.yaml").read_text())
    cfg["cluster_name"] = "daso-ray-loopback"
    cfg["provider"].update(head_ip="127.0.0.1", worker_ips=["127.0.0.2"])
    cfg["auth"] = {"ssh_user": "root", "ssh_private_key": str(key)}
    cfg["min_workers"] = cfg["max_workers"] = 1
    remote = work / "node" / "daso_ray"
    cfg["file_mounts"] = {str(remote): str(ROOT), "~/.ray/auth_token": "~/.ray/auth_token"}
    # Reuse this venv instead of a fresh install (minutes); the rest of the file is as shipped.
    cfg["setup_commands"] = [f"ln -sfn {VENV_BIN.parent} {remote}/.venv"]
    ray = f"{remote}/.venv/bin/ray"
    cfg["head_start_ray_commands"] = [c.replace("~/daso_ray/.venv/bin/ray", ray)
                                      for c in cfg["head_start_ray_commands"]]
    # One host: the worker gets its own IP and temp dir and must not `ray stop` the head.
    cfg["worker_start_ray_commands"] = [
        c.replace("~/daso_ray/.venv/bin/ray", ray) + f" --node-ip-address=127.0.0.2 --num-cpus=2"
        f" --temp-dir={worker_tmp}" for c in cfg["worker_start_ray_commands"]
        if not c.endswith("ray stop")]
    return cfg


def ray_cli(*args: str, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_UP_enable_autoscaler_v2": "0", "RAY_AUTH_MODE": "token"}
    res = subprocess.run([str(VENV_BIN / "ray"), *args], capture_output=True, text=True,
                         timeout=timeout, env=env, **kw)
    assert res.returncode == 0, f"ray {' '.join(args)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def api(url: str, token: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def wait_for(url: str, token: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if api(url, token)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"{url} not reachable through the dashboard tunnel")


def wait_for_nodes(url: str, token: str, n: int, timeout: float) -> None:
    """Until the state API lists n ALIVE nodes (the worker is started by the head's autoscaler)."""
    deadline, alive = time.time() + timeout, 0
    while time.time() < deadline:
        code, body = api(url, token)
        alive = json.dumps(body).count('"ALIVE"') if code == 200 else 0
        if alive >= n:
            return
        time.sleep(2)
    pytest.fail(f"{alive} of {n} nodes alive after {timeout:.0f} s — see the head's "
                "/tmp/ray/session_latest/logs/monitor.* for the worker's start commands")


def test_ray_up_submit_search_and_down(sshd, tmp_path):
    t0 = time.time()
    token_file = Path.home() / ".ray" / "auth_token"
    if not token_file.exists():
        ray_cli("get-auth-token", "--generate")
    token = token_file.read_text().strip()
    cfg_file = tmp_path / "cluster.yaml"
    # Ray's socket paths must stay under 107 bytes: a short temp dir for the worker raylet.
    worker_tmp = Path(tempfile.mkdtemp(prefix="rw", dir="/tmp"))
    cfg_file.write_text(yaml.safe_dump(loopback_config(sshd, tmp_path, worker_tmp)))
    tunnel = None
    try:
        ray_cli("up", "-y", "--no-config-cache", str(cfg_file), timeout=600)
        port = 18265
        tunnel = subprocess.Popen([str(VENV_BIN / "ray"), "dashboard", "--port", str(port),
                                   str(cfg_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)  # its ssh child goes with the group
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/api/version", token, 60)
        assert api(f"{base}/api/version", None)[0] == 401  # token auth is on
        wait_for_nodes(f"{base}/api/v0/nodes", token, 2, 180)  # the autoscaler started the worker
        storage = tmp_path / "shared"
        entry = (f"{VENV_BIN}/python -m daso_ray.prepare digits --out data/digits && "
                 f"{VENV_BIN}/python -m daso_ray.search search_spaces/digits_lt.yaml --smoke "
                 f"--name loop --storage {storage} && "
                 f"{VENV_BIN}/python -m daso_ray.export {storage}/loop --out {storage}/loop/best")
        sub = ray_cli("job", "submit", "--address", base, "--working-dir", str(ROOT), "--no-wait",
                      "--submission-id", f"loop-{int(t0)}", "--", "bash", "-c", entry, cwd=ROOT)
        assert f"loop-{int(t0)}" in sub.stdout + sub.stderr
        status = "PENDING"
        deadline = time.time() + 600
        while status not in ("SUCCEEDED", "FAILED", "STOPPED") and time.time() < deadline:
            time.sleep(3)
            status = api(f"{base}/api/jobs/loop-{int(t0)}", token)[1].get("status", status)
        logs = api(f"{base}/api/jobs/loop-{int(t0)}/logs", token)[1].get("logs", "")
        assert status == "SUCCEEDED", logs[-4000:]
        exported = sorted(p.name for p in (storage / "loop" / "best").glob("*.yaml"))
        assert exported == [f"loop__{s}.yaml" for s in ("consistent", "reversed", "uniform")]
        hosts = {json.loads(ln)["node_ip"] for res in (storage / "loop").glob("*/*/result.json")
                 for ln in res.read_text().splitlines() if ln.strip()}
        assert hosts == {"127.0.0.2"}, hosts  # trials ran on the worker, none on the driver head
    finally:
        if tunnel is not None:
            os.killpg(tunnel.pid, signal.SIGTERM)
        # `ray down` runs a bare `ray stop` on the head, which finds ray through the venv that the
        # shipped setup puts in ~/.bashrc; this test leaves ~/.bashrc alone, so stop it explicitly.
        # (On one host the head's autoscaler shares the provider state file with `ray down` and
        # would otherwise relaunch the worker it is told to terminate.)
        ray_cli("exec", str(cfg_file), f"{VENV_BIN}/ray stop --force", timeout=120)
        ray_cli("down", "-y", str(cfg_file), timeout=300)
        shutil.rmtree(worker_tmp, ignore_errors=True)
    print(f"\nloopback ray up -> search -> down: {time.time() - t0:.0f} s")
