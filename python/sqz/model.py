"""Models and sessions: the Python face of sqz.h's model, tokenizer, running, perplexity,
conversion and quantization functions. Arrays in and out are numpy arrays."""
from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, byref, c_char_p, c_float, c_int32, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lib
from .errors import SqzError

Tokens = Union[np.ndarray, Sequence[int]]
Text = Union[str, bytes]

_PPL_MODES = {"sqz": 0, "llama.cpp": 1}


def _b(s: Optional[Union[str, bytes, "os.PathLike[str]"]]) -> Optional[bytes]:
    if s is None:
        return None
    if isinstance(s, bytes):
        return s
    return os.fsencode(s)


def _s(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else b.decode("utf-8", "replace")


def _tokens(ids: Tokens) -> np.ndarray:
    a = np.ascontiguousarray(ids, dtype=np.int32)
    if a.ndim != 1:
        raise ValueError("tokens must be one-dimensional, got shape %s" % (a.shape,))
    return a


def _ptr(a: np.ndarray) -> "ctypes._Pointer[c_int32]":
    return a.ctypes.data_as(POINTER(c_int32))


def version() -> str:
    """The loaded libsqz's version, "MAJOR.MINOR.PATCH"."""
    return _lib.lib().sqz_version().decode()


def _listing(name_fn: str, help_fn: str) -> List[Tuple[str, str]]:
    L = _lib.lib()
    out, i = [], 0
    while True:
        name = getattr(L, name_fn)(i)
        if not name:
            return out
        out.append((name.decode(), (getattr(L, help_fn)(i) or b"").decode()))
        i += 1


def kv_policies() -> List[Tuple[str, str]]:
    """The KV-cache policies (name, one-line help) that ``kv=`` specs are made of, e.g.
    ``"f16"``, ``"q4"``, ``"streaming:sink=4,window=60+q8"``."""
    return _listing("sqz_kv_policy_name", "sqz_kv_policy_help")


def quant_methods() -> List[Tuple[str, str]]:
    """The quantization methods (name, one-line help) that :meth:`Model.quantize` takes."""
    return _listing("sqz_quant_method_name", "sqz_quant_method_help")


@dataclass
class PplResult:
    """Perplexity over a text (and, with a base model, the KL divergence to it)."""
    ppl: float
    ppl_stderr: float
    nll: float            #: mean negative log-likelihood, nats
    tokens: int           #: tokens scored
    windows: int
    seconds: float
    kld: Optional[float] = None       #: mean KL(base || model), nats
    kld_p99: Optional[float] = None
    top1_agree: Optional[float] = None


@dataclass
class ConvertResult:
    """What :meth:`Model.convert` wrote."""
    file_bytes: int
    n_params: int
    bits_per_weight: float
    n_tensors: int
    n_fallback: int
    seconds: float


@dataclass
class QuantizeResult:
    """What :meth:`Model.quantize` wrote and what its calibration cost."""
    convert: ConvertResult
    calib_tokens: int
    calib_seconds: float
    quant_seconds: float
    mean_rel_err: float
    #: per quantized matrix: (name, type, relative output error on the calibration data)
    tensors: List[Tuple[str, str, float]]


@dataclass
class GenerateResult:
    """The generated text and its timings."""
    text: str
    n_prompt: int
    n_generated: int
    prompt_seconds: float
    gen_seconds: float


def _convert_result(r: _lib.ConvertResult) -> ConvertResult:
    return ConvertResult(int(r.file_bytes), int(r.n_params), float(r.bits_per_weight),
                         int(r.n_tensors), int(r.n_fallback), float(r.seconds))


class Model:
    """A model loaded by libsqz: a Hugging Face folder, a GGUF or sqzf file, or a llama2.c
    checkpoint (with ``tokenizer=`` its tokenizer.bin). Weights are memory-mapped.

    Each Model has its own sqz context (settings and last error), so use one Model per thread.
    Close it with :meth:`close` or a ``with`` block; it is also freed when collected.

    >>> m = Model("assets/stories260K/stories260K.bin", "assets/stories260K/tok512.bin")
    >>> m.logits(m.tokenize("Once upon a time")).shape
    (5, 512)
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"],
                 tokenizer: Optional[Union[str, "os.PathLike[str]"]] = None,
                 threads: int = 0) -> None:
        self._L = _lib.lib()
        self._ctx = c_void_p(self._L.sqz_ctx_new())
        self._m = c_void_p()
        if not self._ctx:
            raise MemoryError("sqz_ctx_new")
        if threads:
            self._L.sqz_ctx_set_threads(self._ctx, threads)
        self.path = os.fspath(path)
        self._check(self._L.sqz_model_load(self._ctx, _b(path), _b(tokenizer), byref(self._m)))
        info = _lib.ModelInfo()
        self._L.sqz_model_get_info(self._m, byref(info))
        self._info = {name: (_s(v) if isinstance(v, bytes) else v)
                      for name, v in ((f[0], getattr(info, f[0])) for f in info._fields_)}

    # ---- lifetime

    def close(self) -> None:
        """Frees the model and its context (further calls raise ValueError)."""
        if getattr(self, "_m", None):
            self._L.sqz_model_free(self._m)
            self._m = c_void_p()
        if getattr(self, "_ctx", None):
            self._L.sqz_ctx_free(self._ctx)
            self._ctx = c_void_p()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _live(self) -> c_void_p:
        if not self._m:
            raise ValueError("the model is closed")
        return self._m

    def _check(self, status: int) -> None:
        if status:
            raise SqzError(status, self._L.sqz_status_str(status).decode(),
                           _s(self._L.sqz_ctx_error(self._ctx)) or "")

    # ---- description

    @property
    def info(self) -> Dict[str, object]:
        """sqz_model_info as a dict: arch, format, weight_type, dim, n_layers, vocab_size,
        max_seq_len, bos_id, eos_id, n_params, weight_bytes, ..."""
        return dict(self._info)

    @property
    def vocab_size(self) -> int:
        return int(self._info["vocab_size"])  # type: ignore[arg-type]

    @property
    def threads(self) -> int:
        return int(self._L.sqz_ctx_threads(self._ctx))

    @threads.setter
    def threads(self, n: int) -> None:
        """Threads of this model's computations (<= 0: every online CPU)."""
        self._L.sqz_ctx_set_threads(self._ctx, n)

    def tensors(self) -> List[Dict[str, object]]:
        """The weight tensors: name (GGUF's), type, shape (ggml order), bytes."""
        out = []
        t = _lib.TensorInfo()
        for i in range(self._L.sqz_model_n_tensors(self._live())):
            if self._L.sqz_model_tensor(self._m, i, byref(t)):
                out.append({"name": t.name.decode(), "type": _s(t.type),
                            "shape": tuple(t.shape[:t.n_dims]), "bytes": int(t.bytes)})
        return out

    # ---- tokenizer

    def tokenize(self, text: Text, add_bos: Optional[bool] = None) -> np.ndarray:
        """Token ids (int32) of ``text``; ``add_bos``: None = as the tokenizer asks."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        ids = POINTER(c_int32)()
        n = c_size_t()
        flag = -1 if add_bos is None else int(bool(add_bos))
        self._check(self._L.sqz_tokenize(self._ctx, self._live(), data, len(data), flag,
                                         byref(ids), byref(n)))
        try:
            return np.ctypeslib.as_array(ids, shape=(n.value,)).copy() if n.value else \
                np.zeros(0, np.int32)
        finally:
            self._L.sqz_free(ids)

    def detokenize_bytes(self, ids: Tokens) -> bytes:
        """The bytes that ``ids`` decode to (special tokens decode to nothing)."""
        a = _tokens(ids)
        out, buf, n, prev = [], ctypes.create_string_buffer(256), c_size_t(), -1
        for t in a.tolist():
            st = self._L.sqz_token_to_text(self._live(), prev, t, buf, len(buf), byref(n))
            if st:
                raise SqzError(st, self._L.sqz_status_str(st).decode(),
                               "token id %d is not in the vocabulary (%d tokens)"
                               % (t, self.vocab_size))
            if n.value > len(buf):
                buf = ctypes.create_string_buffer(n.value)
                self._L.sqz_token_to_text(self._m, prev, t, buf, len(buf), byref(n))
            out.append(buf.raw[:n.value])
            prev = t
        return b"".join(out)

    def detokenize(self, ids: Tokens) -> str:
        """The text that ``ids`` decode to (invalid UTF-8 replaced)."""
        return self.detokenize_bytes(ids).decode("utf-8", "replace")

    # ---- running

    def session(self, max_ctx: int = 0, kv: Optional[str] = None) -> "Session":
        """A new sequence (KV cache) of at most ``max_ctx`` positions (<= 0: the trained
        context) whose cache uses the KV policy ``kv`` (None: exact f32; see kv_policies())."""
        return Session(self, max_ctx, kv)

    def logits(self, tokens: Tokens, kv: Optional[str] = None,
               last_only: bool = False) -> np.ndarray:
        """Next-token logits (float32) for a batch of tokens run from position 0.

        ``tokens`` of shape (T,) gives (T, vocab); (B, T) runs each row as its own sequence
        and gives (B, T, vocab). ``last_only``: only the last position's, (vocab,) or
        (B, vocab). ``kv``: the KV policy of the cache the tokens run with."""
        a = np.ascontiguousarray(tokens, dtype=np.int32)
        if a.ndim == 2:
            return np.stack([self.logits(row, kv, last_only) for row in a])
        a = _tokens(a)
        if a.size == 0:
            raise ValueError("no tokens")
        with self.session(max(int(a.size), 1), kv) as s:
            return s.eval(a, "last" if last_only else "all")

    def generate(self, prompt: Text, n_predict: int = 128, temperature: float = 0.8,
                 top_p: float = 0.9, seed: int = 42, add_bos: Optional[bool] = None,
                 stop_at_eos: bool = True,
                 on_text: Optional[Callable[[str], Optional[bool]]] = None) -> GenerateResult:
        """Generates up to ``n_predict`` tokens after ``prompt`` (temperature 0: greedy).
        ``on_text`` gets each piece as it is made; returning True stops."""
        pieces: List[bytes] = []

        def cb(_user: Optional[int], text: "ctypes._Pointer[ctypes.c_char]", n: int) -> int:
            piece = ctypes.string_at(text, n)
            pieces.append(piece)
            if on_text is not None and on_text(piece.decode("utf-8", "replace")):
                return 1
            return 0

        fn = _lib.TEXT_FN(cb)  # kept alive by this frame for the call
        opts = _lib.GenerateOpts(_lib.SamplerOpts(temperature, top_p, seed), n_predict,
                                 -1 if add_bos is None else int(bool(add_bos)), int(stop_at_eos))
        r = _lib.GenerateResult()
        data = prompt.encode("utf-8") if isinstance(prompt, str) else bytes(prompt)
        self._check(self._L.sqz_generate(self._ctx, self._live(), data, byref(opts), fn, None,
                                         byref(r)))
        return GenerateResult(b"".join(pieces).decode("utf-8", "replace"), r.n_prompt,
                              r.n_generated, r.prompt_seconds, r.gen_seconds)

    # ---- measuring

    def perplexity(self, text: Union[Text, Tokens], ctx: int = 0, max_tokens: int = 0,
                   kv: Optional[str] = None, kv_prefill: int = 0, mode: str = "sqz",
                   chunks: int = 0, kld_base: Optional["Model"] = None,
                   kld_base_kv: Optional[str] = None,
                   kld_cache: Optional[str] = None) -> PplResult:
        """Perplexity over a text (str/bytes, tokenized as ``sqz ppl`` does: no BOS with
        mode "sqz", the tokenizer's BOS setting with "llama.cpp") or over token ids.

        ``ctx``: window length (0: the trained context, else 1024); ``max_tokens``: only the
        first that many tokens; ``kv``/``kv_prefill``: a KV policy; ``kld_base``: also the KL
        divergence to that model (``kld_base_kv`` its KV policy; ``kld_cache`` a file of its
        logits, read when it matches and written otherwise)."""
        if mode not in _PPL_MODES:
            raise ValueError("mode must be one of %s" % ", ".join(_PPL_MODES))
        if isinstance(text, (str, bytes)):
            ids = self.tokenize(text, add_bos=None if mode == "llama.cpp" else False)
        else:
            ids = _tokens(text)
        if not ctx:
            trained = int(self._info["max_seq_len"])  # type: ignore[arg-type]
            ctx = trained if trained > 0 else 1024
        opts = _lib.PplOpts(n_ctx=ctx, max_tokens=max_tokens, mode=_PPL_MODES[mode],
                            n_chunks=chunks, kv=_b(kv), kv_prefill=kv_prefill,
                            kld_base=kld_base._live() if kld_base is not None else None,
                            kld_base_kv=_b(kld_base_kv), kld_cache=_b(kld_cache))
        r = _lib.PplResult()
        self._check(self._L.sqz_perplexity(self._ctx, self._live(), _ptr(ids), ids.size,
                                           byref(opts), byref(r)))
        k = bool(r.has_kld)
        return PplResult(r.ppl, r.ppl_stderr, r.nll, int(r.tokens), int(r.windows), r.seconds,
                         r.kld if k else None, r.kld_p99 if k else None,
                         r.top1_agree if k else None)

    def kl_divergence(self, base: "Model", text: Union[Text, Tokens],
                      **kw: object) -> PplResult:
        """KL(base || self) over ``text`` with perplexity's windows and options."""
        return self.perplexity(text, kld_base=base, **kw)  # type: ignore[arg-type]

    # ---- writing

    def convert(self, out_path: Union[str, "os.PathLike[str]"], type: str = "f16",
                pure: bool = False, embd_type: Optional[str] = None,
                keep_types: bool = False) -> ConvertResult:
        """Writes the model as a GGUF file of ``type`` (f16, q8_0, q4_k, ... or a llama.cpp
        mix such as q4_k_m) by round-to-nearest; written to a temporary name and renamed."""
        opts = _lib.ConvertOpts(_b(type), int(pure), _b(embd_type), int(keep_types))
        r = _lib.ConvertResult()
        self._check(self._L.sqz_convert(self._ctx, self._live(), _b(out_path), byref(opts),
                                        byref(r)))
        return _convert_result(r)

    def quantize(self, out_path: Union[str, "os.PathLike[str]"], type: Optional[str] = None,
                 method: str = "gptq", calib: Optional[Union[Text, Tokens]] = None,
                 calib_tokens: int = 32768, calib_ctx: int = 512, pure: bool = False,
                 embd_type: Optional[str] = None) -> QuantizeResult:
        """Quantizes with calibration as ``sqz quantize`` does: ``method`` is "NAME" or
        "NAME:key=value,..." (see quant_methods()); ``calib`` a text (tokenized without BOS)
        or token ids, of which ``calib_tokens`` in windows of ``calib_ctx`` spread over the
        whole text are used. Output: GGUF, or sqzf for mixllm / decoupleq."""
        L = self._L
        needs = L.sqz_quant_method_needs_calib(_b(method))
        if type is None:
            t = L.sqz_quant_method_default_type(_b(method))
            if t is None and needs >= 0:
                raise ValueError("quantize needs a type (q4_k_m, q2_k, q4_k, ...)")
            type = _s(t)
        spread = np.zeros(0, np.int32)
        if calib is not None and needs > 0:
            ids = self.tokenize(calib, add_bos=False) if isinstance(calib, (str, bytes)) \
                else _tokens(calib)
            spread = np.zeros(max(min(calib_tokens, ids.size), 1), np.int32)
            n = L.sqz_calib_spread(_ptr(ids), ids.size, calib_tokens, calib_ctx, _ptr(spread))
            spread = spread[:n].copy()
        reports: List[Tuple[str, str, float]] = []

        def on_tensor(_u: Optional[int], name: bytes, typ: bytes, err: float) -> None:
            reports.append((name.decode(), typ.decode(), err))

        fn = _lib.REPORT_FN(on_tensor)
        opts = _lib.QuantizeOpts(_b(method), _b(type), int(pure), _b(embd_type), _ptr(spread),
                                 spread.size, calib_ctx, fn, None)
        r = _lib.QuantizeResult()
        self._check(L.sqz_quantize(self._ctx, self._live(), _b(out_path), byref(opts),
                                   byref(r)))
        return QuantizeResult(_convert_result(r.convert), int(r.calib_tokens), r.calib_seconds,
                              r.quant_seconds, r.mean_rel_err, reports)


class Session:
    """One sequence's state (KV cache) on a model: feed tokens, get logits. Made by
    :meth:`Model.session`; keeps its model alive."""

    def __init__(self, model: Model, max_ctx: int = 0, kv: Optional[str] = None) -> None:
        self.model = model
        self._L = model._L
        self._s = c_void_p()
        model._check(self._L.sqz_session_new_kv(model._ctx, model._live(), max_ctx, _b(kv),
                                                byref(self._s)))

    def close(self) -> None:
        """Frees the session."""
        if getattr(self, "_s", None):
            self._L.sqz_session_free(self._s)
            self._s = c_void_p()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _live(self) -> c_void_p:
        if not self._s:
            raise ValueError("the session is closed")
        return self._s

    def eval(self, tokens: Tokens, logits: Optional[str] = "last") -> Optional[np.ndarray]:
        """Runs ``tokens`` at the next positions in one batched pass and appends them to the
        cache. ``logits``: "last" gives (vocab,), "all" (T, vocab), None nothing."""
        a = _tokens(tokens)
        V = self.model.vocab_size
        if logits not in ("last", "all", None):
            raise ValueError('logits must be "last", "all" or None')
        out = None if logits is None else \
            np.empty((a.size, V) if logits == "all" else (V,), np.float32)
        self.model._check(self._L.sqz_session_eval(
            self._live(), _ptr(a), a.size,
            None if out is None else out.ctypes.data_as(POINTER(c_float)),
            int(logits == "all")))
        return out

    def reset(self) -> None:
        """Forgets every position."""
        self._L.sqz_session_reset(self._live())

    @property
    def pos(self) -> int:
        """Positions in the cache."""
        return int(self._L.sqz_session_pos(self._live()))

    @property
    def kv_bytes(self) -> int:
        """Bytes the KV cache holds now."""
        return int(self._L.sqz_session_kv_bytes(self._live()))
