"""The example script runs, and its two loss columns agree."""
import os
import re
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "train_nkd.py")


def test_example_trains_and_the_columns_agree():
    out = subprocess.run([sys.executable, EXAMPLE, "--steps", "5", "--classes", "50", "--batch", "32"],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    assert "fused NKD" in out and "training time" in out
    worst = float(re.search(r"relative difference between the two loss columns: (\S+)", out).group(1))
    assert worst < 1e-5
