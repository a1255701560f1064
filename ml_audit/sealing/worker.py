"""A second process for the prediction row pass on PostgreSQL: the verifier hands it a share of
the predictions (an id range) and the snapshot its own transaction exported, so both processes
read one consistent view of the database.

The worker is ``python -m ml_audit.sealing.worker``: it reads a pickled :class:`Task` on stdin,
connects with psycopg 3 (no Django), opens a REPEATABLE READ READ ONLY transaction with
``SET TRANSACTION SNAPSHOT``, runs :func:`ml_audit.sealing.rowpass.copy_rows` over its range and
writes the pickled ``(rows, pending, report)`` to stdout. The parent merges the report into its
own (:meth:`~ml_audit.sealing.findings.Report.merge`), so findings are counted and their first
row chosen exactly as one process would.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_audit.sealing.findings import Report
from ml_audit.sealing.rowpass import State, copy_rows
from ml_audit.sealing.tables import BY_KIND

__all__ = ["Task", "Worker", "run"]


@dataclass
class Task:
    """What a worker checks: ``kind``'s rows after ``tail`` (member join and ``WHERE``)."""

    conninfo: str
    snapshot: str
    #: ``(name, value)`` session settings that change how values are written as text.
    settings: list[tuple[str, str]]
    state: State
    kind: int
    tail: str
    params: list[Any]


def run(task: Task) -> tuple[int, int, Report]:
    """Check the task's rows in the exported snapshot: ``(rows, rows not sealed yet, report)``."""
    import psycopg

    report = Report()
    with psycopg.connect(task.conninfo) as connection:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        with connection.cursor() as cursor:
            cursor.execute(
                psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(
                    psycopg.sql.Literal(task.snapshot)
                )
            )
            for name, value in task.settings:
                cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
            rows, pending = copy_rows(
                cursor, report, task.state, BY_KIND[task.kind], task.tail, task.params
            )
        connection.rollback()
    return rows, pending, report


class Worker:
    """One worker process running a :class:`Task`; :meth:`result` waits for its answer."""

    def __init__(self, task: Task) -> None:
        # The package's own directory first: the parent may have found it through sys.path.
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ml_audit.sealing.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(pickle.dumps(task))
        self.process.stdin.close()
        self.process.stdin = None

    def result(self) -> tuple[int, int, Report]:
        data, errors = self.process.communicate()
        if self.process.returncode != 0:
            raise RuntimeError(
                "the verifier's worker process failed: " + errors.decode("utf-8", "replace")
            )
        result: tuple[int, int, Report] = pickle.loads(data)
        return result

    def stop(self) -> None:
        """End the worker early (the parent failed); its transaction ends with it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def main() -> None:
    task = pickle.load(sys.stdin.buffer)
    result = run(task)
    sys.stdout.buffer.write(pickle.dumps(result))


if __name__ == "__main__":
    main()
