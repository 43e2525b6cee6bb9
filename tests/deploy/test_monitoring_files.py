"""infra/monitoring/: every log-based metric, alert policy and dashboard parses, names only
metrics infra/ creates or Google documents, links to a runbook section that exists, and
infra/provision.sh applies them (twice: the same result), with notification channels only
when ALERT_EMAILS is set. The filters' match with the code's own log lines:
tests/functions/test_log_metrics.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.deploy.helpers import PROJECT, PROVISION, TARGET, flag, verb_of

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "infra" / "monitoring"
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"
USER = "logging.googleapis.com/user/"
# Google's own metric types the policies and dashboard use, each as documented in
# https://cloud.google.com/monitoring/api/metrics_gcp.
GOOGLE_METRICS = {"pubsub.googleapis.com/subscription/num_undelivered_messages"}
METRIC_TYPE = re.compile(r'metric\.type\s*=\s*"([^"]+)"')
LABEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")
ALIGNERS = {"ALIGN_SUM", "ALIGN_MAX", "ALIGN_PERCENTILE_99", "ALIGN_PERCENTILE_50", "ALIGN_COUNT",
            "ALIGN_DELTA", "ALIGN_RATE"}

METRICS = sorted(MONITORING.glob("metrics/*.json"))
POLICIES = sorted(MONITORING.glob("policies/*.json"))
DASHBOARDS = sorted(MONITORING.glob("dashboards/*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbook's headings."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def filters_in(node: object) -> list[str]:
    """Every Monitoring filter string in a policy or dashboard."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("filter", "denominatorFilter") and isinstance(value, str):
                found.append(value)
            else:
                found += filters_in(value)
    elif isinstance(node, list):
        for item in node:
            found += filters_in(item)
    return found


def test_the_files_are_there():
    names = {path.stem for path in METRICS}
    assert {"outbox_rows_parked", "relay_failures", "link_not_sent_reviews", "store_action_failures",
            "refund_failures", "emails_failed", "http_answers", "time_to_link", "sweep_runs",
            "outbox_oldest_age", "effect_failures"} <= names
    assert {path.stem for path in POLICIES} == {
        "outbox-row-parked", "dead-letter-not-empty", "outbox-backlog-old", "sweep-not-running",
        "intake-5xx", "time-to-link-slow", "link-not-sent", "store-action-failed",
        "effect-failed"}
    assert len(DASHBOARDS) == 1


@pytest.mark.parametrize("path", METRICS, ids=lambda p: p.stem)
def test_each_log_metric_is_a_valid_log_metric(path):
    metric = load(path)
    assert metric["name"] == path.stem and LABEL_NAME.fullmatch(path.stem)
    assert metric["description"] and metric["filter"]
    descriptor = metric["metricDescriptor"]
    assert descriptor["metricKind"] == "DELTA"
    assert descriptor["valueType"] in ("INT64", "DISTRIBUTION")
    declared = {label["key"] for label in descriptor.get("labels", [])}
    assert set(metric.get("labelExtractors", {})) == declared
    for key, extractor in metric.get("labelExtractors", {}).items():
        assert LABEL_NAME.fullmatch(key)
        assert re.fullmatch(r"EXTRACT\((labels|jsonPayload)\.[a-z_]+\)", extractor), extractor
    if descriptor["valueType"] == "DISTRIBUTION":
        assert re.fullmatch(r"EXTRACT\(labels\.[a-z_]+\)", metric["valueExtractor"])
        buckets = metric["bucketOptions"]["exponentialBuckets"]
        assert buckets["numFiniteBuckets"] > 0 and buckets["growthFactor"] > 1 and buckets["scale"] > 0
    else:
        assert "valueExtractor" not in metric and "bucketOptions" not in metric
    assert set(metric) <= {"name", "description", "filter", "metricDescriptor", "labelExtractors",
                           "valueExtractor", "bucketOptions"}


@pytest.mark.parametrize("path", POLICIES + DASHBOARDS, ids=lambda p: p.stem)
def test_policies_and_dashboards_name_only_known_metrics(path):
    config = load(path)
    ours = {p.stem for p in METRICS}
    filters = filters_in(config)
    assert filters, path
    for text in filters:
        types = METRIC_TYPE.findall(text)
        assert len(types) == 1, text
        [metric_type] = types
        if metric_type.startswith(USER):
            assert metric_type.removeprefix(USER) in ours, metric_type
        else:
            assert metric_type in GOOGLE_METRICS, metric_type
        # A label of a log-based metric named in a filter is one it declares.
        for label in re.findall(r"metric\.labels?\.([a-z_]+)", text):
            metric = load(MONITORING / "metrics" / f"{metric_type.removeprefix(USER)}.json")
            assert label in {entry["key"] for entry in metric["metricDescriptor"].get("labels", [])}, text


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_each_policy_is_complete_and_links_its_runbook_section(path):
    policy = load(path)
    assert policy["displayName"].startswith("Verification: ")
    assert policy["userLabels"]["alert"] == path.stem  # how provision.sh finds it again
    assert policy["combiner"] in ("OR", "AND") and policy["enabled"] is True
    assert "notificationChannels" not in policy  # they come from ALERT_EMAILS
    documentation = policy["documentation"]
    assert documentation["mimeType"] == "text/markdown"
    links = re.findall(r"docs/RUNBOOK\.md#([a-z0-9-]+)", documentation["content"])
    assert links == [path.stem]
    assert path.stem in runbook_anchors()
    assert policy["conditions"]
    for condition in policy["conditions"]:
        assert condition["displayName"]
        [(kind, body)] = [(k, v) for k, v in condition.items() if k != "displayName"]
        assert kind in ("conditionThreshold", "conditionAbsent")
        assert re.fullmatch(r"\d+s", body["duration"])
        for aggregation in body["aggregations"] + body.get("denominatorAggregations", []):
            assert aggregation["perSeriesAligner"] in ALIGNERS
            assert re.fullmatch(r"\d+s", aggregation["alignmentPeriod"])
        if kind == "conditionThreshold":
            assert body["comparison"] == "COMPARISON_GT" and isinstance(body["thresholdValue"], (int, float))


