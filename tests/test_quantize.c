/* test_quantize.c - sqz_quantize on the embedded model: GPTQ's per-matrix output error is below
 * the importance-weighted search's, which is below round-to-nearest's (measured the same way on
 * the same calibration data); the outputs load and score; bad inputs are clear errors. */
#include <string.h>
#include <unistd.h>

#include "sqz.h"
#include "test.h"

typedef struct errs {
    double sum;
    int n;
} errs;

static void on_tensor(void *user, const char *name, const char *type, double rel_err) {
    errs *e = user;
    e->sum += rel_err;
    e->n++;
}

static double file_ppl(sqz_ctx *ctx, const char *path, const int32_t *ids, size_t n) {
    sqz_model *m;
    if (sqz_model_load(ctx, path, NULL, &m)) return -1;
    sqz_ppl_opts o = { .n_ctx = 256, .max_tokens = 4097 };
    sqz_ppl_result r;
    double p = sqz_perplexity(ctx, m, ids, n, &o, &r) ? -1 : r.ppl;
    sqz_model_free(m);
    return p;
}

/* The table: each row reachable by name, with help; the accessors. */
static void test_table(void) {
    const char *want[] = { "rtn", "imatrix", "gptq", "rsq", "decoupleq", "mixllm" };
    int n = 0;
    while (sqz_quant_method_name(n)) n++;
    CHECK(n == 6 && !sqz_quant_method_help(n) && !sqz_quant_method_name(-1), "6 methods, NULL past the last (%d)", n);
    for (int i = 0; i < 6; i++) {
        const char *name = sqz_quant_method_name(i), *help = sqz_quant_method_help(i);
        CHECK(name && !strcmp(name, want[i]) && help && strlen(help) > 10, "row %d: %s: %s", i, name ? name : "-",
              help ? help : "-");
        CHECK(sqz_quant_method_needs_calib(name) == (i != 0), "%s needs calibration: %d", want[i],
              sqz_quant_method_needs_calib(name));
    }
    CHECK(sqz_quant_method_needs_calib("magic") == -1 && sqz_quant_method_needs_calib(NULL) == -1 &&
              sqz_quant_method_needs_calib("rtn:fake=1") == 0 && sqz_quant_method_needs_calib("gpt") == -1,
          "needs_calib: unknown -1, parameters ignored, no prefix match");
    CHECK(!strcmp(sqz_quant_method_default_type("decoupleq:fake=1"), "dq2") && !sqz_quant_method_default_type("gptq") &&
              !sqz_quant_method_default_type("magic"),
          "default type: decoupleq's dq2, none for the others");
    CHECK(sqz_quant_method_takes("rsq", "seed") == 1 && sqz_quant_method_takes("gptq", "seed") == 0 &&
              sqz_quant_method_takes("gptq", "windows") == 1 && sqz_quant_method_takes("imatrix", "damp") == 0 &&
              sqz_quant_method_takes("mixllm", "frac") == 1 && sqz_quant_method_takes("magic", "damp") == -1,
          "takes: each method's keys");
}

