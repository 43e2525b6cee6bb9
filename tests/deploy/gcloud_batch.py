"""Run many gcloud command lines in one process, through the real CLI.

Usage (with the Python that gcloud itself uses, e.g. inside `unshare -n`):
    python gcloud_batch.py SDK_LIB_DIR < commands.json > verdicts.json

commands.json is a list of argv lists (each starting with "gcloud"). For
each, the real CLI object built once by googlecloudsdk.gcloud_main parses
and runs the arguments exactly as the `gcloud` command would (gcloud's own
test suite runs many commands per process the same way); everything written
to stdout and stderr, at file-descriptor level, and the exit code are
recorded. Starting gcloud costs about a second of CPU, so batching keeps the
argument check of a few hundred commands fast.
"""

import json
import os
import sys
import tempfile


def main():
    lib = sys.argv[1]
    sys.path.insert(0, lib)
    sys.path.insert(0, os.path.join(lib, "third_party"))
    from googlecloudsdk import gcloud_main  # noqa: E402 (needs the path above)
    from googlecloudsdk.core.credentials import creds_context_managers  # noqa: E402

    commands = json.load(sys.stdin)
    real_stdout = os.dup(1)
    real_stderr = os.dup(2)
    cli = gcloud_main.CreateCLI([])
    # As gcloud_main.main does around every command: the credential providers
    # and service account impersonation (--impersonate-service-account).
    with creds_context_managers.CredentialProvidersManager():
        verdicts = run_all(cli, commands, real_stdout, real_stderr)
    os.write(real_stdout, json.dumps(verdicts).encode())


def run_all(cli, commands, real_stdout, real_stderr):
    verdicts = []
    for argv in commands:
        with tempfile.TemporaryFile() as capture:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(capture.fileno(), 1)
            os.dup2(capture.fileno(), 2)
            code = 0
            try:
                cli.Execute(argv[1:])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException as error:  # report, never stop the batch
                code = -2
                print("batch runner caught %r" % (error,), file=sys.stderr)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(real_stdout, 1)
                os.dup2(real_stderr, 2)
            capture.seek(0)
            output = capture.read().decode("utf-8", "replace")
        verdicts.append({"argv": argv, "returncode": code, "output": output})
    return verdicts


if __name__ == "__main__":
    main()
