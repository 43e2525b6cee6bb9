"""deploy.sh against a fake gcloud on a provisioned fake project: the order
of the deploys, who may invoke what, the subscriptions' policies, the
Scheduler job and the URLs it prints."""

from __future__ import annotations

import pytest

from tests.deploy.helpers import (
    DEPLOY,
    OPERATOR_SECRETS,
    PROJECT,
    PROVISION,
    READ_VERBS,
    REGION,
    TARGET,
    flag,
    verb_of,
)

SA = "serviceAccount:{}@" + PROJECT + ".iam.gserviceaccount.com"
PUBSUB_AGENT = "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
TIMER_URI = "https://timer-expiry-f4k3h4sh-uc.a.run.app"
INTAKE_URI = "https://webhook-intake-f4k3h4sh-uc.a.run.app"
PROJECT_NUMBER = "123456789012"


def deployed(calls):
    return [argv for argv in calls if argv[1:3] == ["functions", "deploy"]]


def env_of(argv):
    return dict(item.split("=", 1) for item in flag(argv, "set-env-vars")[3:].split("|"))


def invokers(state, fn):
    return {tuple(b) for b in state["policies"].get(f"function:{fn}:{REGION}", [])}


def test_a_secret_without_a_value_stops_the_deploy_before_anything_is_deployed(provisioned_template, cloud):
    template, _ = provisioned_template
    cloud.state_path.write_text(template.state_path.read_text())
    cloud.set_operator_secrets({k: v for k, v in OPERATOR_SECRETS.items() if k != "veriff-api-key"})

    run = cloud.run(DEPLOY, *TARGET)

    assert run.returncode != 0
    assert "secret veriff-api-key has no value" in run.stderr
    assert deployed(run.calls) == []


def test_a_secret_that_cannot_be_listed_is_not_called_empty(provisioned_template, cloud):
    """A failed listing (the secret was deleted, or this account may not read it) was reported
    as "has no value", and the command it suggested fails the same way."""
    import json

    template, _ = provisioned_template
    state = json.loads(template.state_path.read_text())
    state["resources"] = {k: v for k, v in state["resources"].items() if k != "secret:veriff-api-key:"}
    cloud.state_path.write_text(json.dumps(state))
    cloud.set_operator_secrets({k: v for k, v in OPERATOR_SECRETS.items() if k != "veriff-api-key"})

    run = cloud.run(DEPLOY, *TARGET)

    assert run.returncode != 0
    assert "could not list the versions of secret veriff-api-key" in run.stderr
    assert "has no value" not in run.stderr
    assert deployed(run.calls) == []


def test_first_deploy_wires_everything(provisioned):
    run = provisioned.run(DEPLOY, *TARGET)

    assert run.returncode == 0, run.stderr
    names = [argv[3] for argv in deployed(run.calls)]
    # timer-expiry goes first, twice: its own URL is only known once it exists.
    assert names == ["timer-expiry", "timer-expiry", "webhook-intake", "sweep",
                     "send-customer-email", "record-analytics", "request-refund", "operator-console"]
    first, second = deployed(run.calls)[:2]
    assert env_of(first)["TIMER_URL"] == f"https://{REGION}-{PROJECT}.cloudfunctions.net/timer-expiry"
    for argv in deployed(run.calls)[1:]:
        assert env_of(argv)["TIMER_URL"] == TIMER_URI, argv[3]

    state = provisioned.state()
    assert invokers(state, "timer-expiry") == {("roles/run.invoker", SA.format("vs-tasks-invoker"))}
    assert invokers(state, "sweep") == {("roles/run.invoker", SA.format("vs-scheduler"))}
    assert invokers(state, "webhook-intake") == {("roles/run.invoker", "allUsers")}
    for fn in ("send-customer-email", "record-analytics", "request-refund"):
        assert invokers(state, fn) == {("roles/run.invoker", SA.format("vs-events-invoker"))}, fn

    topics = {"send-customer-email": "customer-emails", "record-analytics": "verification-events",
              "request-refund": "order-actions"}
    for fn, topic in topics.items():
        sub = state["resources"][f"subscription:eventarc-{REGION}-{fn}-424242-sub-777:"]
        assert sub["topic"] == topic
        assert sub["dead-letter-topic"] == f"{topic}-dead-letter"
        assert sub["max-delivery-attempts"] == "10"
        assert (sub["min-retry-delay"], sub["max-retry-delay"]) == ("10s", "600s")
        policy = state["policies"][f"subscription:eventarc-{REGION}-{fn}-424242-sub-777:"]
        assert policy == [["roles/pubsub.subscriber", PUBSUB_AGENT]]

    job = state["resources"][f"job:verification-sweep:{REGION}"]
    assert job["uri"] == "https://sweep-f4k3h4sh-uc.a.run.app"
    assert job["oidc-token-audience"] == job["uri"]
    assert job["oidc-service-account-email"] == f"vs-scheduler@{PROJECT}.iam.gserviceaccount.com"
    assert job["schedule"] == "* * * * *"

    for path in ("/webhooks/orders", "/webhooks/lightspeed", "/webhooks/veriff"):
        assert f"{INTAKE_URI}{path}" in run.stdout


