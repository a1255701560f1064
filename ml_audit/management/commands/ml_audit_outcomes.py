"""``manage.py ml_audit_outcomes FILE``: record observed outcomes from a CSV or JSON lines file.

The file is streamed and stored in batches (``--batch-size`` lines, one transaction each); see
:mod:`ml_audit.outcomes.bulk` for the formats. Each bad line is reported on stderr with its
line number and nothing of it is stored; the other lines are. Running it again on the same file
adds nothing (the lines are counted as already recorded). Exits with status 1 when a line was
bad, 2 when the file cannot be read at all (nothing stored then). ``--dry-run`` checks every
line and looks its prediction up without storing anything. A progress bar is drawn on stderr
when stdout is a terminal.
"""

from __future__ import annotations

import getpass
import json
import socket
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_audit.conf import resolve_alias
from ml_audit.exceptions import InvalidRecord
from ml_audit.outcomes.bulk import (
    DEFAULT_BATCH_SIZE,
    FORMATS,
    ImportFileError,
    format_of,
    import_outcomes,
)
from ml_audit.sealing.progress import ProgressBar

#: Bad lines printed one by one; past that, only their count (the rest are in --json).
SHOWN_BAD_LINES = 1000


class Command(BaseCommand):
    help = "Record observed outcomes of predictions from a CSV or JSON lines file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The file: .csv, or .jsonl / .ndjson (JSON lines).")
        parser.add_argument(
            "--format", choices=FORMATS, default=None, help="Default: from the file's extension."
        )
        parser.add_argument(
            "--source", default="", help="Source of lines that name none (e.g. the system)."
        )
        parser.add_argument(
            "--by", default=None, help="Who records them, for the record (default: user@host)."
        )
        parser.add_argument(
            "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Lines per transaction."
        )
        parser.add_argument("--dry-run", action="store_true", help="Check only; store nothing.")
        parser.add_argument("--database", default=None, help="Alias (default: ML_AUDIT's).")
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        file_format = options["format"] or format_of(path.name)
        if file_format is None:
            raise CommandError(
                f"cannot tell the format of {path.name!r} from its extension: give --format "
                f"({' or '.join(FORMATS)})",
                returncode=2,
            )
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be >= 1", returncode=2)
        recorded_by = options["by"] or f"{getpass.getuser()}@{socket.gethostname()}"
        bar = None
        try:
            with path.open("rb") as stream:
                if self.stdout.isatty():
                    bar = ProgressBar(sys.stderr, total=_count_lines(stream), label="outcomes")
                    stream.seek(0)
                try:
                    result = import_outcomes(
                        stream,
                        format=file_format,
                        source=options["source"],
                        recorded_by=recorded_by,
                        batch_size=options["batch_size"],
                        dry_run=options["dry_run"],
                        using=resolve_alias(options["database"]),
                        progress=bar.advance if bar is not None else None,
                    )
                finally:
                    if bar is not None:
                        bar.close()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}", returncode=2) from exc
        except (ImportFileError, InvalidRecord) as exc:
            raise CommandError(f"{path.name}: {exc}; nothing was stored", returncode=2) from exc
        if options["json"]:
            self.stdout.write(json.dumps(result.as_json(), indent=2))
        else:
            for bad in result.bad[:SHOWN_BAD_LINES]:
                self.stderr.write(f"{path.name}: {bad}")
            if len(result.bad) > SHOWN_BAD_LINES:
                self.stderr.write(
                    f"... and {len(result.bad) - SHOWN_BAD_LINES:,} more bad lines (--json "
                    "lists them all)"
                )
            verb = "would record" if result.dry_run else "recorded"
            self.stdout.write(
                f"{path.name}: {result.lines:,} lines: {verb} {result.recorded:,}, already "
                f"recorded {result.already_recorded:,}, bad {len(result.bad):,}."
                + (" Dry run: nothing was stored." if result.dry_run else "")
            )
        if result.bad:
            sys.exit(1)


def _count_lines(stream: Any) -> int:
    """The file's lines, counted in blocks (for the progress bar's total)."""
    lines = 0
    last = b""
    while block := stream.read(1 << 20):
        lines += block.count(b"\n")
        last = block
    return lines + (1 if last and not last.endswith(b"\n") else 0)
