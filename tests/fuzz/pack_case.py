#!/usr/bin/env python3
"""Packs conformance case folders into fuzz_case_reader inputs (see fuzz_case_reader.cpp).

Usage: pack_case.py OUT_DIR CASE_DIR...   writes OUT_DIR/<case name>.bin per case folder.
"""
import os
import struct
import sys

FILES = ["case.json", "student.npy", "teacher.npy", "weak.npy", "labels.npy", "loss.npy",
         "grad_student.npy", "grad_weak.npy"]


def pack(case_dir):
    out = b""
    for index, name in enumerate(FILES):
        path = os.path.join(case_dir, name)
        if os.path.exists(path):
            data = open(path, "rb").read()
            out += bytes([index]) + struct.pack("<I", len(data)) + data
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    os.makedirs(sys.argv[1], exist_ok=True)
    for case_dir in sys.argv[2:]:
        name = os.path.basename(os.path.normpath(case_dir))
        with open(os.path.join(sys.argv[1], name + ".bin"), "wb") as f:
            f.write(pack(case_dir))


if __name__ == "__main__":
    main()
