"""Running infra/provision.sh and deploy.sh in tests, and checking the
commands they would run against the real gcloud CLI's argument parser.

Nothing here reaches a network: the scripts run either in dry-run mode (no
gcloud at all) or against tests/deploy/fake_cloud.py, and the real gcloud and
bq only ever run inside a network-less namespace (`unshare -n`).
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.fake_cloud import VERBS

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "infra" / "provision.sh"
DEPLOY = REPO / "deploy.sh"
FAKE_CLOUD = Path(__file__).with_name("fake_cloud.py")

PROJECT = "acme-verify-test"
REGION = "europe-west1"
TARGET = ("--project", PROJECT, "--region", REGION)

ENTRY_POINTS = {
    "webhook-intake": "webhook_intake",
    "timer-expiry": "timer_expiry",
    "sweep": "sweep",
    "send-customer-email": "send_customer_email",
    "record-analytics": "record_analytics",
    "request-refund": "request_refund",
    "operator-console": "operator_console",
}

# Values an operator would put in Secret Manager. Distinctive, so a test can
# tell if one ever leaks into a command line or the scripts' output.
OPERATOR_SECRETS = {
    "order-webhook-secret": "whsec_" + base64.b64encode(b"leak-canary-order-key-32-bytes!!").decode(),
    "lightspeed-client-secret": "leak-canary-lightspeed-7c1f",
    "veriff-api-key": "leak-canary-veriff-key-91ab",
    "veriff-shared-secret": "leak-canary-veriff-secret-5d2e",
    "sendgrid-api-key": "SG.leak-canary-sendgrid-0f3a",
    "refund-api-token": "leak-canary-refund-token-44c0",
    "console-secret": "leak-canary-console-csrf-3b9d",
    "customer-key-secret": "leak-canary-customer-pepper-8e61",
    "shopify-client-secret": "leak-canary-shopify-client-8e21",
    "shopify-admin-token": "shpat_leak-canary-shopify-admin-6a07",
    "woocommerce-webhook-secret": "leak-canary-woo-webhook-19bd",
    "woocommerce-consumer-key": "ck_leak-canary-woo-key-52fe",
    "woocommerce-consumer-secret": "cs_leak-canary-woo-secret-0c4a",
    "outcome-webhook-secret": "whsec_" + base64.b64encode(b"leak-canary-outcome-key-32bytes!").decode(),
}

# Settings an operator puts in the env file.
OPERATOR_SETTINGS = {"EMAIL_FROM": "verify@store.example", "CONSOLE_OPERATORS": "alice@store.example"}

READ_VERBS = {"describe", "list", "get-iam-policy", "access", "show"}


def script_env(config_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the scripts run with: the test's own, minus anything
    that could select a project or credentials, plus `extra`; gcloud's own
    configuration in `config_dir` (inside the test's folder, removed with it)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLOUDSDK_", "GOOGLE_", "DRY_RUN"))
        and k not in ("PROJECT_ID", "REGION")
    }
    env.update(
        NO_GCE_CHECK="true",
        CLOUDSDK_CORE_DISABLE_PROMPTS="1",
        CLOUDSDK_CONFIG=str(config_dir),
    )
    env.update(extra or {})
    return env


def write_shims(bin_dir: Path, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("gcloud", "bq"):
        shim = bin_dir / tool
        shim.write_text("#!/bin/sh\n" + body.replace("TOOL", tool))
        shim.chmod(0o755)


# The stand-in for `python -m shared.db.upgrade` in the stub source tree: it
# records its arguments, the database settings it was given (the password
# only as whether it is the migrator's token) and how many gcloud calls came
# before it.
STUB_UPGRADE = """
import json, os, sys
env = {k: os.environ.get(k) for k in ("INSTANCE_CONNECTION_NAME", "DB_NAME", "DB_USER", "DB_IAM_AUTH",
                                      "DATABASE_URL")}
env["DB_PASSWORD_IS_TOKEN"] = os.environ.get("DB_PASSWORD", "").startswith("fake-token-for-")
with open(os.environ["FAKE_CLOUD_LOG"]) as log:
    before = sum(1 for line in log if line.strip())
with open(os.environ["FAKE_UPGRADE_LOG"], "a") as out:
    out.write(json.dumps({"argv": sys.argv[1:], "env": env, "gcloud_calls_before": before}) + "\\n")
sys.exit(int(os.environ.get("FAKE_UPGRADE_EXIT", "0")))
"""


def write_stub_source(directory: Path) -> Path:
    """A source tree deploy.sh accepts, standing in for the real one."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"from functions.{ep} import {ep}  # noqa: F401" for ep in ENTRY_POINTS.values()]
    (directory / "main.py").write_text("\n".join(lines) + "\n")
    (directory / "requirements.txt").write_text("functions-framework\n")
    (directory / "shared" / "db").mkdir(parents=True, exist_ok=True)
    (directory / "shared" / "db" / "upgrade.py").write_text(STUB_UPGRADE)
    for package in ("shared", "shared/db"):
        (directory / package / "__init__.py").write_text("")
    return directory


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[list[str]]


