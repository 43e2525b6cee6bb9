"""The local publisher writes its binary-mode CloudEvent itself (no SDK on the relay's path);
it must be what the CloudEvents SDK writes for the same event, byte for byte."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent, from_http

from shared.adapters.events import PUBSUB_EVENT_TYPE, LocalPublisher
from shared.ports import OutgoingMessage

PUBLISHED = datetime(2026, 12, 2, 13, 58, 25, 625_999, tzinfo=timezone.utc)


@pytest.mark.parametrize("ordering_key", ["order-1", ""])
def test_local_event_is_what_the_cloudevents_sdk_writes(ordering_key):
    message = OutgoingMessage(topic="customer-emails", data=json.dumps({"order_id": "o-1", "é": "ü"}).encode(),
                              ordering_key=ordering_key, attributes={"message_key": "k-1", "kind": "link"})
    headers, body = LocalPublisher(None, {}, project="p").build_event(message, "m-1", PUBLISHED)

    data = {"message": {"data": "eyJvcmRlcl9pZCI6ICJvLTEiLCAiXHUwMGU5IjogIlx1MDBmYyJ9",
                        "attributes": {"message_key": "k-1", "kind": "link"}, "messageId": "m-1",
                        "publishTime": "2026-12-02T13:58:25.625Z"},
            "subscription": "projects/p/subscriptions/local-customer-emails"}
    if ordering_key:
        data["message"]["orderingKey"] = ordering_key
    sdk_headers, sdk_body = to_binary(CloudEvent({
        "type": PUBSUB_EVENT_TYPE, "source": "//pubsub.googleapis.com/projects/p/topics/customer-emails",
        "id": "m-1", "time": "2026-12-02T13:58:25.625Z", "specversion": "1.0",
        "datacontenttype": "application/json"}, data), data_marshaller=json.dumps)

    assert headers == dict(sdk_headers)
    assert body == sdk_body
    event = from_http(headers, body)  # and the SDK reads it back, as functions-framework does
    assert event["id"] == "m-1" and event.data["message"]["attributes"]["message_key"] == "k-1"
