// use_sqz.cpp - sqz.h from C++ (its extern "C" guards): the installed library loads a model,
// runs a batch of tokens and refuses a bad one. Built by tests/cli/install.sh; prints TAP lines.
// usage: use_sqz_cxx MODEL.bin TOKENIZER.bin
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <sqz.h>

static int failed;
static void check(bool ok, const char *what) {
    std::printf("%s - %s\n", ok ? "ok" : "not ok", what);
    if (!ok) failed = 1;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m = nullptr;
    if (sqz_model_load(ctx, argv[1], argv[2], &m) != SQZ_OK) {
        std::printf("not ok - C++: load: %s\n", sqz_ctx_error(ctx));
        return 1;
    }
    sqz_model_info info;
    sqz_model_get_info(m, &info);
    sqz_session *s = nullptr;
    check(sqz_session_new(ctx, m, 32, &s) == SQZ_OK, "C++: a session");
    std::vector<int32_t> toks = {1, 403, 407, 261, 378};
    std::vector<float> logits(toks.size() * info.vocab_size);
    check(sqz_session_eval(s, toks.data(), (int)toks.size(), logits.data(), 1) == SQZ_OK,
          "C++: eval of a batch of 5 tokens");
    bool finite = true;
    for (float x : logits) finite = finite && std::isfinite(x);
    check(finite && sqz_session_pos(s) == 5, "C++: every logit finite, position 5");
    int32_t bad = info.vocab_size;
    check(sqz_session_eval(s, &bad, 1, nullptr, 0) == SQZ_ERR_RANGE &&
              std::string(sqz_ctx_error(ctx)).size() > 0,
          "C++: a token id out of range is refused with a message");
    sqz_session_free(s);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
    return failed;
}
