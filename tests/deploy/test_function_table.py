"""infra/config.sh (what deploy.sh and provision.sh do) against the one table
of functions, shared/functions_table.py: entry points, triggers, exposure,
and each function's secrets, as `--set-secrets` and as Secret Manager access."""

from __future__ import annotations

import pytest

from shared.functions_table import BY_NAME, DEPLOYMENT_DEFAULTS, FUNCTIONS, stores_shell
from shared.functions_table import STORE_SETTINGS as TABLE_STORE_SETTINGS
from tests.deploy.helpers import DEPLOY, PROJECT, PROVISION, TARGET, commands_in, dry_run, flag

# Each deployment setting that changes which secrets are read, away from
# its default, one at a time and all together.
VARIANTS = [
    {},
    {"DB_IAM_AUTH": "false"},
    {"EMAIL_BACKEND": "smtp"},
    {"REFUND_BACKEND": "http", "REFUND_API_URL": "https://refunds.example.com/api"},
    {"LIGHTSPEED_ENABLED": "false"},
    {"SHOPIFY_ENABLED": "true", "SHOPIFY_SHOP_DOMAIN": "acme.myshopify.com"},
    {"DB_IAM_AUTH": "false", "EMAIL_BACKEND": "smtp", "REFUND_BACKEND": "http",
     "REFUND_API_URL": "https://refunds.example.com/api", "LIGHTSPEED_ENABLED": "false",
     "SHOPIFY_ENABLED": "true", "SHOPIFY_SHOP_DOMAIN": "acme.myshopify.com",
     "WOOCOMMERCE_ENABLED": "true", "WOOCOMMERCE_URL": "https://shop.acme.example",
     "OUTCOME_WEBHOOK_ENABLED": "true", "OUTCOME_WEBHOOK_URL": "https://shop.acme.example/outcome"},
]
STORES = VARIANTS[-1]
STORE_SETTINGS = {"SHOPIFY_SHOP_DOMAIN": "acme.myshopify.com", "SHOPIFY_API_VERSION": "2025-10",
                  "SHOPIFY_NOTIFY_CUSTOMER": "false", "WOOCOMMERCE_URL": "https://shop.acme.example",
                  "OUTCOME_WEBHOOK_URL": "https://shop.acme.example/outcome"}


def secret_name(variable: str) -> str:
    return variable.lower().replace("_", "-")


def deploys(output: str) -> dict[str, list[str]]:
    return {c[3]: c for c in commands_in(output) if c[:3] == ["gcloud", "functions", "deploy"]}


def set_secrets(argv: list[str]) -> dict[str, str]:
    value = flag(argv, "set-secrets")
    return dict(item.split("=", 1) for item in value.split(",")) if value else {}


def test_the_table_names_every_deployed_function_with_its_entry_point_and_trigger(tmp_path):
    run = dry_run(DEPLOY, *TARGET, root=tmp_path)
    assert run.returncode == 0, run.stderr

    found = deploys(run.stdout)
    assert sorted(found) == sorted(BY_NAME)
    for fn in FUNCTIONS:
        argv = found[fn.name]
        assert flag(argv, "entry-point") == fn.entry_point
        if fn.signature == "http":
            assert fn.trigger is None and "--trigger-http" in argv, fn.name
        else:
            assert flag(argv, "trigger-topic") == fn.trigger, fn.name
        assert ("--allow-unauthenticated" in argv) == fn.public, fn.name


