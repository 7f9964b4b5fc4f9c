import sys
from pathlib import Path

# Test helpers (pyinfra_fixtures) live beside the tests; the repo root holds facts/ and operations/.
sys.path.insert(0, str(Path(__file__).parent))
