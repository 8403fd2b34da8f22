/* report_html.c - sqz report's page: one section per kind of result given (quality against
 * size, KV cache policies, speed against llama.cpp), each a plot and the table of its numbers,
 * CSS inline and nothing loaded from anywhere. Written to OUT.tmp.XXXXXX beside OUT and renamed,
 * so OUT is either the whole page or untouched. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "report.h"

static const char css[] =
    "body{font:14px/1.4 'DejaVu Sans',Arial,sans-serif;margin:24px;color:#222}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ccc}"
    ".note{color:#555;margin:4px 0 10px}"
    "svg.plot{display:block;margin:8px 0;border:1px solid #ddd;background:#fff}"
    "svg text{font-family:'DejaVu Sans',Arial,sans-serif;fill:#222}"
    ".ptitle{font-size:15px;font-weight:bold}.atitle{font-size:13px}.tick{font-size:11px;fill:#444}"
    ".plabel{font-size:10px;fill:#333}.legend text{font-size:12px}"
    ".grid{stroke:#e5e5e5;stroke-width:1}.axes{fill:none;stroke:#444;stroke-width:1}"
    ".front{fill:none;stroke-width:1.5;stroke-dasharray:5 3}.ring{fill:none;stroke:#222;stroke-width:1.5}"
    ".pt:hover circle,.bar:hover rect{stroke:#000;stroke-width:2}"
    "table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;white-space:nowrap}th{background:#f2f2f2;text-align:left}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "tr.front td:first-child{font-weight:bold}";

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

/* ---- cells */

static void td_text(FILE *f, const char *s) {
    fputs("<td>", f);
    rp_html_escape(f, s && *s ? s : "-");
    fputs("</td>", f);
}

/* A number cell with fmt, or "-" when !have. */
static void td_num(FILE *f, int have, const char *fmt, double v) {
    fputs("<td class=\"n\">", f);
    if (have) fprintf(f, fmt, v);
    else fputs("-", f);
    fputs("</td>", f);
}

static void th_row(FILE *f, const char *const *cols) {
    fputs("<tr>", f);
    for (; *cols; cols++) fprintf(f, "<th>%s</th>", *cols);
    fputs("</tr>\n", f);
}

/* ---- series: the distinct names of a key, in first-seen order */

typedef struct names {
    const char *v[64];
    char buf[64][200];
    int n;
} names;

static int name_index(names *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->buf[i], name)) return i;
    if (s->n == 64) return 63; /* more series than colours anyway: the last shares */
    snprintf(s->buf[s->n], sizeof s->buf[0], "%s", name);
    s->v[s->n] = s->buf[s->n];
    return s->n++;
}

/* ---- sections */

static void model_series_name(const rp_model *m, char *buf, size_t cap) {
    if (strcmp(m->kv, "f32")) snprintf(buf, cap, "%.100s, KV %.60s", m->eval, m->kv);
    else snprintf(buf, cap, "%.150s", m->eval);
}

