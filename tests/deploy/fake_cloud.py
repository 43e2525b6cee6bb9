"""A stand-in for the `gcloud` and `bq` commands, for the deployment tests.

Run as `python fake_cloud.py gcloud ARGS...` (or `bq ARGS...`) through the
small shims the tests put first on PATH. It appends every call's argv to the
JSON-lines file $FAKE_CLOUD_LOG and keeps the project's resources in the JSON
file $FAKE_CLOUD_STATE, so that:

- describe/show/list/get-iam-policy/access answer from the state (a missing
  resource fails with NOT_FOUND, as the real CLI does);
- create/mk/deploy/enable/add-iam-policy-binding change it, and creating
  something that already exists fails with ALREADY_EXISTS;
- a resource that a command refers to (a topic, a service account, a
  secret's value...) must exist already, so the tests catch steps run in the
  wrong order.

It only understands the commands infra/provision.sh and deploy.sh use, and
fails loudly (exit 3) on anything else.
"""

from __future__ import annotations

import json
import os
import sys

PROJECT_NUMBER = "123456789012"
READ_VERBS = {"describe", "list", "get-iam-policy", "access", "show"}
VERBS = READ_VERBS | {
    "create",
    "enable",
    "update",
    "deploy",
    "add",
    "add-iam-policy-binding",
    "remove-iam-policy-binding",
    "mk",
    "print-access-token",
    "set-password",
}
# What `--filter=` of a list may say here: `field=value` or `field="value"`, joined by AND.
MONITORING_API = "monitoring.googleapis.com"
# What `gcloud auth print-access-token --impersonate-service-account=SA` prints here.
TOKEN_PREFIX = "fake-token-for-"


