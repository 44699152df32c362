#!/usr/bin/env python3
"""examples/hello.py with tests/interop/exit_marks.py imported: marks in the file named by
EXIT_MARKS whether its atexit functions ran and whether the interpreter's teardown did."""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "..", "..", "examples"))
sys.path.insert(0, os.path.join(here, "..", "interop"))
import exit_marks  # noqa: E402,F401
import hello  # noqa: E402

hello.main()
