"""Reading patterns and scans in the community's formats; writing what their tools open."""

from diffractnet.io.patterns import load_pattern_image, prepare_for_model

__all__ = ["load_pattern_image", "prepare_for_model"]