class Fail(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def load_state(path: str) -> dict:
    if os.path.exists(path):
        with open(path) as handle:
            return json.load(handle)
    return {"resources": {}, "policies": {}, "services": [], "secret_versions": {}}


def save_state(path: str, state: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(state, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def split(args: list[str]) -> tuple[list[str], dict[str, str | bool]]:
    positionals: list[str] = []
    flags: dict[str, str | bool] = {}
    for arg in args:
        if arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            flags[name] = value if sep else True
        else:
            positionals.append(arg)
    return positionals, flags


def last_segment(name: str) -> str:
    return name.rsplit("/", 1)[-1]


class Cloud:
    def __init__(self, state: dict) -> None:
        self.state = state
        self.res = state["resources"]

    # --- helpers -------------------------------------------------------------
    def key(self, kind: str, name: str, scope: str = "") -> str:
        return f"{kind}:{name}:{scope}"

    def exists(self, kind: str, name: str, scope: str = "") -> bool:
        return self.key(kind, name, scope) in self.res

    def need(self, kind: str, name: str, scope: str = "") -> dict:
        found = self.res.get(self.key(kind, name, scope))
        if found is None:
            raise Fail(f"NOT_FOUND: {kind} {name} {scope}".strip())
        return found

    def create(self, kind: str, name: str, scope: str = "", **fields) -> dict:
        key = self.key(kind, name, scope)
        if key in self.res:
            raise Fail(f"ALREADY_EXISTS: {kind} {name} {scope}".strip())
        self.res[key] = dict(fields)
        return self.res[key]

    def need_member(self, member: str) -> None:
        kind, _, email = member.partition(":")
        if kind != "serviceAccount":
            return
        for agent in ("pubsub", "iap"):
            if email.endswith(f"@gcp-sa-{agent}.iam.gserviceaccount.com"):
                if email != f"service-{PROJECT_NUMBER}@gcp-sa-{agent}.iam.gserviceaccount.com":
                    raise Fail(f"INVALID_ARGUMENT: no such service agent {email}")
                return
        self.need("sa", email)

    # --- gcloud --------------------------------------------------------------
    def gcloud(self, args: list[str]) -> str:
        positionals, flags = split(args)
        verb_at = next((i for i, word in enumerate(positionals) if word in VERBS), None)
        if verb_at is None:
            raise Fail(f"fake gcloud: unsupported command {args}", 3)
        group = " ".join(positionals[:verb_at])
        verb = positionals[verb_at]
        rest = positionals[verb_at + 1 :]
        project = flags.get("project")
        if group != "projects" and project is None:
            raise Fail("fake gcloud: every command must name --project", 3)
        handler = getattr(self, "g_" + group.replace(" ", "_").replace("-", "_"), None)
        if handler is None:
            raise Fail(f"fake gcloud: unsupported group {group!r}", 3)
        return handler(verb, rest, flags)

    def g_services(self, verb, rest, flags):
        if verb == "list":
            return "\n".join(self.state["services"])
        if verb == "enable":
            for api in rest:
                if api not in self.state["services"]:
                    self.state["services"].append(api)
            return ""
        raise Fail(f"fake gcloud: services {verb}", 3)

    def g_projects(self, verb, rest, flags):
        if verb == "describe":
            return PROJECT_NUMBER
        return self.iam(verb, "project", rest[0], flags)

    def g_iam_service_accounts(self, verb, rest, flags):
        if verb == "create":
            email = f"{rest[0]}@{flags['project']}.iam.gserviceaccount.com"
            self.create("sa", email, display=flags.get("display-name"))
            return ""
        if verb == "describe":
            self.need("sa", rest[0])
            return rest[0]
        return self.iam(verb, "sa", rest[0], flags)

    def g_secrets(self, verb, rest, flags):
        if verb == "create":
            self.create("secret", rest[0], replication=flags.get("replication-policy"))
            return ""
        if verb == "describe":
            self.need("secret", rest[0])
            return rest[0]
        return self.iam(verb, "secret", rest[0], flags)

    def g_secrets_versions(self, verb, rest, flags):
        versions = self.state["secret_versions"]
        if verb == "add":
            self.need("secret", rest[0])
            if flags.get("data-file") != "-":
                raise Fail("fake gcloud: expected --data-file=-", 3)
            value = sys.stdin.read()
            if not value:
                raise Fail("INVALID_ARGUMENT: empty secret value")
            versions.setdefault(rest[0], []).append(value)
            return f"Created version [{len(versions[rest[0]])}] of the secret [{rest[0]}]."
        if verb == "access":
            name = str(flags["secret"])
            self.need("secret", name)
            if not versions.get(name):
                raise Fail(f"NOT_FOUND: secret {name} has no versions")
            return versions[name][-1]
        if verb == "list":
            self.need("secret", rest[0])
            return str(len(versions.get(rest[0], []))) if versions.get(rest[0]) else ""
        raise Fail(f"fake gcloud: secrets versions {verb}", 3)

    def g_pubsub_topics(self, verb, rest, flags):
        name = last_segment(rest[0])
        if verb == "create":
            self.create("topic", name)
            return ""
        if verb == "describe":
            self.need("topic", name)
            return name
        return self.iam(verb, "topic", name, flags)

    def g_pubsub_subscriptions(self, verb, rest, flags):
        name = last_segment(rest[0])
        if verb in ("create", "update"):
            if verb == "create":
                self.need("topic", str(flags["topic"]))
                sub = self.create("subscription", name, topic=flags["topic"])
            else:
                sub = self.need("subscription", name)
            if "dead-letter-topic" in flags:
                self.need("topic", str(flags["dead-letter-topic"]))
            if "bigquery-table" in flags:
                project, _, table = str(flags["bigquery-table"]).partition(":")
                bq_table = self.need("bq", f"{project}:{table}")
                agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
                if ["roles/bigquery.dataEditor", agent] not in bq_table.get("bindings", []):
                    raise Fail("PERMISSION_DENIED: the Pub/Sub service agent cannot write the table")
            sub.update({k: v for k, v in flags.items() if k != "project"})
            return ""
        if verb == "describe":
            self.need("subscription", name)
            return name
        return self.iam(verb, "subscription", name, flags)

    def g_tasks_queues(self, verb, rest, flags):
        location = str(flags.get("location", ""))
        if verb == "create":
            self.create("queue", rest[0], location, **{k: v for k, v in flags.items() if k != "project"})
            return ""
        if verb == "describe":
            self.need("queue", rest[0], location)
            return rest[0]
        return self.iam(verb, "queue", rest[0], flags, location)

    def g_sql_instances(self, verb, rest, flags):
        if verb == "create":
            self.create("sql", rest[0], flags=flags.get("database-flags"))
            return ""
        if verb == "describe":
            self.need("sql", rest[0])
            return rest[0]
        raise Fail(f"fake gcloud: sql instances {verb}", 3)

    def g_sql_databases(self, verb, rest, flags):
        instance = str(flags["instance"])
        self.need("sql", instance)
        if verb == "create":
            self.create("database", rest[0], instance)
            return ""
        if verb == "describe":
            self.need("database", rest[0], instance)
            return rest[0]
        raise Fail(f"fake gcloud: sql databases {verb}", 3)

    def g_sql_users(self, verb, rest, flags):
        instance = str(flags["instance"])
        self.need("sql", instance)
        if "password" in flags:
            raise Fail("fake gcloud: a password on the command line (ps and shell history show it)", 3)
        if verb == "create":
            self.create("dbuser", rest[0], instance, type=flags.get("type", "BUILT_IN"))
            return ""
        if verb == "set-password":
            user = self.need("dbuser", rest[0], instance)
            if flags.get("prompt-for-password") is not True:
                raise Fail("fake gcloud: expected --prompt-for-password", 3)
            value = sys.stdin.readline().rstrip("\n")
            if not value:
                raise Fail("INVALID_ARGUMENT: empty password")
            user["password"] = value
            return ""
        if verb == "describe":
            self.need("dbuser", rest[0], instance)
            return rest[0]
        raise Fail(f"fake gcloud: sql users {verb}", 3)

    def g_auth(self, verb, rest, flags):
        if verb == "print-access-token":
            account = str(flags.get("impersonate-service-account", ""))
            self.need("sa", account)
            return TOKEN_PREFIX + account
        raise Fail(f"fake gcloud: auth {verb}", 3)

    def g_functions(self, verb, rest, flags):
        name = rest[0]
        region = str(flags.get("region", ""))
        if verb == "describe":
            fn = self.need("function", name, region)
            wanted = str(flags.get("format", ""))
            if "serviceConfig.uri" in wanted:
                return fn["uri"]
            if "eventTrigger.trigger" in wanted:
                return fn.get("trigger", "")
            return name
        if verb == "deploy":
            return self.deploy(name, region, flags)
        raise Fail(f"fake gcloud: functions {verb}", 3)

    def deploy(self, name, region, flags):
        project = flags["project"]
        for needed in ("service-account", "trigger-service-account"):
            if needed in flags:
                self.need("sa", str(flags[needed]))
        if "build-service-account" in flags:
            self.need("sa", last_segment(str(flags["build-service-account"])))
        for ref in filter(None, str(flags.get("set-secrets", "")).split(",")):
            secret = ref.partition("=")[2].partition(":")[0]
            self.need("secret", secret)
            if not self.state["secret_versions"].get(secret):
                raise Fail(f"FAILED_PRECONDITION: secret {secret} has no version")
            reader = ["roles/secretmanager.secretAccessor", f"serviceAccount:{flags['service-account']}"]
            if reader not in self.state["policies"].get(self.key("secret", secret), []):
                raise Fail(f"PERMISSION_DENIED: {flags['service-account']} cannot read secret {secret}")
        fn = self.res.get(self.key("function", name, region))
        if fn is None:
            fn = self.res[self.key("function", name, region)] = {
                "uri": f"https://{name}-f4k3h4sh-uc.a.run.app",
                "deploys": 0,
            }
        fn["deploys"] += 1
        fn["flags"] = {k: v for k, v in flags.items()}
        if "trigger-topic" in flags:
            self.need("topic", str(flags["trigger-topic"]))
            trigger = f"{name}-424242"
            fn["trigger"] = f"projects/{project}/locations/{region}/triggers/{trigger}"
            sub = f"eventarc-{region}-{trigger}-sub-777"
            self.res.setdefault(self.key("trigger", trigger, region), {"subscription": sub})
            self.res.setdefault(
                self.key("subscription", sub), {"topic": flags["trigger-topic"], "eventarc": True}
            )
        # --allow-unauthenticated grants allUsers the invoker role on the service.
        bindings = self.state["policies"].setdefault(self.key("function", name, region), [])
        public = ["roles/run.invoker", "allUsers"]
        if flags.get("allow-unauthenticated") is True and public not in bindings:
            bindings.append(public)
        if flags.get("no-allow-unauthenticated") is True and public in bindings:
            bindings.remove(public)
        return ""

    def g_run_services(self, verb, rest, flags):
        region = str(flags.get("region", ""))
        # A gen2 function is a Cloud Run service of the same name.
        if verb == "update":
            if set(flags) - {"region", "project", "no-cpu-throttling", "cpu-throttling"}:
                raise Fail(f"fake gcloud: run services update {sorted(flags)}", 3)
            service = self.need("function", rest[0], region)
            service["cpu_throttling"] = flags.get("cpu-throttling") is True or flags.get("no-cpu-throttling") is not True
            return ""
        return self.iam(verb, "function", rest[0], flags, region)

    def g_beta_run_services(self, verb, rest, flags):
        region = str(flags.get("region", ""))
        if verb != "update" or flags.get("iap") is not True:
            raise Fail(f"fake gcloud: beta run services {verb} without --iap", 3)
        if "iap.googleapis.com" not in self.state["services"]:
            raise Fail("FAILED_PRECONDITION: the IAP API (iap.googleapis.com) is not enabled")
        self.need("function", rest[0], region)["iap"] = True
        return ""

    def g_beta_iap_web(self, verb, rest, flags):
        """IAP's own policy on a Cloud Run service (who may pass IAP), apart from run.invoker."""
        if flags.get("resource-type") != "cloud-run":
            raise Fail("fake gcloud: iap web only for --resource-type=cloud-run", 3)
        service, region = str(flags["service"]), str(flags.get("region", ""))
        if not self.need("function", service, region).get("iap"):
            raise Fail(f"FAILED_PRECONDITION: IAP is not enabled on {service}")
        self.res.setdefault(self.key("iap", service, region), {})
        return self.iam(verb, "iap", service, flags, region)

    def g_eventarc_triggers(self, verb, rest, flags):
        if verb != "describe":
            raise Fail(f"fake gcloud: eventarc triggers {verb}", 3)
        trigger = self.need("trigger", last_segment(rest[0]), str(flags.get("location", "")))
        return f"projects/{flags['project']}/subscriptions/{trigger['subscription']}"

    def g_scheduler_jobs(self, verb, rest, flags):
        name = rest[-1]
        location = str(flags.get("location", ""))
        if verb == "describe":
            self.need("job", name, location)
            return name
        if verb in ("create", "update"):
            if rest[0] != "http":
                raise Fail("fake gcloud: only http jobs", 3)
            self.need("sa", str(flags["oidc-service-account-email"]))
            fields = {k: v for k, v in flags.items() if k != "project"}
            if verb == "create":
                self.create("job", name, location, **fields)
            else:
                self.need("job", name, location).update(fields)
            return ""
        raise Fail(f"fake gcloud: scheduler jobs {verb}", 3)

    # --- monitoring (infra/monitoring/) -------------------------------------------
    def need_api(self, api: str) -> None:
        if api not in self.state["services"]:
            raise Fail(f"FAILED_PRECONDITION: {api} is not enabled")

    def read_config(self, flags, flag) -> dict:
        path = str(flags[flag])
        with open(path) as handle:
            config = json.load(handle)  # the real CLI reads JSON or YAML; the project writes JSON
        if not isinstance(config, dict):
            raise Fail(f"INVALID_ARGUMENT: {path} is not an object")
        return config

    def listed(self, kind: str, flags) -> str:
        """The names of `kind` resources whose fields match the list's --filter, one a line."""
        wanted = []
        for term in str(flags.get("filter", "")).split(" AND "):
            if term:
                field, _, value = term.partition("=")
                wanted.append((field.strip().split("."), value.strip().strip('"')))
        if str(flags.get("format", "")) != "value(name)":
            raise Fail("fake gcloud: monitoring lists are read with --format=value(name)", 3)
        names = []
        for key, resource in sorted(self.res.items()):
            if not key.startswith(kind + ":"):
                continue
            def field_of(path, node=resource["config"]):
                for part in path:
                    node = node.get(part) if isinstance(node, dict) else None
                return node
            if all(field_of(path) == value for path, value in wanted):
                names.append(resource["resource_name"])
        return "\n".join(names[: int(flags["limit"])] if "limit" in flags else names)

    def next_name(self, project, collection: str) -> str:
        self.state["next_id"] = self.state.get("next_id", 1000) + 1
        return f"projects/{project}/{collection}/{self.state['next_id']}"

    def g_logging_metrics(self, verb, rest, flags):
        self.need_api("logging.googleapis.com")
        name = rest[0]
        if verb == "describe":
            self.need("logmetric", name)
            return name
        if verb in ("create", "update"):
            config = self.read_config(flags, "config-from-file")
            if config.get("name", name) != name:
                raise Fail(f"INVALID_ARGUMENT: the file names metric {config.get('name')}, not {name}")
            if verb == "create":
                self.create("logmetric", name, resource_name=name, config=config)
            else:
                metric = self.need("logmetric", name)
                metric["config"] = config
            return ""
        raise Fail(f"fake gcloud: logging metrics {verb}", 3)

    def g_beta_monitoring_channels(self, verb, rest, flags):
        self.need_api(MONITORING_API)
        if verb == "list":
            return self.listed("channel", flags)
        if verb == "create":
            labels = dict(pair.split("=", 1) for pair in str(flags["channel-labels"]).split(","))
            name = self.next_name(flags["project"], "notificationChannels")
            config = {"type": flags["type"], "labels": labels, "displayName": flags.get("display-name")}
            self.create("channel", name, resource_name=name, config=config)
            return name
        raise Fail(f"fake gcloud: beta monitoring channels {verb}", 3)

    def channels_of(self, flags, flag) -> list[str]:
        names = [n for n in str(flags.get(flag, "")).split(",") if n]
        for channel in names:
            self.need("channel", channel)
        return names

    def g_alpha_monitoring_policies(self, verb, rest, flags):
        self.need_api(MONITORING_API)
        if verb == "list":
            return self.listed("policy", flags)
        if verb == "create":
            config = self.read_config(flags, "policy-from-file")
            name = self.next_name(flags["project"], "alertPolicies")
            self.create("policy", name, resource_name=name, config=config,
                        channels=self.channels_of(flags, "notification-channels"))
            return ""
        if verb == "update":
            policy = self.need("policy", rest[0])
            policy["config"] = self.read_config(flags, "policy-from-file")
            # The whole policy is replaced: without --set-notification-channels it has none.
            policy["channels"] = self.channels_of(flags, "set-notification-channels")
            return ""
        raise Fail(f"fake gcloud: alpha monitoring policies {verb}", 3)

    def g_monitoring_dashboards(self, verb, rest, flags):
        self.need_api(MONITORING_API)
        if verb == "list":
            return self.listed("dashboard", flags)
        if verb == "create":
            name = self.next_name(flags["project"], "dashboards")
            self.create("dashboard", name, resource_name=name, config=self.read_config(flags, "config-from-file"))
            return ""
        if verb == "update":
            dashboard = self.need("dashboard", rest[0])
            dashboard["config"] = self.read_config(flags, "config-from-file")
            return ""
        raise Fail(f"fake gcloud: monitoring dashboards {verb}", 3)

    def iam(self, verb, kind, name, flags, scope=""):
        if kind != "project":
            self.need(kind, name, scope)
        bindings = self.state["policies"].setdefault(self.key(kind, name, scope), [])
        if verb == "get-iam-policy":
            return "\n".join(f"{role}\t{member}" for role, member in bindings)
        if verb == "add-iam-policy-binding":
            member, role = str(flags["member"]), str(flags["role"])
            self.need_member(member)
            if [role, member] not in bindings:
                bindings.append([role, member])
            return ""
        if verb == "remove-iam-policy-binding":
            member, role = str(flags["member"]), str(flags["role"])
            if [role, member] not in bindings:
                raise Fail("ERROR: Policy binding with the specified principal, role, and any condition not found!")
            bindings.remove([role, member])
            return ""
        raise Fail(f"fake gcloud: {kind} {verb}", 3)

    # --- bq ------------------------------------------------------------------
    def bq(self, args: list[str]) -> str:
        positionals, flags = split(args)
        if not positionals:
            raise Fail("fake bq: no command", 3)
        command, resource = positionals[0], positionals[-1]
        if "project_id" not in flags:
            raise Fail("fake bq: every command must name --project_id", 3)
        if command == "show":
            self.need("bq", resource)
            return ""
        if command == "mk":
            if flags.get("table") is True:
                self.need("bq", resource.rpartition(".")[0])
                schema = str(flags["schema"])
                with open(schema) as handle:
                    json.load(handle)
                self.create("bq", resource, type="table", schema=schema, bindings=[])
            elif flags.get("dataset") is True:
                self.create("bq", resource, type="dataset", location=flags.get("location"))
            else:
                raise Fail("fake bq: mk needs --dataset or --table", 3)
            return ""
        if command == "get-iam-policy":
            table = self.need("bq", resource)
            grouped: dict[str, list[str]] = {}
            for role, member in table.get("bindings", []):
                grouped.setdefault(role, []).append(member)
            return json.dumps(
                {"bindings": [{"members": m, "role": r} for r, m in grouped.items()], "etag": "x"}
            )
        if command == "add-iam-policy-binding":
            table = self.need("bq", resource)
            member, role = str(flags["member"]), str(flags["role"])
            self.need_member(member)
            if [role, member] not in table["bindings"]:
                table["bindings"].append([role, member])
            return ""
        raise Fail(f"fake bq: unsupported command {command}", 3)


def main() -> int:
    tool, args = sys.argv[1], sys.argv[2:]
    with open(os.environ["FAKE_CLOUD_LOG"], "a") as log:
        log.write(json.dumps({"tool": tool, "argv": [tool, *args]}) + "\n")
    state_path = os.environ["FAKE_CLOUD_STATE"]
    state = load_state(state_path)
    cloud = Cloud(state)
    try:
        output = cloud.gcloud(args) if tool == "gcloud" else cloud.bq(args)
    except Fail as failure:
        print(f"ERROR: ({tool}) {failure}", file=sys.stderr)
        return failure.code
    save_state(state_path, state)
    if output:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
