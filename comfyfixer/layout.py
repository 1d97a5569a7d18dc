"""Where models go in this install: folder key -> directories, the download target of each key, and the
safe destination of a name.

`Layout.load` replicates ComfyUI's folder registry offline (comfyui-formats.md §2, §5): the default
directories of every key (`folders.py`), every sub-folder of `<root>/models` as a key,
`extra_model_paths.yaml` sections and the output-dir extras. `destination()` is the one place a
model's final path is decided, and it never leaves the models folders.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyfixer import folders
from comfyfixer.errors import ComfyUIRootError, ExtraPathsError, InputError, UnsafePathError
from comfyfixer.safe_names import safe_relative_name
from comfyfixer.tree import is_ignored

# Where ComfyUI's save nodes write merged models (main.py adds them as extra, non-default paths).
OUTPUT_EXTRAS = {
    "checkpoints": "output/checkpoints",
    "text_encoders": "output/clip",
    "vae": "output/vae",
    "diffusion_models": "output/diffusion_models",
    "loras": "output/loras",
}
# YAML keys that name non-model folders.
NON_MODEL_KEYS = frozenset({"custom_nodes", "base_path", "is_default"})


def _abs(path: Path) -> str:
    return os.path.normpath(os.path.abspath(path))


def is_under(path: str, root: str) -> bool:
    """Whether `path` is inside `root` and reachable by a walk of `root` (no hidden component between)."""
    if path == root:
        return True
    prefix = root.rstrip(os.sep) + os.sep
    if not path.startswith(prefix):
        return False
    return not any(part.startswith(".") for part in path[len(prefix) :].split(os.sep))


@dataclass(slots=True)
class _Registry:
    """Folder key -> ordered directories, and the `is_default` target of each key."""

    dirs: dict[str, list[str]] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, path: str, *, is_default: bool = False) -> None:
        key = folders.canonical(key)
        paths = self.dirs.setdefault(key, [])
        if path in paths:
            if is_default:
                paths.remove(path)
                paths.insert(0, path)
        elif is_default:
            paths.insert(0, path)
        else:
            paths.append(path)
        if is_default:
            self.targets.setdefault(key, path)


def _yaml_error(path: Path, line: int | None, what: str) -> ExtraPathsError:
    return ExtraPathsError(str(path), what, line=line)


def _load_yaml(path: Path, registry: _Registry) -> None:
    """Apply one extra_model_paths.yaml with the rules of ComfyUI's `utils/extra_config.py`."""
    import yaml  # only when a YAML file exists: keeps the scan's start-up lean

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}", path=str(path)) from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return
        if not isinstance(root, yaml.MappingNode):
            raise _yaml_error(path, root.start_mark.line + 1, "expected sections of `key: path` entries")
        yaml_dir = os.path.dirname(os.path.abspath(path))
        for section_key, section in root.value:
            if isinstance(section, yaml.ScalarNode) and loader.construct_object(section) is None:
                continue  # an empty section is skipped, as ComfyUI does
            if not isinstance(section, yaml.MappingNode):
                name = loader.construct_object(section_key)
                raise _yaml_error(
                    path, section.start_mark.line + 1, f"section {name!r} must hold `key: path` entries"
                )
            entries: list[tuple[str, Any, int]] = []
            for key_node, value_node in section.value:
                key = loader.construct_object(key_node)
                entries.append(
                    (str(key), loader.construct_object(value_node, deep=True), key_node.start_mark.line + 1)
                )
            _apply_section(path, yaml_dir, entries, registry)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        context = getattr(exc, "context_mark", None)
        # An unclosed bracket or quote is only noticed at the end of the file: point where it opened.
        if context is not None and (mark is None or mark.line >= len(text.splitlines())):
            mark = context
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _yaml_error(
            path, mark.line + 1 if mark is not None else None, f"not valid YAML: {problem}"
        ) from exc
    finally:
        loader.dispose()


def _apply_section(
    path: Path, yaml_dir: str, entries: list[tuple[str, Any, int]], registry: _Registry
) -> None:
    values = {key: (value, line) for key, value, line in entries}
    base = _base_path(path, yaml_dir, values)
    is_default = False
    if "is_default" in values:
        flag, line = values["is_default"]
        if not isinstance(flag, bool):
            raise _yaml_error(path, line, "is_default must be true or false")
        is_default = flag
    for key, (value, line) in values.items():
        if key in NON_MODEL_KEYS:
            continue
        if value is None:
            continue
        if not isinstance(value, str):
            raise _yaml_error(
                path,
                line,
                f"{key!r} must be a path or a `|` block with one path per line (lists are not read)",
            )
        for raw_line in value.split("\n"):
            entry = raw_line.strip()
            if not entry:
                continue
            full = os.path.join(base, entry) if base else entry
            if not os.path.isabs(full):
                full = os.path.join(yaml_dir, full)
            registry.add(key, os.path.normpath(full), is_default=is_default)


def _base_path(path: Path, yaml_dir: str, values: dict[str, tuple[Any, int]]) -> str | None:
    """A section's `base_path`, `~` and variables expanded, relative to the YAML file's folder."""
    if "base_path" not in values:
        return None
    raw, line = values["base_path"]
    if not isinstance(raw, str):
        raise _yaml_error(path, line, "base_path must be a path")
    base = os.path.expandvars(os.path.expanduser(raw.strip()))
    return base if os.path.isabs(base) else os.path.join(yaml_dir, base)