def test_runbook_sections_link_only_to_headings_that_exist():
    anchors = runbook_anchors()
    for anchor in re.findall(r"\]\(#([a-z0-9-]+)\)", RUNBOOK.read_text()):
        assert anchor in anchors, anchor


def test_the_dashboard_has_the_funnel_the_answers_the_backlog_and_time_to_link():
    [path] = DASHBOARDS
    dashboard = load(path)
    assert dashboard["displayName"]
    # provision.sh finds the dashboard by the displayName on this line.
    assert f'  "displayName": "{dashboard["displayName"]}",' in path.read_text().splitlines()
    named = {t.removeprefix(USER) for f in filters_in(dashboard) for t in METRIC_TYPE.findall(f)}
    assert {"http_answers", "links_sent", "outbox_backlog", "outbox_oldest_age", "time_to_link",
            "outbox_rows_parked"} <= named
    tiles = dashboard["mosaicLayout"]["tiles"]
    for tile in tiles:
        assert tile["xPos"] + tile["width"] <= dashboard["mosaicLayout"]["columns"]


def monitoring_writes(calls: list[list[str]]) -> list[tuple[str, str]]:
    out = []
    for argv in calls:
        group = " ".join(argv[1:4])
        if any(word in group for word in ("monitoring", "logging metrics")) and verb_of(argv) in ("create", "update"):
            out.append((group, verb_of(argv)))
    return out


def test_provision_applies_every_file_and_a_second_run_sets_the_same(cloud):
    first = cloud.run(PROVISION, *TARGET)

    assert first.returncode == 0, first.stderr
    assert "ALERT_EMAILS is not set: no notification channel is created" in first.stderr
    state = cloud.state()["resources"]
    metrics = {k.split(":")[1]: v for k, v in state.items() if k.startswith("logmetric:")}
    assert set(metrics) == {p.stem for p in METRICS}
    for path in METRICS:
        assert metrics[path.stem]["config"] == load(path)
    policies = [v for k, v in state.items() if k.startswith("policy:")]
    assert sorted(p["config"]["userLabels"]["alert"] for p in policies) == sorted(p.stem for p in POLICIES)
    assert all(p["channels"] == [] for p in policies)
    assert not any(k.startswith("channel:") for k in state)
    assert len([k for k in state if k.startswith("dashboard:")]) == len(DASHBOARDS)
    created = [w for w in monitoring_writes(first.calls) if w[1] == "create"]
    assert len(created) == len(METRICS) + len(POLICIES) + len(DASHBOARDS)

    second = cloud.run(PROVISION, *TARGET)

    assert second.returncode == 0, second.stderr
    assert cloud.state()["resources"] == state
    writes = monitoring_writes(second.calls)
    assert {verb for _, verb in writes} == {"update"}
    assert len(writes) == len(METRICS) + len(POLICIES) + len(DASHBOARDS)


def test_alert_emails_become_channels_once_and_every_policy_notifies_them(cloud):
    emails = {"ALERT_EMAILS": "oncall@store.example,ops@store.example"}
    first = cloud.run(PROVISION, *TARGET, env=emails)
    assert first.returncode == 0, first.stderr
    second = cloud.run(PROVISION, *TARGET, env=emails)
    assert second.returncode == 0, second.stderr

    state = cloud.state()["resources"]
    channels = {v["config"]["labels"]["email_address"]: v["resource_name"]
                for k, v in state.items() if k.startswith("channel:")}
    assert set(channels) == {"oncall@store.example", "ops@store.example"}
    assert not [argv for argv in second.calls if argv[1:5] == ["beta", "monitoring", "channels", "create"]]
    policies = [v for k, v in state.items() if k.startswith("policy:")]
    assert len(policies) == len(POLICIES)
    for policy in policies:
        assert sorted(policy["channels"]) == sorted(channels.values())
    updates = [argv for argv in second.calls if argv[1:5] == ["alpha", "monitoring", "policies", "update"]]
    assert len(updates) == len(POLICIES)
    assert all(flag(argv, "set-notification-channels") for argv in updates)
    assert all(flag(argv, "project") == PROJECT for argv in updates)
