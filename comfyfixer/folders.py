"""ComfyUI's model folder keys, as `folder_paths.py` defines them, plus the keys common packs register.

Pure data and two lookups: the canonical key for an alias, and the default directories of a key
(relative to the ComfyUI root).
"""

from __future__ import annotations

PT_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})
# What the scan treats as a model file anywhere (ComfyUI's set plus the formats packs load).
MODEL_EXTENSIONS = PT_EXTENSIONS | frozenset({".gguf", ".onnx", ".engine", ".patch", ".torchscript"})

# Legacy and pack-specific names for the same folder.
ALIASES: dict[str, str] = {
    "clip": "text_encoders",
    "unet": "diffusion_models",
    "unet_gguf": "diffusion_models",
    "clip_gguf": "text_encoders",
    "t2i_adapter": "controlnet",
    "ultralytics_bbox": "ultralytics",
    "ultralytics_segm": "ultralytics",
}

# key -> default directories relative to the ComfyUI root (first = default download target).
DEFAULT_DIRS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("models/checkpoints",),
    "configs": ("models/configs",),
    "loras": ("models/loras",),
    "vae": ("models/vae",),
    "text_encoders": ("models/text_encoders", "models/clip"),
    "diffusion_models": ("models/diffusion_models", "models/unet"),
    "clip_vision": ("models/clip_vision",),
    "style_models": ("models/style_models",),
    "embeddings": ("models/embeddings",),
    "diffusers": ("models/diffusers",),
    "vae_approx": ("models/vae_approx",),
    "controlnet": ("models/controlnet", "models/t2i_adapter"),
    "gligen": ("models/gligen",),
    "upscale_models": ("models/upscale_models",),
    "latent_upscale_models": ("models/latent_upscale_models",),
    "hypernetworks": ("models/hypernetworks",),
    "photomaker": ("models/photomaker",),
    "classifiers": ("models/classifiers",),
    "model_patches": ("models/model_patches",),
    "audio_encoders": ("models/audio_encoders",),
    "background_removal": ("models/background_removal",),
    "frame_interpolation": ("models/frame_interpolation",),
    "geometry_estimation": ("models/geometry_estimation",),
    "optical_flow": ("models/optical_flow",),
    "detection": ("models/detection",),
    # Keys registered by widely used custom node packs.
    "ipadapter": ("models/ipadapter",),
    "animatediff_models": ("models/animatediff_models",),
    "animatediff_motion_lora": ("models/animatediff_motion_lora",),
    "sams": ("models/sams",),
    "sam2": ("models/sam2",),
    "ultralytics": ("models/ultralytics",),
    "onnx": ("models/onnx",),
    "instantid": ("models/instantid",),
    "pulid": ("models/pulid",),
    "insightface": ("models/insightface",),
    "facerestore_models": ("models/facerestore_models",),
    "inpaint": ("models/inpaint",),
    "xlabs_loras": ("models/xlabs/loras",),
    "xlabs_controlnets": ("models/xlabs/controlnets",),
    "xlabs_ipadapters": ("models/xlabs/ipadapters",),
    "depthanything": ("models/depthanything",),
    "LLM": ("models/LLM",),
    "mmdets_bbox": ("models/mmdets/bbox",),
    "mmdets_segm": ("models/mmdets/segm",),
    "reactor": ("models/reactor",),
    "cogvideox_loras": ("models/CogVideo/loras",),
    "CogVideo_GGUF": ("models/CogVideo/GGUF",),  # DownloadAndLoadCogVideoGGUFModel's own folder
    "wav2vec2": ("models/wav2vec2",),
    "SEEDVR2": ("models/SEEDVR2",),
    "nlf": ("models/nlf",),
    "tensorrt": ("models/tensorrt",),
}


def canonical(key: str) -> str:
    """The canonical folder key for a key or alias (`clip` -> `text_encoders`)."""
    return ALIASES.get(key, key)


def default_dirs(key: str) -> tuple[str, ...]:
    """Directories (relative to the ComfyUI root) where files of `key` live by default."""
    key = canonical(key)
    return DEFAULT_DIRS.get(key, (f"models/{key}",))


def download_dir(key: str) -> str:
    """Where a new file of `key` goes: the directory named after the key when there is one."""
    dirs = default_dirs(key)
    for d in dirs:
        if d.rsplit("/", 1)[-1] == canonical(key):
            return d
    return dirs[0]


def is_model_file(name: str) -> bool:
    lowered = name.lower()
    dot = lowered.rfind(".")
    return dot > 0 and lowered[dot:] in MODEL_EXTENSIONS
