"""The demo site's package (examples/demo/demo_site) importable by its tests."""

import sys
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"
if str(DEMO_DIR) not in sys.path:
    sys.path.insert(0, str(DEMO_DIR))
