"""infra/provision.sh against a fake gcloud that records every call: the
first run creates, a second run only reads, and the grants are the ones
each identity needs and no more."""

from __future__ import annotations

import json
from pathlib import Path

from tests.deploy.helpers import PROJECT, PROVISION, READ_VERBS, REGION, TARGET, flag, verb_of

SA = "serviceAccount:{}@" + PROJECT + ".iam.gserviceaccount.com"
PUBSUB_AGENT = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
RUNTIME = ["vs-intake", "vs-timers", "vs-sweeper", "vs-email", "vs-analytics", "vs-refund", "vs-console"]


def created(calls: list[list[str]]) -> set[str]:
    """'group resource' for each create/mk call."""
    out = set()
    for argv in calls:
        if argv[0] == "bq" and "mk" in argv:
            out.add("bq " + argv[-1])
        elif verb_of(argv) == "create":
            at = argv.index("create")
            out.add(" ".join(argv[1:at]) + " " + argv[at + 1])
    return out


MONITORING = Path(__file__).resolve().parents[2] / "infra" / "monitoring"


def monitoring_files() -> list[str]:
    return [str(path) for path in MONITORING.glob("*/*.json")]


def monitoring_updates(calls: list[list[str]]) -> list[str]:
    """The file each update of a log-based metric, alert policy or dashboard applied."""
    out = []
    for argv in calls:
        if verb_of(argv) == "update":
            assert argv[1:4] in (["logging", "metrics", "update"], ["alpha", "monitoring", "policies"],
                                 ["monitoring", "dashboards", "update"]), argv
            out.append(next(flag(argv, name) for name in ("config-from-file", "policy-from-file")
                            if flag(argv, name)))
    return out


def bindings(state: dict, kind: str, name: str, scope: str = "") -> set[tuple[str, str]]:
    return {tuple(b) for b in state["policies"].get(f"{kind}:{name}:{scope}", [])}


def test_first_run_creates_everything(provisioned_template):
    _, run = provisioned_template

    made = created(run.calls)
    for topic in ("verification-events", "customer-emails", "order-actions"):
        assert f"pubsub topics {topic}" in made
        assert f"pubsub topics {topic}-dead-letter" in made
        assert f"pubsub subscriptions {topic}-dead-letter-sub" in made
    for account in RUNTIME + ["vs-tasks-invoker", "vs-scheduler", "vs-events-invoker", "vs-builder",
                              "vs-migrator"]:
        assert f"iam service-accounts {account}" in made
    for secret in ("order-webhook-secret", "lightspeed-client-secret", "veriff-api-key",
                   "veriff-shared-secret", "sendgrid-api-key", "refund-api-token", "db-password"):
        assert f"secrets {secret}" in made
    assert {
        "tasks queues verification-timers",
        "sql instances verification-db",
        "sql databases verification",
        *(f"sql users {a}@{PROJECT}.iam" for a in RUNTIME + ["vs-migrator"]),
        "pubsub subscriptions verification-events-bigquery",
        f"bq {PROJECT}:verification_analytics",
        f"bq {PROJECT}:verification_analytics.verification_events",
    } <= made
    enable = [argv for argv in run.calls if argv[1:3] == ["services", "enable"]]
    assert len(enable) == 1 and "cloudfunctions.googleapis.com" in enable[0]


def test_second_run_only_reads_and_changes_nothing(provisioned_template, cloud):
    template, _ = provisioned_template
    cloud.state_path.write_text(template.state_path.read_text())
    before = json.loads(cloud.state_path.read_text())

    again = cloud.run(PROVISION, *TARGET)

    assert again.returncode == 0, again.stderr
    assert again.calls, "the second run made no calls at all"
    writes = [argv for argv in again.calls if verb_of(argv) not in READ_VERBS]
    # The monitoring files are applied again (an update to the same file changes nothing);
    # everything else is only read.
    assert sorted(monitoring_updates(writes)) == sorted(monitoring_files())
    assert all(verb_of(argv) == "update" for argv in writes), writes
    assert json.loads(cloud.state_path.read_text()) == before


def test_a_missing_resource_is_recreated_alone(provisioned_template, cloud):
    template, _ = provisioned_template
    state = json.loads(template.state_path.read_text())
    del state["resources"]["topic:order-actions-dead-letter:"]
    del state["policies"]["topic:order-actions-dead-letter:"]
    cloud.state_path.write_text(json.dumps(state))

    run = cloud.run(PROVISION, *TARGET)

    assert run.returncode == 0, run.stderr
    writes = [argv[1:5] for argv in run.calls if verb_of(argv) not in READ_VERBS | {"update"}]
    assert writes == [
        ["pubsub", "topics", "create", "order-actions-dead-letter"],
        ["pubsub", "topics", "add-iam-policy-binding", "order-actions-dead-letter"],
    ]


