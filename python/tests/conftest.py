import os
import sys

# plain.py (the yardstick) sits beside the tests; fusedkd itself comes from the installed package.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