def _checked_root(comfyui_root: Path) -> Path:
    """The ComfyUI folder, `~` expanded, once it is a readable folder holding `models/`."""
    root = Path(os.path.expanduser(str(comfyui_root)))
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise ComfyUIRootError(str(root), f"ComfyUI folder {comfyui_root} {what}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ComfyUIRootError(str(root), f"ComfyUI folder {comfyui_root} is not readable")
    if not (root / "models").is_dir():
        raise ComfyUIRootError(
            str(root),
            f"{comfyui_root} has no models/ folder, so it does not look like a ComfyUI install",
            models_dir_given=root.name == "models" and (root / "checkpoints").is_dir(),
        )
    return root


class Layout:
    """The folders of one ComfyUI install: the directories of each folder key, and where a new file goes."""

    def __init__(self, root: Path, registry: _Registry, models_dir: str) -> None:
        self.root = root
        self._registry = registry
        self.models_dir = models_dir
        self._targets: dict[str, Path] = {}
        self.top_dirs = self._top_roots()

    @classmethod
    def load(cls, comfyui_root: Path, extra_yaml: Sequence[Path] = ()) -> Layout:
        """Read the folders of the install at `comfyui_root` (plus any extra YAML files)."""
        root = _checked_root(comfyui_root)
        models = root / "models"
        root_abs = _abs(root)
        models_abs = _abs(models)
        registry = _Registry()
        for key in folders.DEFAULT_DIRS:
            for rel in folders.default_dirs(key):
                registry.add(key, os.path.join(root_abs, *rel.split("/")))
        # Every sub-folder of models/ is a folder key to ComfyUI once a pack registers it; treat it as one.
        try:
            with os.scandir(models_abs) as it:
                subdirs = sorted(e.name for e in it if not is_ignored(e.name) and e.is_dir())
        except OSError as exc:
            raise InputError(f"cannot list {models}: {exc.strerror or exc}", path=str(models)) from exc
        for name in subdirs:
            key = folders.canonical(name)
            path = os.path.join(models_abs, name)
            if path not in registry.dirs.get(key, ()):
                registry.add(key, path)
        own_yaml = root / "extra_model_paths.yaml"
        if own_yaml.is_file():
            _load_yaml(own_yaml, registry)
        for yaml_path in extra_yaml:
            if not yaml_path.is_file():
                raise InputError(f"extra model paths file {yaml_path} does not exist", path=str(yaml_path))
            _load_yaml(yaml_path, registry)
        for key, rel in OUTPUT_EXTRAS.items():
            registry.add(key, os.path.join(root_abs, *rel.split("/")))
        return cls(root, registry, models_abs)

    def _top_roots(self) -> list[str]:
        """The smallest set of directories whose walks cover every directory of every key."""
        candidates = {self.models_dir}
        for paths in self._registry.dirs.values():
            candidates.update(paths)
        tops: list[str] = []
        for path in sorted(candidates, key=len):
            if not any(is_under(path, top) for top in tops):
                tops.append(path)
        return tops

    @property
    def keys(self) -> list[str]:
        """Every folder key this install registers (canonical names), in registration order."""
        return list(self._registry.dirs)

    def dir_paths(self, directory_key: str) -> list[str]:
        """Every directory of a folder key (aliases accepted), in ComfyUI's lookup order."""
        key = folders.canonical(directory_key)
        paths = self._registry.dirs.get(key)
        if paths is None:  # a key nothing registered: ComfyUI would look in models/<key>
            paths = [os.path.join(self.models_dir, *key.split("/"))]
        return paths

    def target_dir(self, directory_key: str) -> Path:
        """Where a new file of this key is downloaded: the first `is_default` YAML dir, else models/<key>."""
        # Asked once per planned model, for a few dozen keys; the registry never changes.
        found = self._targets.get(directory_key)
        if found is None:
            found = self._targets[directory_key] = self._target_dir(folders.canonical(directory_key))
        return found

    def _target_dir(self, key: str) -> Path:
        target = self._registry.targets.get(key)
        if target is not None:
            return Path(target)
        return Path(_abs(self.root)).joinpath(*folders.download_dir(key).split("/"))

    @property
    def models_roots(self) -> list[Path]:
        """Every directory tree that holds models; a download path must stay inside one of them."""
        return [Path(p) for p in self.top_dirs]

    def destination(self, directory_key: str, name: str) -> Path:
        """The absolute path where `name` goes for this key, proven to stay inside the models folders."""
        return safe_destination(self.target_dir(directory_key), self.models_roots, name)


def is_within(path: Path, root: Path) -> bool:
    """Whether `path` is `root` or below it (both taken as given: resolve them first if needed)."""
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _lexical_abs(path: Path) -> Path:
    return Path(os.path.normpath(path.absolute()))


def safe_destination(target_dir: Path, models_roots: Sequence[Path], name: str) -> Path:
    """The absolute path where `name` goes under `target_dir`, proven to stay inside the models roots.

    `target_dir` itself must lie inside one of `models_roots` (lexically). The resolved result must
    stay inside a resolved root, or inside the resolved `target_dir`: a model folder that is itself a
    symlink to another disk is a common, deliberate setup, while a symlink further down the name's
    sub-folders may not lead anywhere else.
    """
    rel = safe_relative_name(name)
    if not models_roots:
        raise UnsafePathError(name, "no models folder is configured")
    target = _lexical_abs(target_dir)
    roots = [_lexical_abs(r) for r in models_roots]
    if not any(is_within(target, r) for r in roots):
        raise UnsafePathError(name, f"the target folder {target} is not inside a models folder")
    dest = target.joinpath(*rel.parts)
    resolved = dest.resolve(strict=False)
    allowed = [target.resolve(strict=False), *(r.resolve(strict=False) for r in roots)]
    if not any(is_within(resolved, a) and resolved != a for a in allowed):
        raise UnsafePathError(name, f"the path resolves to {resolved}, outside the models folders")
    return dest
