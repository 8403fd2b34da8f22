"""sqz: Python binding of libsqz (include/sqz.h) over ctypes, with numpy arrays.

Load a model, tokenize, get logits for a batch of tokens, generate, measure perplexity and
KL divergence, convert and quantize, pick a KV-cache policy::

    import sqz
    m = sqz.Model("assets/stories260K/stories260K.bin", "assets/stories260K/tok512.bin")
    ids = m.tokenize("Once upon a time")          # numpy int32
    logits = m.logits(ids)                       # (len(ids), vocab) float32
    print(m.perplexity(open("text.txt").read(), ctx=256).ppl)

libsqz is found through $SQZ_LIB, the installed libsqz.so.MAJOR, or a source checkout's
build/ (see sqz._lib). Failures raise :class:`SqzError` with sqz's message.
"""
from .errors import SqzError
from .model import (ConvertResult, GenerateResult, Model, PplResult, QuantizeResult, Session,
                    kv_policies, quant_methods, version)

__all__ = ["Model", "Session", "SqzError", "PplResult", "ConvertResult", "QuantizeResult",
           "GenerateResult", "kv_policies", "quant_methods", "version"]
__version__ = "0.1.0"
