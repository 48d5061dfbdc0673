"""What a config reload (SIGHUP) changes: cameras can be added, removed and changed live;
every other section (model, scheduler, publish, ...) is built once at start and needs a restart.
A camera whose only change is its zones/lines (cameras[i].analytics) keeps running: the new rules
apply to its next frame, with no gap in seq and its tracks kept.
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
    rules_changed: tuple[CameraConfig, ...]  # only analytics (zones/lines) differ: applied live, no restart
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
                f"{len(self.changed)} restarted{ids(self.changed)}, {len(self.unchanged)} unchanged, "
                f"{len(self.rules_changed)} with new zones/lines{ids(self.rules_changed)}")


def diff_configs(running: PipelineConfig, new: PipelineConfig) -> ConfigChange:
    old_cams = {c.id: c for c in running.cameras}
    new_cams = {c.id: c for c in new.cameras}
    added = tuple(c for cid, c in new_cams.items() if cid not in old_cams)
    removed = tuple(cid for cid in old_cams if cid not in new_cams)

    def source_part(cam: CameraConfig) -> CameraConfig:
        return cam.model_copy(update={"analytics": None})

    changed = tuple(c for cid, c in new_cams.items()
                    if cid in old_cams and source_part(old_cams[cid]) != source_part(c))
    unchanged = tuple(cid for cid, c in new_cams.items() if cid in old_cams and old_cams[cid] == c)
    rules_changed = tuple(c for cid, c in new_cams.items() if cid in old_cams and old_cams[cid] != c
                          and source_part(old_cams[cid]) == source_part(c))
    sections = tuple(name for name in type(running).model_fields
                     if name != "cameras" and getattr(running, name) != getattr(new, name))
    applied = running.model_copy(update={"cameras": list(new.cameras)})
    return ConfigChange(added, removed, changed, unchanged, rules_changed, sections, applied)