@dataclass
class FakeCloud:
    """A temporary PATH whose gcloud and bq are fake_cloud.py."""

    root: Path
    bin_dir: Path = field(init=False)
    state_path: Path = field(init=False)
    log_path: Path = field(init=False)
    upgrade_log: Path = field(init=False)
    source_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.bin_dir = self.root / "bin"
        self.state_path = self.root / "state.json"
        self.log_path = self.root / "calls.jsonl"
        self.upgrade_log = self.root / "upgrades.jsonl"
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        self.source_dir = write_stub_source(self.root / "source")
        write_shims(self.bin_dir, f'exec "{sys.executable}" "{FAKE_CLOUD}" TOOL "$@"\n')

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = script_env(self.root / "gcloud-config", OPERATOR_SETTINGS)
        env.update(
            PATH=f"{self.bin_dir}{os.pathsep}{os.environ['PATH']}",
            FAKE_CLOUD_STATE=str(self.state_path),
            FAKE_CLOUD_LOG=str(self.log_path),
            DEPLOY_SOURCE_DIR=str(self.source_dir),
            DEPLOY_PYTHON=sys.executable,
            FAKE_UPGRADE_LOG=str(self.upgrade_log),
            RETRY_DELAY="0",
        )
        env.update(extra or {})
        return env

    def calls(self) -> list[list[str]]:
        with self.log_path.open() as handle:
            return [json.loads(line)["argv"] for line in handle if line.strip()]

    def upgrades(self) -> list[dict]:
        """Each run of the schema step (the stub's record)."""
        if not self.upgrade_log.exists():
            return []
        return [json.loads(line) for line in self.upgrade_log.read_text().splitlines() if line.strip()]

    def state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def run(self, script: Path, *args: str, env: dict[str, str] | None = None) -> Run:
        before = len(self.calls())
        proc = subprocess.run(
            ["bash", str(script), *args],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr, self.calls()[before:])

    def gcloud(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Act as the operator, on the same fake project."""
        return subprocess.run(
            [str(self.bin_dir / "gcloud"), *args],
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def set_operator_secrets(self, secrets: dict[str, str] = OPERATOR_SECRETS) -> None:
        for name, value in secrets.items():
            done = self.gcloud(
                "secrets", "versions", "add", name, "--data-file=-", f"--project={PROJECT}", input=value
            )
            assert done.returncode == 0, done.stderr


def dry_run(script: Path, *args: str, env: dict[str, str] | None = None, root: Path) -> Run:
    """Run a script with --dry-run and a gcloud/bq on PATH that only record
    and fail, so any command that is really executed shows up in `calls`."""
    bin_dir = root / "poison-bin"
    log = root / "poison-calls.txt"
    write_shims(bin_dir, f'echo "TOOL $*" >> "{log}"\nexit 99\n')
    full_env = script_env(root / "gcloud-config", env)
    full_env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    proc = subprocess.run(
        ["bash", str(script), *args, "--dry-run"],
        cwd=root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    executed = log.read_text().splitlines() if log.exists() else []
    return Run(proc.returncode, proc.stdout, proc.stderr, [line.split() for line in executed])


def commands_in(output: str) -> list[list[str]]:
    """The gcloud and bq commands in dry-run output (comments and the closing
    summary are skipped)."""
    found = []
    for line in output.splitlines():
        if line.startswith(("gcloud ", "bq ")):
            found.append(shlex.split(line))
    return found


def verb_of(argv: list[str]) -> str:
    if argv[0] == "bq":
        return next(word for word in argv[1:] if not word.startswith("-"))
    return next(word for word in argv[1:] if word in VERBS)


def flag(argv: list[str], name: str) -> str | None:
    """The value of --name=value in argv (True-ish '' for a bare --name)."""
    for word in argv:
        if word == f"--{name}":
            return ""
        if word.startswith(f"--{name}="):
            return word.split("=", 1)[1]
    return None


# --- the real CLI's argument parser ---------------------------------------------

CREDENTIALS_ERROR = "You do not currently have an active account selected"
BQ_OFFLINE_ERROR = "Could not connect with BigQuery server"


def parser_check_unavailable() -> str | None:
    """Why the parser check cannot run here, or None when it can."""
    if not shutil.which("gcloud"):
        return "the Google Cloud CLI (gcloud) is not installed"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -n is not permitted here (needs root): {probe.stderr.strip()}"
    return None


@dataclass
class Verdict:
    argv: list[str]
    returncode: int
    output: str

    @property
    def first_error(self) -> str:
        for line in self.output.splitlines():
            if line.strip():
                return line.strip()
        return ""

    @property
    def arguments_accepted(self) -> bool:
        """True when the real CLI got past parsing every argument and stopped
        only for lack of credentials (gcloud) or of a network (bq)."""
        if self.argv[0] == "bq":
            text = " ".join(self.output.split())
            return BQ_OFFLINE_ERROR in text and "Flags parsing error" not in text
        return self.returncode == 1 and CREDENTIALS_ERROR in self.output


def offline_env(config: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(config),
        "LANG": "C.UTF-8",
        "CLOUDSDK_CONFIG": str(config),
        "NO_GCE_CHECK": "true",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
    }


def run_one(argv: list[str], scratch: Path) -> Verdict:
    """One command, one process: `unshare -n gcloud ...` (or bq) with an
    empty configuration."""
    config = Path(tempfile.mkdtemp(prefix="cfg-", dir=scratch))
    env = offline_env(config)
    if argv[0] == "bq":
        # bq asks gcloud for credentials before it parses its own flags; a
        # dummy token (useless: there is no network) lets it reach its parser.
        token = config / "dummy-token"
        token.write_text("not-a-real-token\n")
        env["CLOUDSDK_AUTH_ACCESS_TOKEN_FILE"] = str(token)
    try:
        proc = subprocess.run(
            ["unshare", "-n", *argv],
            cwd=config,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return Verdict(argv, -1, "timed out")
    finally:
        shutil.rmtree(config, ignore_errors=True)
    return Verdict(argv, proc.returncode, proc.stdout + proc.stderr)


_SDK: tuple[str, str] | None = None


def gcloud_sdk(scratch: Path) -> tuple[str, str]:
    """(the SDK's lib directory, the Python gcloud runs on), as gcloud says."""
    global _SDK
    if _SDK is None:
        config = Path(tempfile.mkdtemp(prefix="cfg-", dir=scratch))
        proc = subprocess.run(
            ["unshare", "-n", "gcloud", "info", "--format=value(installation.sdk_root,basic.python_location)"],
            cwd=config,
            env=offline_env(config),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        root, python = proc.stdout.strip().split("\t")
        _SDK = (str(Path(root) / "lib"), python)
    return _SDK


def run_batch(commands: list[list[str]], scratch: Path) -> list[Verdict]:
    """Many gcloud commands through the real CLI in one process
    (tests/deploy/gcloud_batch.py), network-less, with an empty configuration."""
    lib, python = gcloud_sdk(scratch)
    config = Path(tempfile.mkdtemp(prefix="cfg-", dir=scratch))
    try:
        proc = subprocess.run(
            ["unshare", "-n", python, str(Path(__file__).with_name("gcloud_batch.py")), lib],
            cwd=config,
            env=offline_env(config),
            input=json.dumps(commands),
            capture_output=True,
            text=True,
            timeout=120 + 5 * len(commands),
        )
    finally:
        shutil.rmtree(config, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"gcloud batch runner failed: {proc.stderr[-2000:]}")
    return [Verdict(v["argv"], v["returncode"], v["output"]) for v in json.loads(proc.stdout)]


def check_with_real_cli(commands: list[list[str]], batches: int = 2) -> list[Verdict]:
    """Every command through the real CLI, network-less and without
    credentials: gcloud commands in a few batch processes, bq commands one
    process each (bq has no in-process entry point). Verdicts come back in
    the order of `commands`."""
    scratch = Path(tempfile.mkdtemp(prefix="gcloud-parser-check-"))
    try:
        gcloud_cmds = [argv for argv in commands if argv[0] == "gcloud"]
        other = [argv for argv in commands if argv[0] != "gcloud"]
        chunks = [gcloud_cmds[i::batches] for i in range(batches) if gcloud_cmds[i::batches]]
        with ThreadPoolExecutor(max_workers=batches + 4) as pool:
            batch_jobs = [pool.submit(run_batch, chunk, scratch) for chunk in chunks]
            single_jobs = [pool.submit(run_one, argv, scratch) for argv in other]
            verdicts = [v for job in batch_jobs for v in job.result()]
            verdicts += [job.result() for job in single_jobs]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    by_argv = {tuple(v.argv): v for v in verdicts}
    return [by_argv[tuple(argv)] for argv in commands]


def unique(commands: list[list[str]]) -> list[list[str]]:
    seen: set[tuple[str, ...]] = set()
    out = []
    for argv in commands:
        if tuple(argv) not in seen:
            seen.add(tuple(argv))
            out.append(argv)
    return out
