"""The engine's reader of .awqe files: C++ validation and zero-copy tensor views (see
cpp/include/awq_edge/model_file.h), with the metadata as a Python dict."""
import json

from ._awq_edge import ModelFile as _ModelFile
from ._awq_edge import ModelFileError

__all__ = ["ModelFile", "ModelFileError"]


class ModelFile(_ModelFile):
    """ModelFile(path, verify_checksums=True): a validated, memory-mapped .awqe file."""

    @property
    def metadata(self) -> dict:
        """The metadata JSON, parsed (docs/FORMAT.md section 3)."""
        return json.loads(self.metadata_json)
