"""Finding each missing model online: hints, catalogues, Hugging Face, Civitai (see finder.py)."""
