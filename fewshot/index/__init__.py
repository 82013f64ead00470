"""Vector search: FAISS indexes behind one small class, and large indexes saved to a folder."""

from fewshot.index.saved import (
    FILES,
    SavedIndex,
    build_index,
    index_info,
    load_index,
    search_index,
)
from fewshot.index.vector_index import VectorIndex

__all__ = ["FILES", "SavedIndex", "VectorIndex", "build_index", "index_info", "load_index",
           "search_index"]
