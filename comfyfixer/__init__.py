"""comfyfixer: find, download and verify every model file a folder of ComfyUI workflows needs."""

__version__ = "0.1.0"
