"""Run gcloud-tasks-emulator 0.6.2 the way this project's tests need it.

Runs with the emulator's own interpreter (.local/tasks-emulator-venv), never
the project's: it imports nothing from the project. What it changes in the
stock emulator:

- binds 127.0.0.1 only (stock: every interface), on the port given (0 = a
  free one), and writes "127.0.0.1:PORT" to --ready-file once serving;
- CreateTask answers ALREADY_EXISTS for a name in use or used before in this
  run (stock: accepts duplicates). Real Cloud Tasks forgets a name about an
  hour after the task was deleted or executed; here it never does;
- GetTask and DeleteTask exist (stock: UNIMPLEMENTED), NOT_FOUND for a task
  that is not waiting;
- CreateQueue answers ALREADY_EXISTS for an existing queue and GetQueue
  NOT_FOUND for an unknown one (stock: returns the existing queue / fails
  with UNKNOWN);
- one lock around the queue state, so a DeleteTask cannot race the
  dispatcher thread (stock: a task deleted while the dispatcher walks its
  snapshot kills that queue's dispatcher thread, silently);
- outgoing deliveries time out after 10 s (stock: no timeout).

Usage: python tasks_emulator_launcher.py --ready-file PATH [--port N] [--max-retries N]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from gcloud_tasks_emulator import server as stock
from gcloud_tasks_emulator.cloudtasks_pb2_grpc import add_CloudTasksServicer_to_server
from google.api_core.exceptions import AlreadyExists, GoogleAPICallError, NotFound
from google.protobuf import empty_pb2

log = logging.getLogger("tasks-emulator-launcher")


class State(stock.QueueState):
    """The stock in-memory state, made thread-safe, with task-name tombstones."""

    def __init__(self, max_retries: int) -> None:
        super().__init__(stock.DEFAULT_TARGET_HOST, stock.DEFAULT_TARGET_PORT, max_retries)
        self._lock = threading.RLock()
        self._used_names: set[str] = set()

    def create_queue(self, parent, queue):
        with self._lock:
            if queue.name in self._queues:
                raise AlreadyExists(f"Queue already exists: {queue.name}")
            return super().create_queue(parent, queue)

    def queue(self, name):
        with self._lock:
            if name not in self._queues:
                raise NotFound(f"Queue not found: {name}")
            return super().queue(name)

    def create_task(self, queue, task):
        with self._lock:
            if task.name and task.name in self._used_names:
                raise AlreadyExists(f"Task already exists: {task.name}")
            created = super().create_task(queue, task)
            self._used_names.add(created.name)
            return created

    def get_task(self, name):
        with self._lock:
            for task in self._queue_tasks.get(self._queue_of(name), []):
                if task.name == name:
                    return task
            raise NotFound(f"Task not found: {name}")

    def delete_task(self, name):
        with self._lock:
            tasks = self._queue_tasks.get(self._queue_of(name), [])
            for index, task in enumerate(tasks):
                if task.name == name:
                    del tasks[index]
                    return
            raise NotFound(f"Task not found: {name}")

    def submit_task(self, task_name, force_run=False):
        # Held for the whole delivery, so DeleteTask returns either before the
        # task is taken for dispatch (never delivered) or after (NOT_FOUND).
        with self._lock:
            try:
                return super().submit_task(task_name, force_run)
            except NotFound:
                if force_run:
                    raise
                return None  # deleted after the dispatcher took its snapshot

    @staticmethod
    def _queue_of(task_name: str) -> str:
        return task_name.rsplit("/", 2)[0]


class Servicer(stock.Greeter):
    """The stock servicer plus GetTask and DeleteTask."""

    def GetTask(self, request, context):
        try:
            return self._state.get_task(request.name)
        except GoogleAPICallError as err:
            context.abort(err.grpc_status_code, err.message)

    def DeleteTask(self, request, context):
        try:
            self._state.delete_task(request.name)
            return empty_pb2.Empty()
        except GoogleAPICallError as err:
            context.abort(err.grpc_status_code, err.message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ready-file", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-retries", type=int, default=-1)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The stock emulator logs every task every 0.1 s at INFO while it waits.
    logging.getLogger("gcloud-tasks-emulator").setLevel(logging.WARNING)
    socket.setdefaulttimeout(10)

    state = State(args.max_retries)
    api = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                      options=[("grpc.so_reuseport", 0)])
    add_CloudTasksServicer_to_server(Servicer(state), api)
    port = api.add_insecure_port(f"127.0.0.1:{args.port}")
    if not port:
        log.error("could not bind 127.0.0.1:%s", args.port)
        return 1
    api.start()
    processor = stock.Processor(state)
    processor.start()

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    partial = args.ready_file.with_suffix(".partial")
    partial.write_text(f"127.0.0.1:{port}\n")
    partial.replace(args.ready_file)
    log.info("serving on 127.0.0.1:%s", port)

    while not stop.wait(0.5):
        pass
    log.info("stopping")
    api.stop(grace=0)
    processor.join(timeout=2)
    logging.shutdown()
    # The stock per-queue dispatcher threads are not daemons; do not wait on them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
