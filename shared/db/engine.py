"""Engine construction: DATABASE_URL through pg8000, else the Cloud SQL connector."""

from __future__ import annotations

import atexit
import logging

import sqlalchemy
from sqlalchemy.engine import Engine

from shared.config import Settings
from shared.errors import ConfigError

log = logging.getLogger(__name__)


def make_engine(settings: Settings) -> Engine:
    """A small pre-pinged pool, disposed at interpreter exit."""
    common = dict(
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        isolation_level="AUTOCOMMIT",  # see shared.db.database.Database
        pool_recycle=1800,
        pool_timeout=10,
        hide_parameters=True,  # keep customer data out of error messages and logs
    )
    if settings.database_url:
        engine = sqlalchemy.create_engine(
            settings.database_url,
            connect_args={"timeout": 5, "application_name": "verification"},
            **common,
        )
    else:
        engine = sqlalchemy.create_engine(
            "postgresql+pg8000://", creator=_cloud_sql_creator(settings), **common
        )
    atexit.register(engine.dispose)
    return engine


def _cloud_sql_creator(settings: Settings):
    """Connection factory for Cloud SQL; the connector is made on first connect."""
    connector = None

    def connect():
        nonlocal connector
        if connector is None:
            connector = _make_connector()
            atexit.register(connector.close)
        return connector.connect(
            settings.instance_connection_name,
            "pg8000",
            user=settings.db_user,
            password=None if settings.db_iam_auth else settings.db_password,
            db=settings.db_name,
            enable_iam_auth=settings.db_iam_auth,
        )

    return connect


def _make_connector():
    import google.auth.exceptions
    from google.cloud.sql.connector import Connector, RefreshStrategy

    try:
        return Connector(refresh_strategy=RefreshStrategy.LAZY)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise ConfigError(
            "INSTANCE_CONNECTION_NAME",
            "the Cloud SQL connector found no Google credentials "
            "(set DATABASE_URL for a local database, or run with a service account)",
        ) from exc
