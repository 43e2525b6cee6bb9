"""What deploy.sh --dry-run and infra/provision.sh --dry-run print."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy.helpers import (
    DEPLOY,
    ENTRY_POINTS,
    OPERATOR_SECRETS,
    PROJECT,
    PROVISION,
    REGION,
    TARGET,
    commands_in,
    dry_run,
    flag,
)

SA = "{}@" + PROJECT + ".iam.gserviceaccount.com"
EXPECTED = {
    # name: (trigger flag, auth flag, runtime service account)
    "webhook-intake": ("--trigger-http", "--allow-unauthenticated", SA.format("vs-intake")),
    "timer-expiry": ("--trigger-http", "--no-allow-unauthenticated", SA.format("vs-timers")),
    "sweep": ("--trigger-http", "--no-allow-unauthenticated", SA.format("vs-sweeper")),
    "send-customer-email": (
        "--trigger-topic=customer-emails",
        "--no-allow-unauthenticated",
        SA.format("vs-email"),
    ),
    "record-analytics": (
        "--trigger-topic=verification-events",
        "--no-allow-unauthenticated",
        SA.format("vs-analytics"),
    ),
    "request-refund": (
        "--trigger-topic=order-actions",
        "--no-allow-unauthenticated",
        SA.format("vs-refund"),
    ),
    "operator-console": ("--trigger-http", "--no-allow-unauthenticated", SA.format("vs-console")),
}


@pytest.fixture(scope="module")
def deploy_dry(tmp_path_factory):
    """deploy.sh --dry-run with the defaults."""
    run = dry_run(DEPLOY, *TARGET, root=tmp_path_factory.mktemp("deploy-dry"))
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def infra_dry(tmp_path_factory):
    """infra/provision.sh --dry-run with the defaults."""
    run = dry_run(PROVISION, *TARGET, root=tmp_path_factory.mktemp("infra-dry"))
    assert run.returncode == 0, run.stderr
    return run


def deploys(commands: list[list[str]]) -> list[list[str]]:
    return [c for c in commands if c[:3] == ["gcloud", "functions", "deploy"]]


def env_vars(argv: list[str]) -> dict[str, str]:
    value = flag(argv, "set-env-vars")
    assert value is not None and value.startswith("^|^"), value
    return dict(item.split("=", 1) for item in value[3:].split("|"))


def secret_refs(argv: list[str]) -> dict[str, str]:
    value = flag(argv, "set-secrets") or ""
    return dict(item.split("=", 1) for item in value.split(",") if item)


def test_every_function_is_deployed_once_with_its_entry_point_trigger_auth_and_identity(deploy_dry):
    run = deploy_dry

    found = {c[3]: c for c in deploys(commands_in(run.stdout))}
    assert len(deploys(commands_in(run.stdout))) == len(EXPECTED)
    assert sorted(found) == sorted(EXPECTED)
    for name, (trigger, auth, account) in EXPECTED.items():
        argv = found[name]
        assert flag(argv, "entry-point") == ENTRY_POINTS[name]
        assert trigger in argv, name
        assert auth in argv, name
        assert flag(argv, "service-account") == account
        assert "--gen2" in argv and flag(argv, "runtime") == "python312"
        assert flag(argv, "source") == "."
        assert flag(argv, "region") == REGION and flag(argv, "project") == PROJECT
        assert flag(argv, "memory") and flag(argv, "timeout") and flag(argv, "max-instances")
        other_auth = ({"--allow-unauthenticated", "--no-allow-unauthenticated"} - {auth}).pop()
        assert other_auth not in argv
        if trigger.startswith("--trigger-topic"):
            assert "--retry" in argv
            assert flag(argv, "trigger-service-account") == SA.format("vs-events-invoker")
        else:
            assert "--retry" not in argv


# Each function's secrets: tests/deploy/test_function_table.py.


def test_every_function_gets_the_timer_url_and_the_cloud_backends(tmp_path):
    run = dry_run(DEPLOY, *TARGET, env={"EMAIL_FROM": "verify@store.example"}, root=tmp_path)

    for argv in deploys(commands_in(run.stdout)):
        env = env_vars(argv)
        assert env["TIMER_URL"] == "https://timer-expiry-dry-run.a.run.app"
        assert env["TASKS_BACKEND"] == "cloud" and env["EVENTS_BACKEND"] == "pubsub"
        assert env["GOOGLE_CLOUD_PROJECT"] == PROJECT
        assert env["INSTANCE_CONNECTION_NAME"] == f"{PROJECT}:{REGION}:verification-db"
        assert env["TASKS_SERVICE_ACCOUNT"] == SA.format("vs-tasks-invoker")
        assert env["TASKS_QUEUE"] == "verification-timers" and env["TASKS_LOCATION"] == REGION
        # The start-up check demands SENDGRID_API_KEY wherever
        # EMAIL_BACKEND=sendgrid, so only the email function may say so.
        if argv[3] == "send-customer-email":
            assert env["EMAIL_BACKEND"] == "sendgrid"
            assert env["EMAIL_FROM"] == "verify@store.example"
        else:
            assert "EMAIL_BACKEND" not in env


def test_dry_run_executes_nothing(tmp_path):
    for script in (PROVISION, DEPLOY):
        run = dry_run(script, *TARGET, root=tmp_path)

        assert run.returncode == 0, run.stderr
        assert run.calls == []
        assert len(commands_in(run.stdout)) > 20


def test_no_secret_value_appears_in_dry_run_output(tmp_path):
    # Even with every secret in the operator's environment, under the names
    # the functions read them by, none may reach the printed commands.
    leaky_env = {env: OPERATOR_SECRETS[env.lower().replace("_", "-")] for env in (
        "ORDER_WEBHOOK_SECRET", "LIGHTSPEED_CLIENT_SECRET", "VERIFF_API_KEY",
        "VERIFF_SHARED_SECRET", "SENDGRID_API_KEY", "REFUND_API_TOKEN")}
    leaky_env["DB_PASSWORD"] = "leak-canary-db-password-e9"

    for script in (PROVISION, DEPLOY):
        for extra in ({}, {"REFUND_BACKEND": "http", "DB_IAM_AUTH": "false"}):
            run = dry_run(script, *TARGET, env={**leaky_env, **extra}, root=tmp_path)

            assert run.returncode == 0, run.stderr
            printed = run.stdout + run.stderr
            assert "leak-canary" not in printed
            assert "whsec_" not in printed


def test_no_database_password_is_ever_an_argument(infra_dry, tmp_path):
    password_mode = dry_run(PROVISION, *TARGET, env={"DB_IAM_AUTH": "false"}, root=tmp_path)
    assert password_mode.returncode == 0, password_mode.stderr

    for run in (infra_dry, password_mode):
        assert not [w for c in commands_in(run.stdout) for w in c if w.startswith("--password")]
    set_password = [c for c in commands_in(password_mode.stdout) if c[:4] == ["gcloud", "sql", "users", "set-password"]]
    assert len(set_password) == 1 and "--prompt-for-password" in set_password[0]
    assert not [c for c in commands_in(infra_dry.stdout) if c[:4] == ["gcloud", "sql", "users", "set-password"]]


def test_the_schema_step_runs_as_the_migrator_before_any_function_is_deployed(deploy_dry):
    lines = deploy_dry.stdout.splitlines()
    upgrade = [i for i, line in enumerate(lines) if " -m shared.db.upgrade" in line and not line.startswith("#")]
    first_deploy = next(i for i, line in enumerate(lines) if line.startswith("gcloud functions deploy"))

    assert len(upgrade) == 1 and upgrade[0] < first_deploy
    words = lines[upgrade[0]].split()
    members = {words[i + 1].split("=", 1)[0]: words[i + 1].split("=", 1)[1]
               for i, w in enumerate(words) if w == "--member"}
    # Each function's IAM database user: its service account without ".gserviceaccount.com".
    assert members == {fn: sa.removesuffix(".gserviceaccount.com") for fn, (_, _, sa) in EXPECTED.items()}
    token = next(line for line in lines if line.startswith("gcloud auth print-access-token"))
    assert f"--impersonate-service-account=vs-migrator@{PROJECT}.iam.gserviceaccount.com" in token


def test_one_named_function_deploys_alone(tmp_path):
    for name in ("send_customer_email", "send-customer-email"):
        run = dry_run(DEPLOY, *TARGET, name, root=tmp_path)

        assert run.returncode == 0, run.stderr
        assert [c[3] for c in deploys(commands_in(run.stdout))] == ["send-customer-email"]
        # It still reads timer-expiry's URL, which it needs as TIMER_URL.
        assert any(c[:4] == ["gcloud", "functions", "describe", "timer-expiry"]
                   for c in commands_in(run.stdout))


def test_unknown_function_is_refused(tmp_path):
    run = dry_run(DEPLOY, *TARGET, "send_emails", root=tmp_path)

    assert run.returncode != 0
    assert "unknown function send_emails" in run.stderr
    assert deploys(commands_in(run.stdout)) == []


def test_missing_project_is_refused(tmp_path):
    for script in (PROVISION, DEPLOY):
        run = dry_run(script, "--region", REGION, root=tmp_path)

        assert run.returncode != 0
        assert "no project" in run.stderr


def connection_budget(deploy_output: str) -> int:
    total = 0
    for argv in deploys(commands_in(deploy_output)):
        env = env_vars(argv)
        total += int(flag(argv, "max-instances")) * (
            int(env["DB_POOL_SIZE"]) + int(env["DB_MAX_OVERFLOW"])
        )
    return total


def test_pool_arithmetic_fits_the_instance_with_headroom(infra_dry, deploy_dry):
    create = next(c for c in commands_in(infra_dry.stdout) if c[:4] == ["gcloud", "sql", "instances", "create"])
    max_connections = int(re.search(r"max_connections=(\d+)", flag(create, "database-flags")).group(1))
    total = connection_budget(deploy_dry.stdout)
    assert total + 20 <= max_connections, (total, max_connections)


def test_the_intake_serves_requests_concurrently_with_a_connection_for_each(deploy_dry):
    found = {c[3]: c for c in deploys(commands_in(deploy_dry.stdout))}

    intake = found["webhook-intake"]
    env = env_vars(intake)
    concurrency = int(flag(intake, "concurrency"))
    assert concurrency > 1
    assert flag(intake, "cpu") == "1"  # Cloud Run needs a whole CPU for concurrency > 1
    assert env["THREADS"] == str(concurrency)  # gunicorn threads in functions-framework
    assert int(env["DB_POOL_SIZE"]) + int(env["DB_MAX_OVERFLOW"]) >= concurrency
    assert int(flag(intake, "timeout").rstrip("s")) <= 10
    for name, argv in found.items():
        if name != "webhook-intake":
            assert flag(argv, "concurrency") == "1" and env_vars(argv)["THREADS"] == "1", name
            assert flag(argv, "cpu") is None, name


def test_a_function_whose_requests_could_wait_for_a_connection_is_refused(tmp_path):
    run = dry_run(DEPLOY, *TARGET, env={"WEBHOOK_INTAKE_DB_MAX_OVERFLOW": "0"}, root=tmp_path)

    assert run.returncode != 0
    assert "webhook-intake serves 8 requests at once but its pool holds 4 connections" in run.stderr
    assert deploys(commands_in(run.stdout)) == []


def test_concurrency_without_a_cpu_is_refused(tmp_path):
    run = dry_run(DEPLOY, *TARGET, env={"SWEEP_CONCURRENCY": "2", "SWEEP_DB_POOL_SIZE": "2"}, root=tmp_path)

    assert run.returncode != 0
    assert "needs at least one CPU: set SWEEP_CPU" in run.stderr


def test_a_deploy_that_could_exhaust_the_database_is_refused(tmp_path):
    run = dry_run(DEPLOY, *TARGET, env={"WEBHOOK_INTAKE_MAX_INSTANCES": "40"}, root=tmp_path)

    assert run.returncode != 0
    assert "connections but only 80 fit" in run.stderr
    assert deploys(commands_in(run.stdout)) == []


def test_the_queue_has_the_required_rates_and_retries(infra_dry, deploy_dry):
    create = next(c for c in commands_in(infra_dry.stdout) if c[:4] == ["gcloud", "tasks", "queues", "create"])
    assert create[4] == "verification-timers"
    assert flag(create, "location") == REGION
    assert flag(create, "max-dispatches-per-second") == "10"
    assert flag(create, "max-attempts") == "5"
    assert flag(create, "max-retry-duration") == "3600s"
    assert flag(create, "min-backoff") == "10s"
    assert flag(create, "max-backoff") == "300s"
    assert flag(create, "max-doublings") == "5"
    # No more dispatches in flight than timer-expiry instances to take them.
    timer = next(c for c in deploys(commands_in(deploy_dry.stdout)) if c[3] == "timer-expiry")
    assert flag(create, "max-concurrent-dispatches") == flag(timer, "max-instances")


def test_topics_each_have_a_dead_letter_topic_with_a_subscription(infra_dry):
    run = infra_dry
    commands = commands_in(run.stdout)

    created_topics = {c[4] for c in commands if c[:4] == ["gcloud", "pubsub", "topics", "create"]}
    subs = {c[4]: c for c in commands if c[:4] == ["gcloud", "pubsub", "subscriptions", "create"]}
    for topic in ("verification-events", "customer-emails", "order-actions"):
        assert {topic, f"{topic}-dead-letter"} <= created_topics
        sub = subs[f"{topic}-dead-letter-sub"]
        assert flag(sub, "topic") == f"{topic}-dead-letter"
        assert flag(sub, "expiration-period") == "never"
        publisher = [c for c in commands if c[:4] == ["gcloud", "pubsub", "topics", "add-iam-policy-binding"]
                     and c[4] == f"{topic}-dead-letter"]
        assert len(publisher) == 1
        assert flag(publisher[0], "role") == "roles/pubsub.publisher"
        assert "@gcp-sa-pubsub.iam.gserviceaccount.com" in flag(publisher[0], "member")


def test_bigquery_subscription_writes_message_metadata(infra_dry):
    run = infra_dry
    commands = commands_in(run.stdout)

    sub = next(c for c in commands if c[:4] == ["gcloud", "pubsub", "subscriptions", "create"]
               and flag(c, "bigquery-table"))
    assert flag(sub, "topic") == "verification-events"
    assert "--write-metadata" in sub
    assert flag(sub, "bigquery-table") == f"{PROJECT}:verification_analytics.verification_events"
    assert flag(sub, "dead-letter-topic") == "verification-events-dead-letter"
    table = next(c for c in commands if c[0] == "bq" and "mk" in c and "--table" in c)
    schema = json.loads(Path(flag(table, "schema")).read_text())
    assert {f["name"]: f["type"] for f in schema} == {
        "subscription_name": "STRING",
        "message_id": "STRING",
        "publish_time": "TIMESTAMP",
        "data": "STRING",
        "attributes": "JSON",
    }


def test_sweep_is_scheduled_every_minute_with_an_oidc_token(deploy_dry):
    run = deploy_dry

    jobs = [c for c in commands_in(run.stdout) if c[:3] == ["gcloud", "scheduler", "jobs"]
            and c[3] in ("create", "update")]
    assert jobs
    for job in jobs:
        assert flag(job, "schedule") == "* * * * *"
        assert flag(job, "uri") == "https://sweep-dry-run.a.run.app"
        assert flag(job, "oidc-service-account-email") == SA.format("vs-scheduler")
        assert flag(job, "oidc-token-audience") == flag(job, "uri")


def test_subscriber_subscriptions_get_dead_letter_and_retry_policies(deploy_dry):
    run = deploy_dry

    updates = [c for c in commands_in(run.stdout) if c[:4] == ["gcloud", "pubsub", "subscriptions", "update"]]
    assert sorted(flag(c, "dead-letter-topic") for c in updates) == [
        "customer-emails-dead-letter",
        "order-actions-dead-letter",
        "verification-events-dead-letter",
    ]
    for update in updates:
        assert flag(update, "max-delivery-attempts") == "10"
        assert flag(update, "min-retry-delay") == "10s"
        assert flag(update, "max-retry-delay") == "600s"


def test_dry_run_prints_the_webhook_urls(deploy_dry):
    run = deploy_dry

    for path in ("/webhooks/orders", "/webhooks/lightspeed", "/webhooks/veriff"):
        assert f"https://webhook-intake-dry-run.a.run.app{path}" in run.stdout


def test_broad_console_access_is_refused_in_a_dry_run_too(tmp_path):
    """The issue's reproduction: allAuthenticatedUsers and domain:gmail.com printed a binding."""
    run = dry_run(DEPLOY, *TARGET, "operator_console", root=tmp_path,
                  env={"CONSOLE_ACCESS": "allAuthenticatedUsers, domain:gmail.com"})
    assert run.returncode != 0
    assert "CONSOLE_ACCESS names allAuthenticatedUsers, which lets anyone in" in run.stderr
    assert "allAuthenticatedUsers" not in run.stdout and run.calls == []


def test_a_dry_run_shows_the_iap_policy_being_made_equal_to_the_list(tmp_path):
    run = dry_run(DEPLOY, *TARGET, "operator_console", root=tmp_path,
                  env={"CONSOLE_ACCESS": "group:ops@store.example", "CONSOLE_OPERATORS": "alice@store.example"})
    assert run.returncode == 0, run.stderr
    commands = commands_in(run.stdout)
    assert any(c[:5] == ["gcloud", "beta", "iap", "web", "get-iam-policy"] for c in commands)
    assert any(c[:5] == ["gcloud", "beta", "iap", "web", "remove-iam-policy-binding"] for c in commands)
    assert "remove every member not in CONSOLE_ACCESS (group:ops@store.example)" in run.stdout
