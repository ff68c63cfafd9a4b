"""The back end of the compiler: passes over a BuildPlan that end in a stored model.

- `request_from_modelfile(modelfile)` -> `CreateRequest` (what the Modelfile asks for)
- `build(store, name, request, progress=...)` -> `BuildResult` (manifest, new blobs)
- `build_modelfile(store, name, modelfile, progress=...)`: both in one call
"""

from toolchain.build.driver import PIPELINE, build, build_modelfile
from toolchain.build.errors import BuildError
from toolchain.build.plan import BuildPlan, BuildResult, PlannedLayer
from toolchain.build.request import CreateRequest, SourceDir, SourceFile, request_from_modelfile

__all__ = [
    "PIPELINE",
    "BuildError",
    "BuildPlan",
    "BuildResult",
    "CreateRequest",
    "PlannedLayer",
    "SourceDir",
    "SourceFile",
    "build",
    "build_modelfile",
    "request_from_modelfile",
]
