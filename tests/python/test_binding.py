"""Tests of the Python binding (python/sqz), run by tests/cli/python.sh with /usr/bin/python3.
Prints TAP lines (ok / not ok / skip) that tests/run.sh counts.

The embedded model (assets/stories260K) needs nothing else; the sqz-llama-26m checks need
../shared (SQZ_SHARED) and skip only when it is absent."""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import sqz

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SQZ = os.path.abspath(os.environ.get("SQZ", os.path.join(ROOT, "build", "sqz")))
SHARED = os.environ.get("SQZ_SHARED", os.path.join(ROOT, "..", "shared"))
STORIES = os.path.join(ROOT, "assets", "stories260K", "stories260K.bin")
TOK512 = os.path.join(ROOT, "assets", "stories260K", "tok512.bin")
SLICE = os.path.join(ROOT, "assets", "tinystories-valid-slice.txt")
M26 = os.path.join(SHARED, "models", "sqz-llama-26m")
THREADS = 2
# The CLI restarts itself with better OpenBLAS kernels where OpenBLAS chose old ones for this
# CPU (sqz_blas_coretype_hint); this process keeps what it loaded, so the CLI it is compared
# with bit for bit keeps them too.
CLI_ENV = dict(os.environ, SQZ_NO_REEXEC="1")


def cli_json(*args: str) -> dict:
    out = subprocess.run([SQZ, *args, "--json", "-t", str(THREADS), "--no-progress"],
                         check=True, capture_output=True, text=True, env=CLI_ENV).stdout
    return json.loads(out)


class Layout(unittest.TestCase):
    """First: a ctypes struct that does not match sqz.h would corrupt memory in the others."""

    def test_struct_layouts(self) -> None:
        """The ctypes mirrors have the C compiler's sizes and offsets."""
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler")
        lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "sqz.h"',
                 'int main(void) {']
        from sqz import _lib
        for cname, py in _lib.STRUCTS.items():
            lines.append('printf("%s %%zu\\n", sizeof(%s));' % (cname, cname))
            for f in py._fields_:
                lines.append('printf("%s.%s %%zu\\n", offsetof(%s, %s));'
                             % (cname, f[0], cname, f[0]))
        lines.append("return 0; }")
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        src, exe = os.path.join(tmp, "layout.c"), os.path.join(tmp, "layout")
        open(src, "w").write("\n".join(lines))
        subprocess.run([cc, "-I", os.path.join(ROOT, "include"), "-o", exe, src], check=True)
        want = dict(l.split() for l in subprocess.run([exe], capture_output=True, text=True,
                                                     check=True).stdout.splitlines())
        for cname, py in _lib.STRUCTS.items():
            self.assertEqual(int(want[cname]), __import__("ctypes").sizeof(py), cname)
            for f in py._fields_:
                self.assertEqual(int(want[cname + "." + f[0]]), getattr(py, f[0]).offset,
                                 cname + "." + f[0])


