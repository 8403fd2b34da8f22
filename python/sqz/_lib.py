"""Finding and loading libsqz, and the C declarations of sqz.h that the binding uses.

The structs below mirror include/sqz.h field by field (tests/python/test_binding.py compares
their sizes and offsets with the C compiler's). libsqz is looked for, in order:

1. the path in the environment variable ``SQZ_LIB``;
2. the installed soname ``libsqz.so.MAJOR`` through the dynamic loader (``LD_LIBRARY_PATH``,
   ldconfig's cache), also as ``ctypes.util.find_library("sqz")`` finds it;
3. ``PREFIX/lib/libsqz.so.MAJOR`` beside an installed package
   (``PREFIX/lib/python3.X/dist-packages/sqz``);
4. the build tree of a source checkout (``build/libsqz.so`` beside ``python/``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32,
                    c_int64, c_size_t, c_uint64, c_void_p)
from typing import List, Optional

#: the major version this binding was written for: the soname it asks for
MAJOR = 0

_here = os.path.dirname(os.path.abspath(__file__))


def _candidates() -> List[str]:
    out: List[str] = []
    env = os.environ.get("SQZ_LIB")
    if env:
        return [env]  # an explicit choice is not second-guessed
    out.append("libsqz.so.%d" % MAJOR)
    found = ctypes.util.find_library("sqz")
    if found:
        out.append(found)
    # installed: PREFIX/lib/python3.X/dist-packages/sqz -> PREFIX/lib
    out.append(os.path.join(_here, "..", "..", "..", "libsqz.so.%d" % MAJOR))
    # a source checkout: python/sqz -> build/libsqz.so
    out.append(os.path.join(_here, "..", "..", "build", "libsqz.so"))
    return out


def load_library() -> ctypes.CDLL:
    """Loads libsqz (see the module's docstring for where it is looked for)."""
    # Measured on the project's 2-core machines: inside python3, libgomp's default spinning
    # (GOMP_SPINCOUNT 300000) made sqz 5-15x slower with 2 threads (26m decode 52 tok/s, the
    # CLI 357) while GOMP_SPINCOUNT=10000 gave 500 tok/s; the cause is not understood (the CLI,
    # the same library linked at startup, is not affected). libgomp reads it when it is first
    # loaded, i.e. with libsqz below, unless the process already holds it. A user's own
    # setting wins.
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = "10000"
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    raise OSError("libsqz not found (set SQZ_LIB to its path): " + "; ".join(errors))


# ---- structs (include/sqz.h)

class ModelInfo(Structure):
    _fields_ = [("arch", c_char_p), ("format", c_char_p), ("weight_type", c_char_p),
                ("dim", c_int), ("hidden_dim", c_int), ("n_layers", c_int), ("n_heads", c_int),
                ("n_kv_heads", c_int), ("head_dim", c_int), ("vocab_size", c_int),
                ("max_seq_len", c_int), ("rope_theta", c_float), ("norm_eps", c_float),
                ("rope_interleaved", c_int), ("tied_embeddings", c_int),
                ("has_qkv_bias", c_int), ("bos_id", c_int), ("eos_id", c_int),
                ("add_bos", c_int), ("n_params", c_uint64), ("weight_bytes", c_uint64),
                ("tokenizer", c_char_p), ("absent_subblocks", c_int)]


class TensorInfo(Structure):
    _fields_ = [("name", c_char * 64), ("type", c_char_p), ("n_dims", c_int),
                ("shape", c_int64 * 2), ("bytes", c_uint64)]


class SamplerOpts(Structure):
    _fields_ = [("temperature", c_float), ("top_p", c_float), ("seed", c_uint64)]


class GenerateOpts(Structure):
    _fields_ = [("sampler", SamplerOpts), ("n_predict", c_int), ("add_bos", c_int),
                ("stop_at_eos", c_int)]


class GenerateResult(Structure):
    _fields_ = [("n_prompt", c_int), ("n_generated", c_int), ("prompt_seconds", c_double),
                ("gen_seconds", c_double)]


class PplOpts(Structure):
    _fields_ = [("n_ctx", c_int), ("max_tokens", c_size_t), ("mode", c_int),
                ("n_chunks", c_int), ("kv", c_char_p), ("kv_prefill", c_int),
                ("kld_base", c_void_p), ("kld_base_kv", c_char_p), ("kld_cache", c_char_p)]


class PplResult(Structure):
    _fields_ = [("ppl", c_double), ("ppl_stderr", c_double), ("nll", c_double),
                ("tokens", c_size_t), ("windows", c_size_t), ("seconds", c_double),
                ("has_kld", c_int), ("kld", c_double), ("kld_p99", c_double),
                ("top1_agree", c_double)]


class ModelCard(Structure):
    """sqz_model_card: how a written model was made (its README.md / general.* keys)."""
    _fields_ = [("base_model", c_char_p), ("method", c_char_p), ("parameters", c_char_p),
                ("calib", c_char_p), ("calib_tokens", c_size_t), ("eval_text", c_char_p),
                ("ppl", c_double), ("kld", c_double)]


class ConvertOpts(Structure):
    _fields_ = [("type", c_char_p), ("pure", c_int), ("embd_type", c_char_p),
                ("keep_types", c_int), ("card", POINTER(ModelCard))]


class ConvertResult(Structure):
    _fields_ = [("file_bytes", c_uint64), ("n_params", c_uint64),
                ("bits_per_weight", c_double), ("n_tensors", c_int), ("n_fallback", c_int),
                ("seconds", c_double)]


TEXT_FN = ctypes.CFUNCTYPE(c_int, c_void_p, POINTER(c_char), c_size_t)
REPORT_FN = ctypes.CFUNCTYPE(None, c_void_p, c_char_p, c_char_p, c_double)


class QuantizeOpts(Structure):
    _fields_ = [("method", c_char_p), ("type", c_char_p), ("pure", c_int),
                ("embd_type", c_char_p), ("calib", POINTER(c_int32)), ("n_calib", c_size_t),
                ("calib_ctx", c_int), ("report", REPORT_FN), ("report_user", c_void_p),
                ("card", POINTER(ModelCard))]


class QuantizeResult(Structure):
    _fields_ = [("convert", ConvertResult), ("calib_tokens", c_size_t),
                ("calib_seconds", c_double), ("quant_seconds", c_double),
                ("mean_rel_err", c_double), ("alloc_budget", c_uint64),
                ("alloc_bytes", c_uint64), ("alloc_kl_mix", c_double),
                ("alloc_kl_chosen", c_double), ("alloc_seconds", c_double)]


#: struct name in sqz.h -> its ctypes mirror (the layout test walks this)
STRUCTS = {"sqz_model_info": ModelInfo, "sqz_tensor_info": TensorInfo,
           "sqz_sampler_opts": SamplerOpts, "sqz_generate_opts": GenerateOpts,
           "sqz_generate_result": GenerateResult, "sqz_ppl_opts": PplOpts,
           "sqz_ppl_result": PplResult, "sqz_convert_opts": ConvertOpts,
           "sqz_convert_result": ConvertResult, "sqz_quantize_opts": QuantizeOpts,
           "sqz_quantize_result": QuantizeResult}


def declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Sets argtypes / restype of the functions the binding calls."""
    P, I32P = c_void_p, POINTER(c_int32)
    sigs = {
        "sqz_version": (c_char_p, []),
        "sqz_status_str": (c_char_p, [c_int]),
        "sqz_ctx_new": (P, []),
        "sqz_ctx_free": (None, [P]),
        "sqz_ctx_set_threads": (None, [P, c_int]),
        "sqz_ctx_threads": (c_int, [P]),
        "sqz_ctx_error": (c_char_p, [P]),
        "sqz_free": (None, [P]),
        "sqz_model_load": (c_int, [P, c_char_p, c_char_p, POINTER(P)]),
        "sqz_model_free": (None, [P]),
        "sqz_model_get_info": (None, [P, POINTER(ModelInfo)]),
        "sqz_model_n_tensors": (c_size_t, [P]),
        "sqz_model_tensor": (c_int, [P, c_size_t, POINTER(TensorInfo)]),
        "sqz_tokenize": (c_int, [P, P, c_char_p, c_size_t, c_int, POINTER(I32P),
                                 POINTER(c_size_t)]),
        "sqz_token_to_text": (c_int, [P, c_int32, c_int32, c_char_p, c_size_t,
                                      POINTER(c_size_t)]),
        "sqz_session_new_kv": (c_int, [P, P, c_int, c_char_p, POINTER(P)]),
        "sqz_session_free": (None, [P]),
        "sqz_session_reset": (None, [P]),
        "sqz_session_pos": (c_int, [P]),
        "sqz_session_kv_bytes": (c_size_t, [P]),
        "sqz_session_eval": (c_int, [P, I32P, c_int, POINTER(c_float), c_int]),
        "sqz_kv_policy_name": (c_char_p, [c_int]),
        "sqz_kv_policy_help": (c_char_p, [c_int]),
        "sqz_generate": (c_int, [P, P, c_char_p, POINTER(GenerateOpts), TEXT_FN, P,
                                 POINTER(GenerateResult)]),
        "sqz_perplexity": (c_int, [P, P, I32P, c_size_t, POINTER(PplOpts),
                                   POINTER(PplResult)]),
        "sqz_convert": (c_int, [P, P, c_char_p, POINTER(ConvertOpts),
                                POINTER(ConvertResult)]),
        "sqz_quantize": (c_int, [P, P, c_char_p, POINTER(QuantizeOpts),
                                 POINTER(QuantizeResult)]),
        "sqz_quant_method_name": (c_char_p, [c_int]),
        "sqz_quant_method_help": (c_char_p, [c_int]),
        "sqz_quant_method_needs_calib": (c_int, [c_char_p]),
        "sqz_quant_method_default_type": (c_char_p, [c_char_p]),
        "sqz_calib_spread": (c_size_t, [I32P, c_size_t, c_size_t, c_int, I32P]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


_lib: Optional[ctypes.CDLL] = None


def lib() -> ctypes.CDLL:
    """The loaded and declared libsqz (loaded on first use)."""
    global _lib
    if _lib is None:
        _lib = declare(load_library())
    return _lib
