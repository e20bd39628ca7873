"""Edit models' training pairs: each edit image's references, found by name in the conditioning datasets it links.

Pairs match by `pair_key` (the path relative to the dataset folder, without extension), the same function the
server's dataset check uses. `reference_strict` crops the reference with the edit image's own plan (same resize,
same box), so the two stay aligned pixel for pixel; `reference_loose` gives the reference a bucket of its own.
An edit image without a reference in every linked set is skipped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.buckets import Plan, TooSmall, plan_image
from tuneforge.data.discovery import ImageItem, discover
from tuneforge.options.dataloader import by_pair_key, pair_key, same_aspect


@dataclass
class Reference:
    dataset_id: str  # the conditioning dataset
    path: Path
    plan: Plan
    latent_key: str = ""


class Partners:
    """The images of one conditioning dataset, by pair key."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        found = discover(dataset)
        root = Path(dataset.instance_data_dir).expanduser()
        keyed, shared = by_pair_key(root, [item.path for item in found.items])
        items = {item.path: item for item in found.items}
        self.by_key: dict[str, ImageItem] = {key: items[path] for key, path in keyed.items() if key not in shared}
        self.skipped = found.skipped + [(str(keyed[key]), f"another image in '{dataset.id}' has the name {key} too")
                                        for key in shared]

    def reference_for(self, edit: ImageItem, edit_root: Path, plan: Plan, options: Any) -> Reference | str:
        """The reference of `edit` in this dataset, or why there is none."""
        item = self.by_key.get(pair_key(edit_root, edit.path))
        if item is None:
            return f"no reference of the same name in '{self.dataset.id}'"
        if self.dataset.conditioning_type == "reference_strict":
            if not same_aspect((edit.width, edit.height), (item.width, item.height)):
                return (f"reference_strict: its reference {item.path.name} is {item.width}x{item.height}, another "
                        f"aspect ratio than {edit.width}x{edit.height}; use reference_loose or crop them alike")
            return Reference(self.dataset.id, item.path, plan)
        try:
            return Reference(self.dataset.id, item.path, plan_image(item.width, item.height, self.dataset, options,
                                                                    item.path.name))
        except TooSmall as exc:
            return f"its reference {item.path.name}: {exc}"
