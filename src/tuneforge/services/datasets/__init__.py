"""Datasets on the server: folders, uploads and zip extraction, all confined to the datasets root.

- `paths`: what a path or a name may be, and how a location resolves inside the root;
- `multipart`: a streaming multipart reader; `uploads`: one upload request; `zipfiles`: safe extraction;
- `files`: temporary files, image checks, names that never overwrite; `report`: the per-file report;
- `folders`: create and browse.
"""

from tuneforge.services.datasets.folders import browse, create_folder
from tuneforge.services.datasets.uploads import UploadSession
from tuneforge.services.datasets.zipfiles import ZipLimits

__all__ = ["UploadSession", "ZipLimits", "browse", "create_folder"]