def test_the_table_matches_the_entry_points_main_exports_and_the_local_stack_runs():
    import main
    from devstack import run as local_stack

    for fn in FUNCTIONS:
        assert callable(getattr(main, fn.entry_point)), fn.entry_point
        assert local_stack.FUNCTIONS[fn.entry_point][0] == fn.signature, fn.entry_point
        if fn.trigger:
            assert local_stack.SUBSCRIBERS[fn.trigger] == fn.entry_point


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={v[k]}" for k in v) or "defaults")
def test_each_function_gets_exactly_the_secrets_the_table_gives_it(variant, tmp_path):
    run = dry_run(DEPLOY, *TARGET, env=variant, root=tmp_path)
    assert run.returncode == 0, run.stderr

    found = deploys(run.stdout)
    for fn in FUNCTIONS:
        expected = fn.secret_variables(variant)
        refs = set_secrets(found[fn.name])
        assert set(refs) == expected, fn.name
        assert all(refs[v] == f"{secret_name(v)}:latest" for v in refs)
        if not expected:
            assert flag(found[fn.name], "set-secrets") is None, fn.name


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[-1]], ids=["defaults", "all-changed"])
def test_each_runtime_identity_may_read_exactly_the_secrets_of_its_function(variant, tmp_path):
    run = dry_run(PROVISION, *TARGET, env=variant, root=tmp_path)
    assert run.returncode == 0, run.stderr
    deployed = deploys(dry_run(DEPLOY, *TARGET, env=variant, root=tmp_path).stdout)

    grants: dict[str, set[str]] = {}
    for argv in commands_in(run.stdout):
        if argv[:3] == ["gcloud", "secrets", "add-iam-policy-binding"] \
                and flag(argv, "role") == "roles/secretmanager.secretAccessor":
            grants.setdefault(flag(argv, "member"), set()).add(argv[3])
    expected = {}
    for fn in FUNCTIONS:
        member = "serviceAccount:" + flag(deployed[fn.name], "service-account")
        names = {secret_name(v) for v in fn.secret_variables(variant)}
        if names:
            expected[member] = names
    assert grants == expected
    assert all(member.endswith(f"@{PROJECT}.iam.gserviceaccount.com") for member in grants)


def test_the_email_function_cannot_read_the_veriff_signing_secret():
    assert "VERIFF_SHARED_SECRET" not in BY_NAME["send-customer-email"].secret_variables()
    assert "VERIFF_SHARED_SECRET" in BY_NAME["webhook-intake"].secret_variables()


def test_the_defaults_are_those_of_infra_config():
    text = (DEPLOY.parent / "infra" / "config.sh").read_text()
    for setting, default in DEPLOYMENT_DEFAULTS.items():
        if setting in TABLE_STORE_SETTINGS:  # a store's switch: its default comes from the table itself
            assert f': "${{{setting}:={default}}}"' in stores_shell(), setting
        else:
            assert f"{setting}=${{{setting}:-{default}}}" in text, setting


def test_only_the_public_function_takes_traffic_from_outside_the_project(tmp_path):
    run = dry_run(DEPLOY, *TARGET, root=tmp_path)
    assert run.returncode == 0, run.stderr

    found = deploys(run.stdout)
    assert [fn.name for fn in FUNCTIONS if fn.public] == ["webhook-intake"]
    for fn in FUNCTIONS:
        argv = found[fn.name]
        assert [w for w in argv if w.startswith("--ingress-settings")] == [
            f"--ingress-settings={fn.ingress}"], fn.name
        assert ("--no-allow-unauthenticated" in argv) == (not fn.public), fn.name


def env_vars(argv: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in flag(argv, "set-env-vars")[3:].split("|"))


def test_the_store_settings_reach_every_function_that_moves_a_session_and_no_other(tmp_path):
    run = dry_run(DEPLOY, *TARGET, env=STORES, root=tmp_path)
    assert run.returncode == 0, run.stderr

    found = deploys(run.stdout)
    for fn in FUNCTIONS:
        env = env_vars(found[fn.name])
        got = {k: v for k, v in env.items() if k in STORE_SETTINGS}
        assert got == (STORE_SETTINGS if fn.moves_sessions else {}), fn.name
    assert {fn.name for fn in FUNCTIONS if fn.moves_sessions} == {
        "webhook-intake", "timer-expiry", "sweep", "request-refund", "operator-console"}


def test_stores_that_are_off_send_no_settings_and_no_secrets(tmp_path):
    run = dry_run(DEPLOY, *TARGET, env={"SHOPIFY_SHOP_DOMAIN": "acme.myshopify.com"}, root=tmp_path)
    assert run.returncode == 0, run.stderr

    for argv in deploys(run.stdout).values():
        assert not set(env_vars(argv)) & set(STORE_SETTINGS)
        assert not {v for v in set_secrets(argv) if v.startswith(("SHOPIFY", "WOOCOMMERCE", "OUTCOME"))}


def test_a_store_that_is_on_needs_its_address_to_deploy(provisioned):
    run = provisioned.run(DEPLOY, *TARGET, env={"SHOPIFY_ENABLED": "true"})
    assert run.returncode != 0 and "SHOPIFY_SHOP_DOMAIN is not set" in run.stderr
    assert not [c for c in run.calls if c[1:3] == ["functions", "deploy"]]
