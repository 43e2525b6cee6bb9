"""One result type for every use case: an enum status, a plain-text body for HTTP answers."""

from __future__ import annotations

import json

from shared.handlers.result import Result, ResultStatus


def test_a_result_answers_with_its_status_as_text():
    result = Result(ResultStatus.DUPLICATE, "o-1", "event already received")

    assert json.loads(json.dumps(result.to_dict())) == {"status": "duplicate", "orderId": "o-1",
                                                        "detail": "event already received"}
    assert str(result) == "duplicate (event already received)"
    assert not result.accepted and Result(ResultStatus.ACCEPTED).accepted
