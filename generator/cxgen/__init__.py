"""cx-gen: the connectors schema generator.

Pipeline: load (descriptors from protoc) -> one immutable model (model.py) -> validate
everything and fail before writing anything (lint.py) -> render (render.py, one jinja2
template per output kind).
"""

VERSION = "0.1.0"

# Bumped whenever generated C changes shape; the runtime refuses stale output at compile time.
GEN_ABI = 1
