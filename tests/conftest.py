import sys
from pathlib import Path

# tests/printed.py and friends are plain helper modules next to the tests.
sys.path.insert(0, str(Path(__file__).parent))
