"""Small local servers that stand in for third-party services in tests (127.0.0.1 only)."""

from tests.fakes.http_server import FakeHttpServer, RecordedRequest, Reply, refused_url

__all__ = ["FakeHttpServer", "RecordedRequest", "Reply", "refused_url"]