class Stories(unittest.TestCase):
    """The embedded llama2.c model: every entry point of the binding, quickly."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.m = sqz.Model(STORIES, TOK512, threads=THREADS)
        cls.text = open(SLICE, encoding="utf-8").read()
        cls.tmp = tempfile.mkdtemp()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.m.close()
        shutil.rmtree(cls.tmp)

    def test_info_and_version(self) -> None:
        self.assertEqual(self.m.info["n_layers"], 5)
        self.assertEqual(self.m.vocab_size, 512)
        self.assertEqual(self.m.info["format"], "llama2c")
        self.assertEqual(len(self.m.tensors()), 47)
        # the version's one place is sqz.h: the library and the package agree with it
        h = open(os.path.join(ROOT, "include", "sqz.h")).read()
        want = ".".join(__import__("re").search(r"#define SQZ_VERSION_%s +(\d+)" % k, h).group(1)
                        for k in ("MAJOR", "MINOR", "PATCH"))
        self.assertEqual(sqz.version(), want)
        self.assertEqual(sqz.__version__, want)
        from sqz import _lib
        self.assertEqual(str(_lib.MAJOR), want.split(".")[0])

    def test_tokenize_roundtrip(self) -> None:
        ids = self.m.tokenize("Once upon a time, there was a cat.", add_bos=True)
        self.assertEqual(ids.dtype, np.int32)
        self.assertEqual(int(ids[0]), self.m.info["bos_id"])
        self.assertEqual(self.m.detokenize(ids), "Once upon a time, there was a cat.")

    def test_logits_batch(self) -> None:
        ids = self.m.tokenize("Once upon a time, there was", add_bos=True)
        one = self.m.logits(ids)
        self.assertEqual(one.shape, (ids.size, 512))
        self.assertEqual(one.dtype, np.float32)
        self.assertTrue(np.isfinite(one).all())
        two = self.m.logits(np.stack([ids, ids]))
        self.assertEqual(two.shape, (2, ids.size, 512))
        np.testing.assert_array_equal(two[1], one)
        # token by token through a session: the batched pass's rows
        with self.m.session(64) as s:
            rows = [s.eval(ids[i:i + 1]) for i in range(ids.size)]
            self.assertEqual(s.pos, ids.size)
            self.assertGreater(s.kv_bytes, 0)
        np.testing.assert_allclose(np.stack(rows), one, atol=1e-4)

    def test_generate_greedy_is_the_cli(self) -> None:
        r = self.m.generate("Once upon a time", n_predict=24, temperature=0)
        self.assertEqual(r.n_generated, 24)
        cli = subprocess.run([SQZ, "generate", STORIES, "--tokenizer", TOK512, "-p",
                              "Once upon a time", "-n", "24", "--temp", "0", "-t", str(THREADS)],
                             check=True, capture_output=True, text=True, env=CLI_ENV).stdout
        self.assertEqual(r.text.strip(), cli.strip())

    def test_ppl_equals_cli(self) -> None:
        r = self.m.perplexity(self.text, ctx=256, max_tokens=2049)
        c = cli_json("ppl", STORIES, "--tokenizer", TOK512, "-f", SLICE, "--ctx", "256",
                     "--max-tokens", "2049")
        self.assertEqual(r.tokens, c["tokens"])
        self.assertAlmostEqual(r.ppl, c["ppl"], delta=1e-9 * c["ppl"])

    def test_kl_and_kv_policies(self) -> None:
        names = [n for n, _ in sqz.kv_policies()]
        self.assertIn("f32", names)
        self.assertIn("q4", names)
        same = self.m.kl_divergence(self.m, self.text, ctx=128, max_tokens=513)
        self.assertLess(same.kld, 1e-9)
        q4 = self.m.perplexity(self.text, ctx=128, max_tokens=513, kv="q4", kv_prefill=16,
                               kld_base=self.m)
        self.assertGreater(q4.kld, 0)
        self.assertTrue(math.isfinite(q4.ppl))
        with self.assertRaises(sqz.SqzError) as e:
            self.m.session(64, kv="nosuchpolicy")
        self.assertIn("nosuchpolicy", str(e.exception))

    def test_convert_and_quantize(self) -> None:
        out = os.path.join(self.tmp, "s.q8_0.gguf")
        r = self.m.convert(out, type="q8_0")
        self.assertEqual(r.file_bytes, os.path.getsize(out))
        with sqz.Model(out, threads=THREADS) as q:
            self.assertEqual(q.info["format"], "gguf")
            self.assertEqual(q.info["weight_type"], "q8_0")
        out = os.path.join(self.tmp, "s.gptq.gguf")
        r = self.m.quantize(out, type="q4_0", method="gptq", calib=self.text,
                            calib_tokens=1024, calib_ctx=256)
        self.assertEqual(r.calib_tokens, 1024)
        self.assertEqual(r.convert.file_bytes, os.path.getsize(out))
        self.assertTrue(r.tensors and all(0 <= e < 1 for _, _, e in r.tensors))
        with sqz.Model(out, threads=THREADS) as q:
            k = q.kl_divergence(self.m, self.text, ctx=128, max_tokens=513)
            self.assertTrue(0 < k.kld < 1)

    def test_errors_carry_sqz_message(self) -> None:
        bad = os.path.join(self.tmp, "no", "such", "model.bin")
        with self.assertRaises(sqz.SqzError) as e:
            sqz.Model(bad)
        self.assertEqual(e.exception.status, 1)
        self.assertEqual(e.exception.status_name, "i/o error")
        self.assertIn(bad, str(e.exception))
        with self.assertRaises(sqz.SqzError) as e:
            self.m.logits([0, 512])
        self.assertIn("512", e.exception.message)

@unittest.skipUnless(os.path.isdir(M26), "../shared/models/sqz-llama-26m is absent")
class Llama26m(unittest.TestCase):
    """The main benchmark model against PyTorch's numbers and the CLI."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.m = sqz.Model(M26, threads=THREADS)
        cls.ref = json.load(open(os.path.join(M26, "reference.json")))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.m.close()

    def test_logits_match_reference(self) -> None:
        ids = self.m.tokenize(self.ref["prompt"])
        self.assertEqual(ids.tolist(), self.ref["prompt_ids"])
        logits = self.m.logits(ids)
        want = np.array(self.ref["logits_first8_each_pos"])
        # tests/test_model.c's tolerance: 1e-3 of PyTorch's fp32 logits
        self.assertLessEqual(np.abs(logits[:, :8] - want).max(), 1e-3)
        for tid, v in self.ref["last_logits_top10"]:
            self.assertLessEqual(abs(logits[-1, tid] - v), 1e-3)

    def test_ppl_equals_cli(self) -> None:
        # the first 8 KB of the test text (tokenizing all of it would dominate the time)
        data = open(os.path.join(SHARED, "data", "domains", "sotu.test.txt"), "rb").read(8192)
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        text = os.path.join(tmp, "sotu-8k.txt")
        open(text, "wb").write(data)
        r = self.m.perplexity(data, ctx=128, max_tokens=513)
        c = cli_json("ppl", M26, "-f", text, "--ctx", "128", "--max-tokens", "513")
        self.assertEqual((r.tokens, r.windows), (c["tokens"], c["windows"]))
        self.assertAlmostEqual(r.ppl, c["ppl"], delta=1e-9 * c["ppl"])


class Tap(unittest.TextTestResult):
    """unittest's results as the TAP lines tests/run.sh counts."""

    def addSuccess(self, test):  # noqa: N802
        super().addSuccess(test)
        print("ok - python: %s" % test.id(), flush=True)

    def addFailure(self, test, err):  # noqa: N802
        super().addFailure(test, err)
        print("not ok - python: %s\n%s" % (test.id(), self._exc_info_to_string(err, test)),
              flush=True)

    addError = addFailure  # noqa: N815

    def addSkip(self, test, reason):  # noqa: N802
        super().addSkip(test, reason)
        print("skip - python: %s (%s)" % (test.id(), reason), flush=True)


if __name__ == "__main__":
    load = unittest.defaultTestLoader.loadTestsFromTestCase
    suite = unittest.TestSuite(load(c) for c in (Layout, Stories, Llama26m))
    res = unittest.TextTestRunner(resultclass=Tap, stream=open(os.devnull, "w"),
                                  verbosity=0).run(suite)
    sys.exit(0 if res.wasSuccessful() else 1)