int main(void) {
    test_table();
    sqz_ctx *ctx = sqz_ctx_new();
    sqz_model *m;
    if (sqz_model_load(ctx, "assets/stories260K/stories260K.bin", NULL, &m)) {
        CHECK(0, "load: %s", sqz_ctx_error(ctx));
        return test_done();
    }
    FILE *f = fopen("assets/tinystories-valid-slice.txt", "rb");
    static char text[40000];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    int32_t *ids;
    size_t n;
    sqz_tokenize(ctx, m, text, len, 0, &ids, &n);
    /* calibrate on the second half, evaluate on the first */
    const size_t half = n / 2;
    char dir[] = "/tmp/sqz-test-quantize-XXXXXX";
    if (!mkdtemp(dir)) return test_done();
    char out[3][512];
    const char *methods[] = { "imatrix", "gptq" };
    errs e[2] = { { 0, 0 }, { 0, 0 } };
    for (int k = 0; k < 2; k++) {
        snprintf(out[k], sizeof out[k], "%s/%s.gguf", dir, methods[k]);
        sqz_quantize_opts o = { .method = methods[k], .type = "q4_0", .calib = ids + half,
                                .n_calib = n - half, .calib_ctx = 128, .report = on_tensor,
                                .report_user = &e[k] };
        sqz_quantize_result r;
        sqz_status st = sqz_quantize(ctx, m, out[k], &o, &r);
        CHECK(st == SQZ_OK && r.calib_tokens >= 128, "%s q4_0 runs (%s)", methods[k], sqz_ctx_error(ctx));
        /* gptq: the (tied) head too */
        CHECK(e[k].n == 5 * 7 + k, "%s reports every block matrix%s (%d)", methods[k], k ? " and the head" : "",
              e[k].n);
    }
    CHECK(e[1].sum / e[1].n < 0.95 * e[0].sum / e[0].n, "GPTQ mean rel. output error %.4f < 0.95 x imatrix's %.4f",
          e[1].sum / e[1].n, e[0].sum / e[0].n);
    snprintf(out[2], sizeof out[2], "%s/rtn.gguf", dir);
    sqz_quantize_opts rtn = { .method = "rtn", .type = "q4_0" };
    CHECK(sqz_quantize(ctx, m, out[2], &rtn, NULL) == SQZ_OK, "rtn needs no calibration");
    const double p_f32 = file_ppl(ctx, "assets/stories260K/stories260K.bin", ids, half);
    const double p_rtn = file_ppl(ctx, out[2], ids, half), p_imx = file_ppl(ctx, out[0], ids, half),
                 p_gptq = file_ppl(ctx, out[1], ids, half);
    printf("# held-out ppl: f32 %.4f, rtn %.4f, imatrix %.4f, gptq %.4f\n", p_f32, p_rtn, p_imx, p_gptq);
    CHECK(p_gptq > 0 && p_gptq < p_rtn, "GPTQ's held-out ppl %.4f beats round-to-nearest's %.4f", p_gptq, p_rtn);
    /* bad inputs */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.gguf", dir);
    sqz_quantize_opts none = { .method = "gptq", .type = "q4_0" };
    CHECK(sqz_quantize(ctx, m, bad, &none, NULL) == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), "calibration"),
          "gptq without calibration: %s", sqz_ctx_error(ctx));
    sqz_quantize_opts few = { .method = "gptq", .type = "q4_0", .calib = ids, .n_calib = 10, .calib_ctx = 128 };
    CHECK(sqz_quantize(ctx, m, bad, &few, NULL) == SQZ_ERR_ARG, "too few tokens: %s", sqz_ctx_error(ctx));
    sqz_quantize_opts meth = { .method = "magic", .type = "q4_0", .calib = ids, .n_calib = n };
    CHECK(sqz_quantize(ctx, m, bad, &meth, NULL) == SQZ_ERR_ARG, "unknown method: %s", sqz_ctx_error(ctx));
    sqz_quantize_opts ty = { .method = "gptq", .type = "q9_9", .calib = ids, .n_calib = n };
    CHECK(sqz_quantize(ctx, m, bad, &ty, NULL) == SQZ_ERR_ARG, "unknown type: %s", sqz_ctx_error(ctx));
    /* method specs: the one parser's errors, each before anything is computed */
    struct { const char *spec, *want; } specs[] = {
        { "magic:damp=0.1", "unknown quantization method 'magic'" },
        { "gptq:bogus=1", "unknown parameter 'bogus'" },
        { "gptq:damp=x", "'damp' = 'x' is not a number" },
        { "gptq:act_order=2", "out of range" },
        { "gptq:damp=0.1,damp=0.2", "'damp' given twice" },
        { "gptq:act_order=1,act_order=1", "given twice" },   /* as the CLI's alias + spec make it */
        { "imatrix:damp=0.1", "imatrix takes no parameters" },
        { "rsq:seed=-1", "not an unsigned integer" },
        { "rsq:seed=18446744073709551616", "not an unsigned integer" },
        { "rsq:rmin=1.5", "out of range" },
        { "mixllm:frac=1", "below 1" },
        { "decoupleq:act_order=1", "unknown parameter 'act_order'" },
        { "rsq:alloc=1", "unknown parameter 'alloc'" },
        { "gptq:damp", "expected key=value" },
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        sqz_quantize_opts so = { .method = specs[i].spec, .type = strstr(specs[i].spec, "mixllm") ? "q4" : "q4_0",
                                 .calib = ids, .n_calib = n, .calib_ctx = 128 };
        const sqz_status st = sqz_quantize(ctx, m, bad, &so, NULL);
        CHECK(st == SQZ_ERR_ARG && strstr(sqz_ctx_error(ctx), specs[i].want), "--method %s: %s", specs[i].spec,
              sqz_ctx_error(ctx));
    }
    CHECK(access(bad, F_OK) != 0, "no output left behind by the failures");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) CHECK(0, "cleanup");
    free(ids);
    sqz_model_free(m);
    sqz_ctx_free(ctx);
    return test_done();
}