def test_no_secret_value_is_ever_on_a_deploy_command_line(provisioned):
    run = provisioned.run(DEPLOY, *TARGET)

    assert run.returncode == 0, run.stderr
    words = " ".join(" ".join(argv) for argv in run.calls)
    db_passwords = provisioned.state()["secret_versions"].get("db-password", [])  # none with IAM auth
    for value in [*OPERATOR_SECRETS.values(), *db_passwords]:
        assert value not in words
        assert value not in run.stdout + run.stderr


def test_redeploy_deploys_each_function_once_and_updates_the_job(provisioned):
    assert provisioned.run(DEPLOY, *TARGET).returncode == 0

    again = provisioned.run(DEPLOY, *TARGET)

    assert again.returncode == 0, again.stderr
    assert [argv[3] for argv in deployed(again.calls)] == [
        "timer-expiry", "webhook-intake", "sweep",
        "send-customer-email", "record-analytics", "request-refund", "operator-console"]
    assert env_of(deployed(again.calls)[0])["TIMER_URL"] == TIMER_URI
    writes = {tuple(argv[1:4]) for argv in again.calls if verb_of(argv) not in READ_VERBS}
    assert ("scheduler", "jobs", "update") in writes
    assert ("scheduler", "jobs", "create") not in writes
    # The bindings exist already: they are read, not added again.
    assert not any("add-iam-policy-binding" in argv for argv in again.calls)


def test_one_named_function_is_deployed_and_wired_alone(provisioned):
    assert provisioned.run(DEPLOY, *TARGET).returncode == 0

    run = provisioned.run(DEPLOY, *TARGET, "record_analytics")

    assert run.returncode == 0, run.stderr
    assert [argv[3] for argv in deployed(run.calls)] == ["record-analytics"]
    updates = [argv for argv in run.calls if argv[1:4] == ["pubsub", "subscriptions", "update"]]
    assert [flag(argv, "dead-letter-topic") for argv in updates] == ["verification-events-dead-letter"]
    assert f"{INTAKE_URI}/webhooks/orders" in run.stdout


def test_a_function_other_than_timer_expiry_needs_timer_expiry_deployed_first(provisioned):
    run = provisioned.run(DEPLOY, *TARGET, "webhook_intake")

    assert run.returncode != 0
    assert "timer-expiry is not deployed yet" in run.stderr
    assert deployed(run.calls) == []


def test_a_source_tree_without_the_entry_point_is_not_deployed(provisioned):
    main_py = provisioned.source_dir / "main.py"
    main_py.write_text(main_py.read_text().replace("request_refund", "something_else"))

    run = provisioned.run(DEPLOY, *TARGET)

    assert run.returncode != 0
    assert "main.py does not mention the entry point request_refund" in run.stderr
    assert deployed(run.calls) == []


def test_http_refunds_give_the_refund_function_its_url_and_token(provisioned):
    settings = {"REFUND_BACKEND": "http", "REFUND_API_URL": "https://shop.example/refunds"}
    # Without the grant step 1 makes for this setting, the deploy would fail.
    assert provisioned.run(DEPLOY, *TARGET, env=settings).returncode != 0
    assert provisioned.run(PROVISION, *TARGET, env=settings).returncode == 0

    run = provisioned.run(DEPLOY, *TARGET, env=settings)

    assert run.returncode == 0, run.stderr
    refund = next(argv for argv in deployed(run.calls) if argv[3] == "request-refund")
    assert env_of(refund)["REFUND_BACKEND"] == "http"
    assert env_of(refund)["REFUND_API_URL"] == "https://shop.example/refunds"
    assert "REFUND_API_TOKEN=refund-api-token:latest" in flag(refund, "set-secrets")
    others = [argv for argv in deployed(run.calls) if argv[3] != "request-refund"]
    assert not any("REFUND" in (flag(argv, "set-secrets") or "") for argv in others)


