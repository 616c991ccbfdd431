import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # qbench
sys.path.insert(0, str(HERE.parents[2] / "trainer-image" / "src"))  # gradients_trainer (strategies)
