"""Inference layer: embedder, generator backends, prompts, fusion, search and ``Reinforced_IR_Model``."""
from .embedder import Embedder, EmbedderConfig
from .errors import GeneratorError, UserError
from .fusion import fuse_embeddings
from .generators import Generator, load_generator
from .ir_model import Reinforced_IR_Model
from .resolver import resolve_model_path

__all__ = ["Embedder", "EmbedderConfig", "Generator", "GeneratorError", "Reinforced_IR_Model", "UserError",
           "fuse_embeddings", "load_generator", "resolve_model_path"]