def test_the_console_is_private_behind_iap_and_open_to_the_named_staff(provisioned):
    staff = "group:ops@store.example,user:alice@store.example"
    assert provisioned.run(DEPLOY, *TARGET).returncode == 0

    run = provisioned.run(DEPLOY, *TARGET, "operator_console", env={"CONSOLE_ACCESS": staff})

    assert run.returncode == 0, run.stderr
    [console] = deployed(run.calls)
    assert "--no-allow-unauthenticated" in console and "--allow-unauthenticated" not in console
    assert env_of(console)["CONSOLE_AUTH"] == "iap"
    assert env_of(console)["IAP_AUDIENCE"] == f"/projects/{PROJECT_NUMBER}/locations/{REGION}/services/operator-console"
    state = provisioned.state()
    assert state["resources"][f"function:operator-console:{REGION}"]["iap"] is True
    iap_agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-iap.iam.gserviceaccount.com"
    assert invokers(state, "operator-console") == {("roles/run.invoker", iap_agent)}
    assert {tuple(b) for b in state["policies"][f"iap:operator-console:{REGION}"]} == {
        ("roles/iap.httpsResourceAccessor", "group:ops@store.example"),
        ("roles/iap.httpsResourceAccessor", "user:alice@store.example")}
    assert "operator console (staff, through IAP): https://operator-console-" in run.stderr


def test_console_access_members_may_be_written_with_spaces_after_commas(provisioned):
    assert provisioned.run(DEPLOY, *TARGET).returncode == 0

    run = provisioned.run(DEPLOY, *TARGET, "operator_console",
                          env={"CONSOLE_ACCESS": " group:ops@store.example,  user:alice@store.example ,"})

    assert run.returncode == 0, run.stderr
    assert {tuple(b) for b in provisioned.state()["policies"][f"iap:operator-console:{REGION}"]} == {
        ("roles/iap.httpsResourceAccessor", "group:ops@store.example"),
        ("roles/iap.httpsResourceAccessor", "user:alice@store.example")}


def test_without_console_access_nobody_is_let_through(provisioned):
    run = provisioned.run(DEPLOY, *TARGET)

    assert run.returncode == 0, run.stderr
    assert "CONSOLE_ACCESS is empty" in run.stderr
    assert not provisioned.state()["policies"].get(f"iap:operator-console:{REGION}")


def test_the_iap_policy_is_made_equal_to_console_access_removing_a_stray_member(provisioned):
    """Someone taken off CONSOLE_ACCESS (or added by hand) is removed on the next deploy, and
    the deploy says so; the members on the list stay."""
    first = provisioned.run(DEPLOY, *TARGET, env={"CONSOLE_ACCESS": "group:ops@store.example,user:bob@store.example"})
    assert first.returncode == 0, first.stderr
    added = provisioned.gcloud("beta", "iap", "web", "add-iam-policy-binding", "--resource-type=cloud-run",
                               "--service=operator-console", f"--region={REGION}", f"--project={PROJECT}",
                               "--member=user:mallory@store.example", "--role=roles/iap.httpsResourceAccessor")
    assert added.returncode == 0, added.stderr

    run = provisioned.run(DEPLOY, *TARGET, "operator_console", env={"CONSOLE_ACCESS": "group:ops@store.example"})

    assert run.returncode == 0, run.stderr
    assert {tuple(b) for b in provisioned.state()["policies"][f"iap:operator-console:{REGION}"]} == {
        ("roles/iap.httpsResourceAccessor", "group:ops@store.example")}
    assert "gone roles/iap.httpsResourceAccessor for user:bob@store.example" in run.stderr
    assert "gone roles/iap.httpsResourceAccessor for user:mallory@store.example" in run.stderr
    assert "1 member(s) of CONSOLE_ACCESS, 2 removed" in run.stderr
    removals = [argv for argv in run.calls if "remove-iam-policy-binding" in argv]
    assert len(removals) == 2


@pytest.mark.parametrize("access", ["allUsers", "allAuthenticatedUsers", "domain:gmail.com", "domain:Outlook.com",
                                    "user:alice@store.example, domain:yahoo.com"])
def test_broad_console_access_is_refused_before_anything_is_deployed(provisioned, access):
    run = provisioned.run(DEPLOY, *TARGET, "operator_console", env={"CONSOLE_ACCESS": access})

    assert run.returncode != 0
    assert "lets anyone in" in run.stderr and "--allow-public-console" in run.stderr
    assert not [argv for argv in run.calls if argv[1:3] == ["functions", "deploy"]]
    assert not provisioned.state()["policies"].get(f"iap:operator-console:{REGION}")


def test_broad_console_access_is_bound_only_with_the_explicit_flag(provisioned):
    run = provisioned.run(DEPLOY, *TARGET, "--allow-public-console", env={"CONSOLE_ACCESS": "domain:gmail.com"})

    assert run.returncode == 0, run.stderr
    assert "warning: CONSOLE_ACCESS names domain:gmail.com" in run.stderr
    assert {tuple(b) for b in provisioned.state()["policies"][f"iap:operator-console:{REGION}"]} == {
        ("roles/iap.httpsResourceAccessor", "domain:gmail.com")}


