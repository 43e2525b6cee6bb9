"""Every command infra/provision.sh and deploy.sh would run, through the real
gcloud (and bq) argument parser.

The commands are those the scripts print in dry-run mode and those they
actually ran against the fake gcloud (with its answers: real-looking
subscription names, URLs, project number), in several configurations. Each
is then run by the real CLI inside a network-less namespace with an empty
configuration: a command whose arguments are all accepted stops with
"You do not currently have an active account selected" (exit 1); a bad flag
or value stops earlier, with exit 2 ("unrecognized arguments", "argument
--x: Invalid ..."). bq reads its flags only after finding credentials, so it
is given a dummy token and must stop for lack of a network instead.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.deploy.helpers import (
    DEPLOY,
    PROVISION,
    TARGET,
    FakeCloud,
    check_with_real_cli,
    commands_in,
    dry_run,
    offline_env,
    parser_check_unavailable,
    run_batch,
    run_one,
    unique,
)

UNAVAILABLE = parser_check_unavailable()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"parser check skipped: {UNAVAILABLE}")

# The other branches of the scripts, and values with spaces, commas and <>.
VARIANT = {"DB_IAM_AUTH": "false", "REFUND_BACKEND": "http",
           "REFUND_API_URL": "https://shop.example/refunds", "EMAIL_BACKEND": "smtp",
           "EMAIL_FROM": "Acme Store <verify@acme.example>", "REMINDER_OFFSETS": "24h,60h",
           "LIGHTSPEED_ENABLED": "false", "ALERT_EMAILS": "oncall@store.example,ops@store.example",
           "CONSOLE_ACCESS": "group:ops@acme.example, user:alice@acme.example",
           "SHOPIFY_ENABLED": "true", "SHOPIFY_SHOP_DOMAIN": "acme.myshopify.com",
           "WOOCOMMERCE_ENABLED": "true", "WOOCOMMERCE_URL": "https://shop.acme.example",
           "OUTCOME_WEBHOOK_ENABLED": "true", "OUTCOME_WEBHOOK_URL": "https://shop.acme.example/outcome"}


@pytest.fixture(scope="module")
def script_commands(tmp_path_factory) -> list[list[str]]:
    root = tmp_path_factory.mktemp("parser-check")
    commands: list[list[str]] = []
    for script, args, env in [
        (PROVISION, TARGET, {}),
        (PROVISION, TARGET, VARIANT),
        (DEPLOY, TARGET, {}),
        (DEPLOY, TARGET, VARIANT),
        (DEPLOY, (*TARGET, "sweep"), {}),
    ]:
        run = dry_run(script, *args, env=env, root=root)
        assert run.returncode == 0, run.stderr
        commands += commands_in(run.stdout)
    for name, env in (("default", {}), ("variant", VARIANT)):
        cloud = FakeCloud(root / name)
        for script in (PROVISION, PROVISION):
            assert cloud.run(script, *TARGET, env=env).returncode == 0
        cloud.set_operator_secrets()
        for script in (DEPLOY, DEPLOY):
            run = cloud.run(script, *TARGET, env=env)
            assert run.returncode == 0, run.stderr
        commands += cloud.calls()
    return unique(commands)


def test_every_command_the_scripts_run_is_accepted_by_the_real_cli(script_commands):
    kinds = {tuple(argv[1:4]) for argv in script_commands if argv[0] == "gcloud"}
    for expected in [("functions", "deploy", "webhook-intake"), ("scheduler", "jobs", "create"),
                     ("tasks", "queues", "create"), ("sql", "instances", "create"),
                     ("pubsub", "subscriptions", "update"), ("eventarc", "triggers", "describe"),
                     ("logging", "metrics", "update"), ("alpha", "monitoring", "policies"),
                     ("beta", "monitoring", "channels"), ("monitoring", "dashboards", "update")]:
        assert expected in kinds, expected
    assert ("sql", "users", "set-password") in kinds  # the password user, password on stdin
    assert any(argv[1:3] == ["auth", "print-access-token"] for argv in script_commands)  # the migrator
    assert any(argv[0] == "bq" for argv in script_commands)

    verdicts = check_with_real_cli(script_commands)

    rejected = [f"{v.first_error}\n    {' '.join(v.argv)}" for v in verdicts if not v.arguments_accepted]
    assert rejected == [], "\n".join(rejected)
    assert len(verdicts) == len(script_commands) > 150


def mutate(argv: list[str], old: str, new: str) -> list[str]:
    changed = [word.replace(old, new, 1) if word.startswith(old) else word for word in argv]
    assert changed != argv, (old, argv)
    return changed


def misspelt_variants(commands: list[list[str]]) -> list[tuple[list[str], list[str], str]]:
    """(good command, broken copy, what the CLI must say about it)."""
    def first(prefix):
        return next(argv for argv in commands if argv[: len(prefix)] == prefix)

    intake = first(["gcloud", "functions", "deploy", "webhook-intake"])
    queue = first(["gcloud", "tasks", "queues", "create"])
    job = first(["gcloud", "scheduler", "jobs", "create"])
    update = first(["gcloud", "pubsub", "subscriptions", "update"])
    table = next(argv for argv in commands if argv[0] == "bq" and "--table" in argv)
    return [
        (intake, mutate(intake, "--allow-unauthenticated", "--allow-unauthenticatd"),
         "unrecognized arguments"),
        (intake, mutate(intake, "--max-instances=", "--max-instances=ten"), "--max-instances"),
        (queue, mutate(queue, "--max-doublings=", "--max-doubling="), "unrecognized arguments"),
        (job, mutate(job, "--oidc-service-account-email=", "--oidc-service-acount-email="),
         "unrecognized arguments"),
        (update, mutate(update, "--dead-letter-topic=", "--deadletter-topic="),
         "unrecognized arguments"),
        (table, mutate(table, "--time_partitioning_field=", "--time_partitioning_feild="),
         "Flags parsing error"),
    ]


def test_the_check_catches_a_misspelt_flag(script_commands):
    cases = misspelt_variants(script_commands)
    good = [case[0] for case in cases]
    broken = [case[1] for case in cases]

    verdicts = check_with_real_cli(unique(good) + broken)

    by_argv = {tuple(v.argv): v for v in verdicts}
    for good_argv, broken_argv, message in cases:
        assert by_argv[tuple(good_argv)].arguments_accepted, good_argv
        verdict = by_argv[tuple(broken_argv)]
        assert not verdict.arguments_accepted, broken_argv
        assert message in verdict.output, verdict.output
        if broken_argv[0] == "gcloud":
            assert verdict.returncode == 2, verdict.output


def test_batched_and_one_process_per_command_checks_agree(script_commands):
    cases = misspelt_variants(script_commands)[:4]
    sample = unique([case[0] for case in cases]) + [case[1] for case in cases]
    scratch = Path(tempfile.mkdtemp(prefix="parser-agree-"))
    try:
        batched = run_batch(sample, scratch)
        alone = [run_one(argv, scratch) for argv in sample]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    assert [v.returncode for v in batched] == [v.returncode for v in alone]
    assert [v.arguments_accepted for v in batched] == [v.arguments_accepted for v in alone]
    assert [v.first_error for v in batched] == [v.first_error for v in alone]


def test_gcloudignore_keeps_tests_and_local_data_out_of_the_upload(tmp_path):
    tree = tmp_path / "source"
    files = ["main.py", "requirements.txt", "functions/webhook_intake.py", "shared/config.py",
             "tests/unit/test_x.py", "tests/deploy/fake_cloud.py", "bench/bench_x.py", "devstack/signing.py",
             ".local/pg/data.txt", ".venv/bin/python", ".venv-3.12/lib/x.py",
             "shared/__pycache__/config.cpython-312.pyc", "infra/provision.sh", "deploy.sh",
             "docs/DEPLOY.md", "README.md", ".git/HEAD", "prod.env",
             "requirements.in", "requirements-dev.in", "requirements-dev.txt", "scripts/lock.sh"]
    for name in files:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x\n")
    shutil.copy(Path(__file__).resolve().parents[2] / ".gcloudignore", tree / ".gcloudignore")
    config = tmp_path / "gcloud-config"
    config.mkdir()

    listed = subprocess.run(
        ["unshare", "-n", "gcloud", "meta", "list-files-for-upload", str(tree)],
        env=offline_env(config),
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split()

    assert sorted(listed) == ["functions/webhook_intake.py", "main.py", "requirements.txt",
                              "shared/config.py"]
