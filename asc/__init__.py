"""asc: acoustic scene classification."""

from asc import allocator

allocator.tune()  # before any tensor is allocated: large buffers from the heap, not fresh pages (asc/allocator.py)