def test_the_console_gets_its_own_lists_and_is_not_deployed_without_them(provisioned):
    assert provisioned.run(DEPLOY, *TARGET, "timer_expiry").returncode == 0
    run = provisioned.run(DEPLOY, *TARGET, "operator_console",
                          env={"CONSOLE_OPERATORS": "alice@store.example,domain:store.example",
                               "CONSOLE_VIEWERS": "audit@store.example"})
    assert run.returncode == 0, run.stderr
    [console] = deployed(run.calls)
    assert env_of(console)["CONSOLE_OPERATORS"] == "alice@store.example,domain:store.example"
    assert env_of(console)["CONSOLE_VIEWERS"] == "audit@store.example"

    refused = provisioned.run(DEPLOY, *TARGET, "operator_console", env={"CONSOLE_OPERATORS": ""})
    assert refused.returncode != 0 and "CONSOLE_OPERATORS (or CONSOLE_VIEWERS) is not set" in refused.stderr
    assert deployed(refused.calls) == []


def test_the_schema_step_runs_once_as_the_migrator_before_the_first_function(provisioned):
    run = provisioned.run(DEPLOY, *TARGET)

    assert run.returncode == 0, run.stderr
    [upgrade] = provisioned.upgrades()
    first_deploy = next(i for i, argv in enumerate(provisioned.calls()) if argv[1:3] == ["functions", "deploy"])
    assert upgrade["gcloud_calls_before"] <= first_deploy
    assert upgrade["argv"][::2] == ["--member"] * 7
    assert dict(m.split("=", 1) for m in upgrade["argv"][1::2]) == {
        fn: f"{account}@{PROJECT}.iam" for fn, account in (
            ("timer-expiry", "vs-timers"), ("webhook-intake", "vs-intake"), ("sweep", "vs-sweeper"),
            ("send-customer-email", "vs-email"), ("record-analytics", "vs-analytics"),
            ("request-refund", "vs-refund"), ("operator-console", "vs-console"))}
    assert upgrade["env"] == {
        "INSTANCE_CONNECTION_NAME": f"{PROJECT}:{REGION}:verification-db",
        "DB_NAME": "verification",
        "DB_USER": f"vs-migrator@{PROJECT}.iam",
        "DB_IAM_AUTH": "false",  # the token is the password
        "DATABASE_URL": None,
        "DB_PASSWORD_IS_TOKEN": True,
    }
    assert not any("fake-token-for-" in word for argv in provisioned.calls() for word in argv)
    assert "fake-token-for-" not in run.stdout + run.stderr


def test_a_failed_schema_step_deploys_nothing(provisioned):
    run = provisioned.run(DEPLOY, *TARGET, env={"FAKE_UPGRADE_EXIT": "1"})

    assert run.returncode != 0
    assert "the schema step failed; no function was deployed" in run.stderr
    assert deployed(run.calls) == []


def test_the_intake_keeps_its_cpu_between_requests_for_its_relay_thread(provisioned):
    run = provisioned.run(DEPLOY, *TARGET)

    assert run.returncode == 0, run.stderr
    resources = provisioned.state()["resources"]
    assert resources[f"function:webhook-intake:{REGION}"]["cpu_throttling"] is False
    others = [key for key in resources if key.startswith("function:") and "webhook-intake" not in key]
    assert others and all("cpu_throttling" not in resources[key] for key in others)
    # After each deploy of the intake (a deploy may write the service's settings anew).
    updates = [i for i, argv in enumerate(run.calls) if argv[1:4] == ["run", "services", "update"]]
    intake_deploy = next(i for i, argv in enumerate(run.calls)
                         if argv[1:3] == ["functions", "deploy"] and argv[3] == "webhook-intake")
    assert len(updates) == 1 and updates[0] > intake_deploy


def test_an_intake_that_relays_in_its_requests_keeps_request_based_billing(provisioned):
    run = provisioned.run(DEPLOY, *TARGET, env={"INTAKE_RELAY": "in_request"})

    assert run.returncode == 0, run.stderr
    intake = next(argv for argv in deployed(run.calls) if argv[3] == "webhook-intake")
    assert env_of(intake)["INTAKE_RELAY"] == "in_request"
    assert not [argv for argv in run.calls if argv[1:4] == ["run", "services", "update"]]
    assert "cpu_throttling" not in provisioned.state()["resources"][f"function:webhook-intake:{REGION}"]


@pytest.mark.parametrize("setting", [None, "true"])
def test_the_intake_gets_the_returning_customer_email_setting(provisioned, setting):
    run = provisioned.run(DEPLOY, *TARGET, env={"RETURNING_CUSTOMER_EMAIL": setting} if setting else {})

    assert run.returncode == 0, run.stderr
    intake = next(argv for argv in deployed(run.calls) if argv[3] == "webhook-intake")
    assert env_of(intake)["RETURNING_CUSTOMER_EMAIL"] == (setting or "false")  # off unless the settings say so
