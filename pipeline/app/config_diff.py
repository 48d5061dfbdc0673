"""What a config reload (SIGHUP) changes: cameras can be added, removed and changed live;
every other section (model, scheduler, publish, ...) is built once at start and needs a restart.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import CameraConfig, PipelineConfig


@dataclass(frozen=True)
class ConfigChange:
    added: tuple[CameraConfig, ...]
    removed: tuple[str, ...]
    changed: tuple[CameraConfig, ...]  # the new settings of cameras that restart
    unchanged: tuple[str, ...]
    needs_restart: tuple[str, ...]  # top-level sections that differ but only apply at start
    applied: PipelineConfig  # the running config with the new cameras: what runs after the reload

    @property
    def cameras_changed(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        def ids(cams: tuple[CameraConfig, ...] | tuple[str, ...]) -> str:
            names = [c if isinstance(c, str) else c.id for c in cams]
            return f" ({', '.join(names)})" if names else ""
        return (f"{len(self.added)} added{ids(self.added)}, {len(self.removed)} removed{ids(self.removed)}, "
                f"{len(self.changed)} restarted{ids(self.changed)}, {len(self.unchanged)} unchanged")


def diff_configs(running: PipelineConfig, new: PipelineConfig) -> ConfigChange:
    old_cams = {c.id: c for c in running.cameras}
    new_cams = {c.id: c for c in new.cameras}
    added = tuple(c for cid, c in new_cams.items() if cid not in old_cams)
    removed = tuple(cid for cid in old_cams if cid not in new_cams)
    changed = tuple(c for cid, c in new_cams.items() if cid in old_cams and old_cams[cid] != c)
    unchanged = tuple(cid for cid, c in new_cams.items() if cid in old_cams and old_cams[cid] == c)
    sections = tuple(name for name in type(running).model_fields
                     if name != "cameras" and getattr(running, name) != getattr(new, name))
    applied = running.model_copy(update={"cameras": list(new.cameras)})
    return ConfigChange(added, removed, changed, unchanged, sections, applied)
