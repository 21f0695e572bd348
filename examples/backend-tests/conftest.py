"""Start `herald serve --emulator` once for the session, give every test a clean slate.

The binary comes from $HERALD_BIN (default: target/debug/herald at the repository's
root). Nothing else is needed: the emulator makes a throwaway data directory and prints
where its bootstrap files are.
"""

import json
import os
import pathlib
import re
import subprocess
import tempfile
import time

import pytest
import requests

from backend import PushBackend

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Emulator:
    """The emulator API (`/emulator/v1`), with the admin token from bootstrap.json."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.url = bootstrap["push_api_url"]
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {bootstrap['admin_token']}"

    def call(self, method, path, body=None, expect=200):
        resp = self.http.request(method, f"{self.url}/emulator/v1{path}", json=body, timeout=10)
        assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None

    def create_device(self, permission="allow", online=True, **extra):
        body = {"client_id": self.bootstrap["client_id"], "permission": permission, "online": online}
        body.update(extra)
        return self.call("POST", "/devices", body, expect=201)

    def inbox(self, device):
        return self.call("GET", f"/devices/{device['device_id']}/inbox")["items"]

    def act(self, device, action, expect=200):
        return self.call("POST", f"/devices/{device['device_id']}/actions", action, expect=expect)

    def advance(self, secs):
        return self.call("POST", "/clock", {"advance_secs": secs})

    def now(self):
        """Herald's clock in seconds: the backend signs its JWTs with it."""
        return self.call("GET", "/clock")["now_ms"] / 1000

    def fault(self, **fault):
        return self.call("POST", "/faults", fault, expect=201)

    def receipts(self):
        return self.call("GET", "/receipts")["items"]

    def reset(self):
        self.call("DELETE", "/state", expect=204)


def _wait_for_bootstrap(log_path, server, deadline):
    pattern = re.compile(r"^\s*bootstrap\s+(\S+)", re.MULTILINE)
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"herald exited: {log_path.read_text()}")
        found = pattern.search(log_path.read_text(errors="replace"))
        if found:
            return pathlib.Path(found.group(1))
        time.sleep(0.02)
    raise RuntimeError(f"no bootstrap line from herald within the deadline: {log_path.read_text()}")


@pytest.fixture(scope="session")
def emulator():
    binary = os.environ.get("HERALD_BIN", str(ROOT / "target" / "debug" / "herald"))
    logs = tempfile.TemporaryDirectory(prefix="herald-emulator-log-")
    log_path = pathlib.Path(logs.name) / "herald.log"
    started = time.monotonic()
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [binary, "serve", "--emulator", "--listen", "127.0.0.1:0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HERALD_LOG": os.environ.get("HERALD_LOG", "warn")},
        )
    try:
        bootstrap_path = _wait_for_bootstrap(log_path, server, time.monotonic() + 30)
        bootstrap = json.loads(bootstrap_path.read_text())
        requests.get(f"{bootstrap['push_api_url']}/healthz", timeout=5).raise_for_status()
        print(f"\nherald serve --emulator ready in {time.monotonic() - started:.2f} s")
        emu = Emulator(bootstrap)
        # The app may send order updates as EXPRESS (a right the operator grants once;
        # rights survive the resets between tests). Without it, EXPRESS is downgraded to
        # MARKETING, as Push Kit does.
        rights = f"{emu.url}/api/v1/apps/{bootstrap['client_id']}/rights/EXPRESS"
        for action in ("request", "grant"):
            emu.http.post(f"{rights}/{action}", json={"reason": "order updates"}, timeout=10).raise_for_status()
        yield emu
    finally:
        server.terminate()
        server.wait(timeout=10)
        logs.cleanup()


@pytest.fixture(autouse=True)
def clean(emulator):
    """Every test starts from a clean slate: no devices, messages, quotas or receipts."""
    started = time.monotonic()
    emulator.reset()
    emulator.reset_ms = (time.monotonic() - started) * 1000
    yield


@pytest.fixture
def backend(emulator):
    """The backend under test, pointed at the emulator, on the emulator's clock."""
    return PushBackend(
        emulator.bootstrap["service_account_file"],
        emulator.url,
        now=emulator.now,
    )
