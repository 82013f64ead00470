"""Vector search: FAISS indexes behind one small class."""

from fewshot.index.vector_index import VectorIndex

__all__ = ["VectorIndex"]
