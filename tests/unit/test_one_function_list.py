"""One list of functions (issue 22 item 8): `shared/functions_table.py`. infra/config.sh reads it
through `python -m shared.functions_table shell` instead of writing it again; the database
roles (`grants.GRANTS`) and the entry points' modules and REQUIRED settings are held to it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.db.grants import GRANTS
from shared.functions_table import BY_NAME, DEPLOYMENT_DEFAULTS, FUNCTIONS, STORE_SETTINGS, main, shell, stores_shell
from shared.providers import registry as providers

ROOT = Path(__file__).resolve().parents[2]
CONFIG = (ROOT / "infra" / "config.sh").read_text()
ENTRY_MODULES = {p.stem: p for p in (ROOT / "functions").glob("*.py") if not p.stem.startswith("_")}


def bash_reads(declarations: str, script: str) -> str:
    return subprocess.run(["bash", "-c", f"set -euo pipefail\n{declarations}\n{script}"],
                          capture_output=True, text=True, check=True, timeout=30).stdout


STORES_ON = {"SHOPIFY_ENABLED": "true", "WOOCOMMERCE_ENABLED": "true", "OUTCOME_WEBHOOK_ENABLED": "true"}


@pytest.mark.parametrize("deployment", [{}, {"DB_IAM_AUTH": "false", "EMAIL_BACKEND": "smtp",
                                             "REFUND_BACKEND": "http", "LIGHTSPEED_ENABLED": "false"},
                                        STORES_ON])
def test_bash_reads_back_the_table(deployment):
    out = bash_reads(shell(deployment, first=["timer-expiry"]), """
        printf '%s\\n' "${FUNCTIONS[*]}"
        for fn in "${FUNCTIONS[@]}"; do
            printf '%s|%s|%s|%s|%s|%s|%s\\n' "$fn" "${FN_TABLE_ENTRY[$fn]}" "${FN_TABLE_TRIGGER[$fn]}" \\
                "${FN_TABLE_PUBLIC[$fn]}" "${FN_TABLE_INGRESS[$fn]}" "${FN_TABLE_MOVES_SESSIONS[$fn]}" \\
                "${FN_TABLE_SECRETS[$fn]}"
        done
        printf '%s\\n' "${SECRET_ENVS[*]}"
    """).splitlines()
    order = out[0].split()
    assert order[0] == "timer-expiry" and sorted(order) == sorted(BY_NAME)
    rows = {line.split("|")[0]: line.split("|")[1:] for line in out[1:-1]}
    for fn in FUNCTIONS:
        entry, trigger, public, ingress, moves, secrets = rows[fn.name]
        assert (entry, trigger, public, ingress, moves) == (fn.entry_point, fn.trigger or "http",
                                                            str(fn.public).lower(), fn.ingress,
                                                            str(fn.moves_sessions).lower())
        assert sorted(secrets.split()) == sorted(fn.secret_variables(deployment))
    assert set(out[-1].split()) == {s for fn in FUNCTIONS for s in fn.secret_variables(
        {"DB_IAM_AUTH": "false", "EMAIL_BACKEND": "sendgrid", "REFUND_BACKEND": "http", "LIGHTSPEED_ENABLED": "true",
         **STORES_ON})}


def test_the_store_secrets_go_to_the_intake_and_the_order_actions_subscriber_only_when_on():
    intake, actions = BY_NAME["webhook-intake"], BY_NAME["request-refund"]
    store_secrets = {"SHOPIFY_CLIENT_SECRET", "WOOCOMMERCE_WEBHOOK_SECRET", "SHOPIFY_ADMIN_TOKEN",
                     "WOOCOMMERCE_CONSUMER_KEY", "WOOCOMMERCE_CONSUMER_SECRET", "OUTCOME_WEBHOOK_SECRET"}
    assert not store_secrets & {s for fn in FUNCTIONS for s in fn.secret_variables({})}
    assert intake.secret_variables(STORES_ON) & store_secrets == {"SHOPIFY_CLIENT_SECRET", "WOOCOMMERCE_WEBHOOK_SECRET"}
    assert actions.secret_variables(STORES_ON) & store_secrets == {
        "SHOPIFY_ADMIN_TOKEN", "WOOCOMMERCE_CONSUMER_KEY", "WOOCOMMERCE_CONSUMER_SECRET", "OUTCOME_WEBHOOK_SECRET"}
    assert actions.secret_variables({"SHOPIFY_ENABLED": "true"}) & store_secrets == {"SHOPIFY_ADMIN_TOKEN"}
    others = [fn for fn in FUNCTIONS if fn not in (intake, actions)]
    assert not store_secrets & {s for fn in others for s in fn.secret_variables(STORES_ON)}
    assert {fn.name for fn in FUNCTIONS if fn.moves_sessions} == {
        "webhook-intake", "timer-expiry", "sweep", "request-refund", "operator-console"}


def test_the_command_refuses_what_it_does_not_know(capsys):
    assert main(["shell", "NO_SUCH_SETTING=1"]) == 2 and main(["shell", "--first", "nope"]) == 2
    assert main([]) == 2 and main(["shell", "stray"]) == 2
    assert main(["shell", "--first", "sweep"]) == 0 and capsys.readouterr().out.startswith("FUNCTIONS=(sweep ")


def test_the_module_runs_as_a_command_on_the_standard_library_alone():
    out = subprocess.run([sys.executable, "-E", "-S", "-m", "shared.functions_table", "shell"], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=30).stdout
    assert out == shell({})


def test_infra_config_reads_the_table_and_does_not_write_it_again():
    call = re.search(r'"\$DEPLOY_PYTHON" -m shared\.functions_table shell(.*?)\)', CONFIG, re.S)
    assert call, "infra/config.sh must read the function table"
    passed = set(re.findall(r"([A-Z_]+)=\"\$\1\"", call.group(1)))
    assert passed == set(DEPLOYMENT_DEFAULTS) - set(STORE_SETTINGS)  # the stores' switches: below
    assert '"${STORE_SWITCH_VALUES[@]}"' in call.group(1)
    for written in (r"^\s*FUNCTIONS=\(", r"^\s*SECRET_ENVS=\(", r"FN_ENTRY=(?!\$\{FN_TABLE)",
                    r"FN_TRIGGER=(?!\$\{FN_TABLE)", r"FN_SECRET_ENVS(\+?=)", r"FN_PUBLIC=(?!\$\{FN_TABLE)"):
        assert not re.search(written, CONFIG, re.M), written
    for fn in FUNCTIONS:  # the sizes and identities stay infra's, one case per function
        assert re.search(rf"^\s*{re.escape(fn.name)}\)$", CONFIG, re.M), fn.name


def test_infra_names_no_function_secret_but_takes_them_from_the_table():
    """A store's secrets are its row in the table: no script spells a secret's name again (so
    none can give a function a secret the table does not, or forget one it does)."""
    scripts = {p.name: p.read_text() for p in [*(ROOT / "infra").glob("*.sh"), ROOT / "deploy.sh"]}
    secrets = {s.variable for fn in FUNCTIONS for s in fn.secrets}
    for name, script in scripts.items():
        code = "\n".join(line.split("#", 1)[0] for line in script.splitlines())
        assert not {s for s in secrets if re.search(rf"\b{s}\b", code)}, name
    assert "FN_TABLE_SECRETS" in CONFIG and all("FN_SECRET_ENVS" in scripts[n] for n in ("provision.sh", "deploy.sh"))


def test_every_function_has_its_database_role_and_no_other():
    assert set(GRANTS) == set(BY_NAME)


def _module_constant(path: Path, name: str):
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def test_every_entry_point_is_a_row_of_the_table_and_requires_only_its_secrets():
    assert set(ENTRY_MODULES) == {fn.entry_point for fn in FUNCTIONS}
    for fn in FUNCTIONS:
        module = ENTRY_MODULES[fn.entry_point]
        assert _module_constant(module, "NAME") == fn.entry_point, module.name
        always = {s.variable for s in fn.secrets if s.when is None}
        required = set(_module_constant(module, "REQUIRED") or ())
        assert required - {"ID_PROVIDER"} <= always, module.name
        if "ID_PROVIDER" in required:  # the chosen provider's webhook secrets, read under its name
            for name, line in providers.PROVIDERS.items():
                assert {s.secret_variable for s in line.sources} <= fn.secret_variables({"ID_PROVIDER": name})



def test_the_store_settings_come_from_the_table_and_each_has_its_default_in_infra_config():
    on = bash_reads(shell(STORES_ON), 'printf "%s\\n" "${STORE_ENVS[*]}"').split()
    assert on == [s.name for settings in STORE_SETTINGS.values() for s in settings]
    assert bash_reads(shell({}), 'printf "%s\\n" "${STORE_ENVS[*]:-}"').split() == []
    assert bash_reads(shell({"WOOCOMMERCE_ENABLED": "true"}), 'printf "%s\\n" "${STORE_ENVS[*]}"').split() == [
        "WOOCOMMERCE_URL"]
    assert set(STORE_SETTINGS) <= set(DEPLOYMENT_DEFAULTS)
    # set -u: each switch and setting has its default, read from the table (config.sh evals it)
    names = [n for switch, settings in STORE_SETTINGS.items() for n in (switch, *(s.name for s in settings))]
    defaults = bash_reads(stores_shell(), 'for v in ' + " ".join(names) + '; do printf "%s=%s\\n" "$v" "${!v}"; done')
    assert defaults.splitlines() == [f"{switch}=false" if switch == n else f"{n}={d}"
                                     for switch, settings in STORE_SETTINGS.items()
                                     for n, d in ((switch, "false"), *((s.name, s.default) for s in settings))]
    assert '-m shared.functions_table stores)' in CONFIG and 'eval "$STORE_TABLE"' in CONFIG


def test_no_script_names_a_store_they_read_the_stores_from_the_table():
    """A new store is its rows in the table: infra/ and deploy.sh spell no store's switch or
    setting (deploy.sh requires a store's settings from STORE_REQUIRED)."""
    scripts = {p.name: p.read_text() for p in [*(ROOT / "infra").glob("*.sh"), ROOT / "deploy.sh"]}
    names = {n for switch, settings in STORE_SETTINGS.items() for n in (switch, *(s.name for s in settings))}
    for name, script in scripts.items():
        code = "\n".join(line.split("#", 1)[0] for line in script.splitlines())
        assert not {n for n in names if re.search(rf"\b{n}\b", code)}, name


def test_deploy_requires_a_stores_settings_it_cannot_run_without_from_the_table():
    out = bash_reads(stores_shell(), 'for r in "${STORE_REQUIRED[@]}"; do read -r a b c <<<"$r"; echo "$a|$b|$c"; done')
    assert out.splitlines() == [f"{switch}|{s.name}|{s.example}" for switch, settings in STORE_SETTINGS.items()
                                for s in settings if s.example]
    for settings in STORE_SETTINGS.values():  # what bash gets as a default is one plain word
        assert all(re.fullmatch(r"[A-Za-z0-9._:/-]*", s.default + s.example) for s in settings)


def test_a_new_store_reaches_infra_through_its_table_rows_alone(monkeypatch):
    """A store added as rows of the table (its switch and settings) is defaulted, passed on and
    required by what infra/config.sh and deploy.sh read, with no script edited."""
    from shared import functions_table as table

    monkeypatch.setitem(table.STORE_SETTINGS, "ACME_ENABLED", (table.StoreSetting("ACME_URL", example="https://acme.example"),
                                                               table.StoreSetting("ACME_MODE", "strict")))
    monkeypatch.setitem(table.DEPLOYMENT_DEFAULTS, "ACME_ENABLED", "false")
    got = bash_reads(table.stores_shell(), 'echo "$ACME_ENABLED|$ACME_URL|$ACME_MODE|${STORE_SWITCHES[*]}"; '
                                           'printf "%s\\n" "${STORE_REQUIRED[@]}"').splitlines()
    assert got[0] == "false||strict|SHOPIFY_ENABLED WOOCOMMERCE_ENABLED OUTCOME_WEBHOOK_ENABLED ACME_ENABLED"
    assert "ACME_ENABLED ACME_URL https://acme.example" in got[1:]
    on = bash_reads(shell({"ACME_ENABLED": "true"}), 'printf "%s\\n" "${STORE_ENVS[*]}"').split()
    assert on == ["ACME_URL", "ACME_MODE"]
    assert bash_reads(shell({}), 'printf "%s\\n" "${STORE_ENVS[*]:-}"').split() == []