static void quality_section(FILE *f, rp_data *d) {
    fputs("<h2>Quality against size</h2>\n", f);
    rp_point *p = calloc((size_t)d->n_models + 1, sizeof *p);
    char (*tips)[800] = calloc((size_t)d->n_models + 1, sizeof *tips);
    int *which = calloc((size_t)d->n_models + 1, sizeof *which);
    names s = { 0 };
    int n = 0, n_kld = 0;
    if (!p || !tips || !which) goto done;
    for (int i = 0; i < d->n_models; i++) {
        const rp_model *m = &d->models[i];
        if (!(m->bpw > 0)) continue;
        char sn[200];
        model_series_name(m, sn, sizeof sn);
        char kl[64] = "";
        if (m->has_kld) snprintf(kl, sizeof kl, ", KL %.5f nats", m->kld);
        snprintf(tips[n], sizeof tips[0], "%s on %s: ppl %.4f ± %.4f, %.3f bits/weight, %.0f bytes%s; %.200s",
                 m->label, m->eval, m->ppl, m->ppl_stderr, m->bpw, m->bytes, kl, m->model);
        p[n] = (rp_point){ .x = m->bpw, .y = m->ppl, .series = name_index(&s, sn), .label = m->label,
                           .tip = tips[n] };
        which[n++] = i;
        n_kld += m->has_kld;
    }
    if (n) {
        rp_plot pl = { .id = "plot-ppl", .title = "Perplexity against bits per weight",
                       .x_title = "bits per weight (8 × weight bytes / parameters)",
                       .y_title = "perplexity (lower is better)", .series = s.v, .n_series = s.n,
                       .pareto = 1 };
        rp_svg_scatter(f, &pl, p, n);
        for (int k = 0; k < n; k++) d->models[which[k]].front = p[k].front;
        /* the same points at their KL divergence, for those that measured it (p[m], tips[m]
         * with m <= k: the ppl plot is drawn, and p[k] is read before anything overwrites it) */
        int m = 0;
        double mn = INFINITY, mx = 0;
        for (int k = 0; k < n; k++) {
            const rp_model *r = &d->models[which[k]];
            if (!r->has_kld || !(r->kld > 0)) continue;
            p[m] = p[k], p[m].y = r->kld;
            snprintf(tips[m], sizeof tips[0], "%s on %s: KL %.5f nats (p99 %.4f, top-1 %.1f%%), %.3f bits/weight, ppl %.4f; %.200s",
                     r->label, r->eval, r->kld, r->kld_p99, 100 * r->top1, r->bpw, r->ppl, r->model);
            p[m].tip = tips[m];
            mn = fmin(mn, r->kld), mx = fmax(mx, r->kld);
            m++;
        }
        if (m) {
            rp_plot kl = { .id = "plot-kld", .title = "KL divergence to the base model against bits per weight",
                           .x_title = "bits per weight (8 × weight bytes / parameters)",
                           .y_title = "mean KL divergence, nats (lower is better)", .series = s.v,
                           .n_series = s.n, .pareto = 1, .y_log = mx / mn > 20 };
            rp_svg_scatter(f, &kl, p, m);
        }
    } else {
        fputs("<p class=\"note\">No result with bits per weight: give sqz ppl --json results (and the "
              "quantize / convert --json runs that wrote their models).</p>\n", f);
    }
    fputs("<p class=\"note\">Each point is one <code>sqz ppl</code> run; its model's method and type come "
          "from the quantize / convert run that wrote it. Ringed points are on their series' Pareto "
          "front (no point of the series has fewer bits and a lower value). Hover a point for its "
          "numbers.</p>\n<table id=\"table-models\">\n", f);
    static const char *const cols[] = { "model", "method", "type", "calibration", "KV cache", "bytes",
                                        "bits/weight", "text", "perplexity", "± (s.e.)", "KL (nats)",
                                        "KL p99", "top-1 agree", "tokens/s", NULL };
    th_row(f, cols);
    for (int i = 0; i < d->n_models; i++) {
        const rp_model *m = &d->models[i];
        fprintf(f, "<tr%s>", m->front ? " class=\"front\"" : "");
        fputs("<td title=\"", f);
        rp_html_escape(f, m->model);
        fputs("\">", f);
        rp_html_escape(f, m->label);
        fputs("</td>", f);
        td_text(f, m->method);
        td_text(f, m->type);
        td_text(f, m->calib);
        td_text(f, m->kv);
        td_num(f, m->bytes > 0, "%.0f", m->bytes);
        td_num(f, m->bpw > 0, "%.3f", m->bpw);
        td_text(f, m->eval);
        td_num(f, 1, "%.4f", m->ppl);
        td_num(f, 1, "%.4f", m->ppl_stderr);
        td_num(f, m->has_kld, "%.5f", m->kld);
        td_num(f, m->has_kld, "%.4f", m->kld_p99);
        td_num(f, m->has_kld, "%.1f%%", 100 * m->top1);
        td_num(f, m->tps > 0, "%.0f", m->tps);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
done:
    free(p);
    free(tips);
    free(which);
}

static double kv_change(const rp_kv *k) {
    return k->base_ppl > 0 ? 100.0 * (k->ppl / k->base_ppl - 1) : k->ppl;
}

static void kv_section(FILE *f, const rp_data *d) {
    fputs("<h2>KV cache policies</h2>\n", f);
    rp_point *p = calloc((size_t)d->n_kvs, sizeof *p);
    char (*tips)[600] = calloc((size_t)d->n_kvs, sizeof *tips);
    names s = { 0 };
    int have_base = 1;
    for (int i = 0; i < d->n_kvs; i++) have_base &= d->kvs[i].base_ppl > 0;
    if (!p || !tips) goto done;
    for (int i = 0; i < d->n_kvs; i++) {
        const rp_kv *k = &d->kvs[i];
        char kl[48] = "";
        if (k->kld >= 0) snprintf(kl, sizeof kl, ", KL %.5f nats", k->kld);
        snprintf(tips[i], sizeof tips[0], "%s: %.3f× smaller than f16, ppl %.4f (%+.2f%% vs %s)%s; %.200s",
                 k->policy, k->ratio, k->ppl, k->base_ppl > 0 ? kv_change(k) : 0.0,
                 k->base_ppl > 0 ? k->base : "no reference", kl, k->model);
        p[i] = (rp_point){ .x = k->ratio, .y = have_base ? kv_change(k) : k->ppl,
                           .series = name_index(&s, base_name(k->model)), .label = k->policy, .tip = tips[i] };
    }
    rp_plot pl = { .id = "plot-kv", .title = "KV cache: compression against perplexity change",
                   .x_title = "compression: f16 cache bytes / policy's bytes (higher is smaller)",
                   .y_title = have_base ? "perplexity change vs exact cache, % (lower is better)"
                                        : "perplexity (lower is better)",
                   .series = s.v, .n_series = s.n, .pareto = 2 };
    rp_svg_scatter(f, &pl, p, d->n_kvs);
    fputs("<p class=\"note\">From <code>sqz kvbench --json</code> and <code>sqz ppl --kv --json</code>; the change is measured against the same "
          "model's f16 cache on the same windows (the kvbench's f16 row); a ppl run's against the same model's ppl run with the exact cache. KL: to the exact cache (kvbench). Ringed: the "
          "policies no other beats on both compression and perplexity.</p>\n<table id=\"table-kv\">\n", f);
    static const char *const cols[] = { "policy", "model", "compression vs f16", "perplexity",
                                        "change", "reference", "KL (nats)", NULL };
    th_row(f, cols);
    for (int i = 0; i < d->n_kvs; i++) {
        const rp_kv *k = &d->kvs[i];
        fprintf(f, "<tr%s>", p[i].front ? " class=\"front\"" : "");
        td_text(f, k->policy);
        td_text(f, base_name(k->model));
        td_num(f, 1, "%.3f×", k->ratio);
        td_num(f, 1, "%.4f", k->ppl);
        td_num(f, k->base_ppl > 0, "%+.2f%%", kv_change(k));
        td_text(f, k->base);
        td_num(f, k->kld >= 0, "%.5f", k->kld);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
done:
    free(p);
    free(tips);
}

static void speed_plot(FILE *f, const rp_data *d, int decode) {
    const int n = d->n_speeds;
    const char **groups = calloc((size_t)n, sizeof *groups), **tipp = calloc((size_t)n * 2, sizeof *tipp);
    double *v = calloc((size_t)n * 2, sizeof *v);
    char (*tips)[300] = calloc((size_t)n * 2, sizeof *tips);
    if (groups && tipp && v && tips) {
        static const char *const series[] = { "sqz", "llama.cpp" };
        for (int g = 0; g < n; g++) {
            const rp_speed *s = &d->speeds[g];
            groups[g] = s->name;
            v[2 * g] = decode ? s->sqz_decode : s->sqz_prefill;
            v[2 * g + 1] = decode ? s->llama_decode : s->llama_prefill;
            for (int k = 0; k < 2; k++) {
                snprintf(tips[2 * g + k], sizeof tips[0], "%s, %s: %.1f tokens/s %s", s->name, series[k],
                         v[2 * g + k], decode ? "decode" : "prefill");
                tipp[2 * g + k] = tips[2 * g + k];
            }
        }
        rp_plot pl = { .id = decode ? "plot-speed-decode" : "plot-speed-prefill",
                       .title = decode ? "Decode speed: sqz against llama.cpp" : "Prefill speed: sqz against llama.cpp",
                       .x_title = "model file", .y_title = "tokens per second (higher is better)",
                       .series = series, .n_series = 2 };
        rp_svg_bars(f, &pl, groups, n, v, tipp);
    }
    free(groups);
    free(tipp);
    free(v);
    free(tips);
}

static void speed_section(FILE *f, const rp_data *d) {
    fputs("<h2>Speed against llama.cpp</h2>\n", f);
    int prefill = 0;
    for (int i = 0; i < d->n_speeds; i++) prefill |= d->speeds[i].sqz_prefill >= 0;
    speed_plot(f, d, 1);
    if (prefill) speed_plot(f, d, 0);
    fputs("<p class=\"note\">The same GGUF files run by both (bench/vs_llamacpp.py: medians of alternating "
          "rounds).</p>\n<table id=\"table-speed\">\n", f);
    static const char *const cols[] = { "model file", "sqz prefill t/s", "llama.cpp prefill t/s", "ratio",
                                        "sqz decode t/s", "llama.cpp decode t/s", "ratio", NULL };
    th_row(f, cols);
    for (int i = 0; i < d->n_speeds; i++) {
        const rp_speed *s = &d->speeds[i];
        fputs("<tr>", f);
        td_text(f, s->name);
        td_num(f, s->sqz_prefill >= 0, "%.1f", s->sqz_prefill);
        td_num(f, s->llama_prefill >= 0, "%.1f", s->llama_prefill);
        td_num(f, s->sqz_prefill >= 0 && s->llama_prefill > 0, "%.2f×", s->sqz_prefill / s->llama_prefill);
        td_num(f, s->sqz_decode >= 0, "%.1f", s->sqz_decode);
        td_num(f, s->llama_decode >= 0, "%.1f", s->llama_decode);
        td_num(f, s->sqz_decode >= 0 && s->llama_decode > 0, "%.2f×", s->sqz_decode / s->llama_decode);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void page(FILE *f, rp_data *d) {
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
               "<title>sqz report</title>\n<style>%s</style></head><body>\n<h1>sqz report</h1>\n"
               "<p class=\"note\">made by sqz %s from ", css, SQZ_VERSION);
    for (int i = 0; i < d->n_inputs; i++) {
        fputs(i ? ", <code>" : "<code>", f);
        rp_html_escape(f, d->inputs[i]);
        fputs("</code>", f);
    }
    fputs("</p>\n", f);
    if (d->n_models) quality_section(f, d);
    if (d->n_kvs) kv_section(f, d);
    if (d->n_speeds) speed_section(f, d);
    fputs("</body></html>\n", f);
}

int rp_write_html(rp_data *d, const char *out) {
    const size_t n = strlen(out);
    char *tmp = malloc(n + 16);
    if (!tmp) return cli_die("out of memory");
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", out);
    const int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        const int e = errno;
        if (fd >= 0) close(fd), unlink(tmp);
        free(tmp);
        return cli_die("report: %s: cannot write: %s", out, strerror(e));
    }
    page(f, d);
    int bad = ferror(f) || fflush(f) || fsync(fd);
    const int e = errno;
    bad |= fclose(f) != 0;
    if (!bad) bad = chmod(tmp, 0644) || rename(tmp, out);
    if (bad) {
        unlink(tmp);
        free(tmp);
        return cli_die("report: %s: write failed: %s", out, strerror(e ? e : errno));
    }
    free(tmp);
    return 0;
}

void rp_print_table(FILE *f, const rp_data *d) {
    if (!d->n_models) return;
    int wn = 5, wk = 8; /* the columns as wide as their longest entry */
    for (int i = 0; i < d->n_models; i++) {
        const int a = (int)strlen(d->models[i].name), b = (int)strlen(d->models[i].kv);
        wn = a > wn ? a : wn, wk = b > wk ? b : wk;
    }
    fprintf(f, "%-*s  %-*s %10s %7s %9s %9s %9s  %s\n", wn, "model", wk, "KV cache", "bytes", "bits/w",
            "ppl", "KL", "tokens/s", "text");
    for (int i = 0; i < d->n_models; i++) {
        const rp_model *m = &d->models[i];
        char kl[32] = "-";
        if (m->has_kld) snprintf(kl, sizeof kl, "%.5f", m->kld);
        fprintf(f, "%-*s  %-*s %10.0f %7.2f %9.4f %9s %9.0f  %s\n", wn, m->name, wk, m->kv, m->bytes, m->bpw,
                m->ppl, kl, m->tps, m->eval);
    }
}
