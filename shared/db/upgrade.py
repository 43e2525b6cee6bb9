"""The deploy step that owns the schema: migrate it, then apply the grants.

    python -m shared.db.upgrade [--member FUNCTION=DBUSER ...]

Runs as the schema's owner (deploy.sh: the migrator's IAM database user),
connecting like the functions do (DATABASE_URL, else the Cloud SQL
connector from INSTANCE_CONNECTION_NAME, DB_NAME, DB_USER, DB_IAM_AUTH /
DB_PASSWORD from the environment, never from the command line). Each
--member makes a function's login user a member of that function's role
(shared/db/grants.py). Prints the schema version; exits 1 naming what failed.
"""

from __future__ import annotations

import argparse
import sys

from shared.config import ConfigError, DatabaseSettings
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.grants import GRANTS, apply_grants
from shared.db.migrate import ensure_schema



def members_of(pairs: list[str]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for pair in pairs:
        function, _, user = pair.partition("=")
        if function not in GRANTS or not user:
            raise ValueError(f"--member {pair!r}: expected FUNCTION=DBUSER, FUNCTION one of {', '.join(GRANTS)}")
        members.setdefault(function, []).append(user)
    return members


def upgrade(settings: DatabaseSettings, members: dict[str, list[str]]) -> int:
    """Migrate the schema and apply the grants in one transaction; return the version."""
    database = Database(make_engine(settings))
    try:
        version = ensure_schema(database)
        with database.transaction() as conn:
            apply_grants(conn, members)
        return version
    finally:
        database.engine.dispose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.db.upgrade", description=__doc__.split("\n")[0])
    parser.add_argument("--member", action="append", default=[], metavar="FUNCTION=DBUSER")
    args = parser.parse_args(argv)
    try:
        members = members_of(args.member)
        # Only the database section: the deploy host needs none of the functions' settings.
        settings = DatabaseSettings.for_schema_owner()
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        version = upgrade(settings, members)
    except Exception as exc:  # the message text may hold data: name the kind only
        print(f"error: migrate/grants failed ({type(exc).__name__})", file=sys.stderr)
        return 1
    print(f"schema version {version}; grants applied for {', '.join(GRANTS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