def test_each_identity_gets_exactly_its_grants(provisioned_template):
    template, _ = provisioned_template
    state = template.state()

    project = bindings(state, "project", PROJECT)
    assert project == {
        (role, SA.format(a))
        for a in RUNTIME + ["vs-migrator"]
        for role in ("roles/cloudsql.client", "roles/cloudsql.instanceUser")
    } | {("roles/cloudbuild.builds.builder", SA.format("vs-builder"))}
    readers = {
        "order-webhook-secret": {"vs-intake"},
        "lightspeed-client-secret": {"vs-intake"},
        "veriff-api-key": {"vs-intake", "vs-email"},
        "veriff-shared-secret": {"vs-intake"},  # only the intake checks signatures
        "sendgrid-api-key": {"vs-email"},
        "refund-api-token": set(),
        "db-password": set(),  # IAM database authentication by default
        "console-secret": {"vs-console"},
        "customer-key-secret": {"vs-intake", "vs-console"},
    }
    for secret, accounts in readers.items():
        assert bindings(state, "secret", secret) == {
            ("roles/secretmanager.secretAccessor", SA.format(a)) for a in accounts
        }, secret
    publishers = {
        "verification-events": {"vs-intake", "vs-timers", "vs-sweeper", "vs-email", "vs-refund", "vs-console"},
        "customer-emails": {"vs-intake", "vs-timers", "vs-sweeper", "vs-console"},
        "order-actions": {"vs-intake", "vs-timers", "vs-sweeper", "vs-console"},
    }
    for topic, accounts in publishers.items():
        assert bindings(state, "topic", topic) == {
            ("roles/pubsub.publisher", SA.format(a)) for a in accounts
        }, topic
        assert bindings(state, "topic", f"{topic}-dead-letter") == {
            ("roles/pubsub.publisher", PUBSUB_AGENT)
        }
    task_makers = {"vs-intake", "vs-timers", "vs-sweeper", "vs-console"}
    assert bindings(state, "queue", "verification-timers", REGION) == {
        (role, SA.format(a))
        for a in task_makers
        # viewer: each instance looks the queue up (GetQueue) before its first task
        for role in ("roles/cloudtasks.enqueuer", "roles/cloudtasks.taskDeleter", "roles/cloudtasks.viewer")
    }
    invoker = f"vs-tasks-invoker@{PROJECT}.iam.gserviceaccount.com"
    assert bindings(state, "sa", invoker) == {
        ("roles/iam.serviceAccountUser", SA.format(a)) for a in task_makers
    }
    events_invoker = f"vs-events-invoker@{PROJECT}.iam.gserviceaccount.com"
    assert bindings(state, "sa", events_invoker) == {
        ("roles/iam.serviceAccountTokenCreator", PUBSUB_AGENT)
    }
    table = state["resources"][f"bq:{PROJECT}:verification_analytics.verification_events:"]
    assert table["bindings"] == [["roles/bigquery.dataEditor", PUBSUB_AGENT]]


def test_sql_instance_allows_the_connections_the_pools_need(provisioned_template):
    template, run = provisioned_template

    create = next(argv for argv in run.calls if argv[1:4] == ["sql", "instances", "create"])
    # IAM authentication is always on: the migrator logs in with it.
    assert "--database-flags=max_connections=100,cloudsql.iam_authentication=on" in create
    assert "--connector-enforcement=REQUIRED" in create
    assert "connections: max_instances x (DB_POOL_SIZE + DB_MAX_OVERFLOW)" in run.stderr


def test_database_password_is_generated_into_secret_manager_and_never_shown(cloud):
    run = cloud.run(PROVISION, *TARGET, env={"DB_IAM_AUTH": "false"})

    assert run.returncode == 0, run.stderr
    versions = cloud.state()["secret_versions"]["db-password"]
    assert len(versions) == 1 and len(versions[0]) >= 32
    assert versions[0] not in run.stdout + run.stderr
    add = [argv for argv in run.calls if argv[1:4] == ["secrets", "versions", "add"]]
    assert [argv[4] for argv in add] == ["db-password"]
    assert not any(versions[0] in word for argv in run.calls for word in argv)
    # Set through standard input: the user has the secret's value as its password.
    user = cloud.state()["resources"]["dbuser:verification_app:verification-db"]
    assert user["password"] == versions[0]


def test_an_operator_set_database_password_is_used(cloud):
    # The operator created and filled db-password before the first run.
    assert cloud.gcloud("secrets", "create", "db-password", f"--project={PROJECT}").returncode == 0
    assert cloud.gcloud("secrets", "versions", "add", "db-password", "--data-file=-",
                        f"--project={PROJECT}", input="operator-chosen-password-123").returncode == 0

    run = cloud.run(PROVISION, *TARGET, env={"DB_IAM_AUTH": "false"})

    assert run.returncode == 0, run.stderr
    assert not any("operator-chosen-password-123" in word for argv in run.calls for word in argv)
    user = cloud.state()["resources"]["dbuser:verification_app:verification-db"]
    assert user["password"] == "operator-chosen-password-123"
    assert cloud.state()["secret_versions"]["db-password"] == ["operator-chosen-password-123"]
    assert "operator-chosen-password-123" not in run.stdout + run.stderr


def test_iam_database_auth_creates_one_database_user_per_runtime_identity(cloud):
    run = cloud.run(PROVISION, *TARGET)  # DB_IAM_AUTH=true is the default

    assert run.returncode == 0, run.stderr
    users = {argv[4] for argv in run.calls if argv[1:4] == ["sql", "users", "create"]}
    assert users == {f"{a}@{PROJECT}.iam" for a in RUNTIME + ["vs-migrator"]}
    create = next(argv for argv in run.calls if argv[1:4] == ["sql", "instances", "create"])
    assert "--database-flags=max_connections=100,cloudsql.iam_authentication=on" in create
    state = cloud.state()
    assert ("roles/cloudsql.instanceUser", SA.format("vs-analytics")) in bindings(state, "project", PROJECT)
    assert bindings(state, "secret", "db-password") == set()
    assert "db-password" not in state["secret_versions"]


def test_raw_events_expire_in_bigquery_after_the_retention(provisioned_template):
    _, run = provisioned_template
    [table] = [argv for argv in run.calls if argv[0] == "bq" and "mk" in argv and "--table" in argv]
    assert "--time_partitioning_expiration=7776000" in table  # 90 days, BQ_PARTITION_EXPIRATION_DAYS
