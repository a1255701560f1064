#!/usr/bin/env python
"""The ml_audit demo site. Start here: ``python examples/demo/manage.py demo``."""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    # The demo's own package, and the repository (for ml_audit when it is not installed).
    sys.path[:0] = [str(here), str(here.parent.parent)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
