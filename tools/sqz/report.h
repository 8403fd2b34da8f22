/* report.h - sqz report: the --json results of sqz commands (and bench/vs_llamacpp.py) read,
 * joined and drawn as one self-contained HTML page (inline CSS and SVG, no scripts).
 *   report_load.c  reads the files and joins the results (a ppl run with the quantize or
 *                  convert run that wrote its model)
 *   report_svg.c   scatter and bar plots as SVG, every mark with a <title> shown on hover
 *   report_html.c  the page: a plot and a table per section, written to a temporary file and
 *                  renamed */
#ifndef SQZ_REPORT_H
#define SQZ_REPORT_H

#include <stdio.h>

/* One perplexity run (sqz ppl --json), with what made its model when the inputs say. */
typedef struct rp_model {
    char name[128];   /* "gptq q4_0" (from the quantize/convert run), else the model's file name */
    char label[240];  /* name, and " + KV policy" when not the exact cache */
    char model[512];  /* the model path as ppl printed it */
    char eval[256];   /* the scored text's file name */
    char kv[96];      /* KV cache policy ("f32": exact) */
    char method[64], type[32], calib[256];
    double bytes, bpw; /* file bytes and bits per weight; 0: unknown */
    double ppl, ppl_stderr, kld, kld_p99, top1, tps;
    double kv_ratio;  /* with a KV policy: f16 cache bytes / the policy's (0: not given) */
    int has_kld;
    int front;        /* on its series' Pareto front (set by the plots) */
} rp_model;

/* One KV cache policy (a kvbench --json row, or a ppl --json run with --kv). */
typedef struct rp_kv {
    char policy[96], model[512], eval[256];
    double ratio;     /* cache bytes of f16 / the policy's, at the context measured */
    double ppl, kld;  /* kld < 0: not measured against the exact cache (a ppl run's row) */
    double base_ppl;  /* the reference its change is measured from; 0: none */
    char base[96];    /* what that reference is ("f32 (ppl run)", "f16 row") */
} rp_kv;

/* Speed against llama.cpp on one model file (bench/vs_llamacpp.py, or any object with both
 * tools' tokens per second). A value < 0 is missing. */
typedef struct rp_speed {
    char name[256];
    double sqz_prefill, sqz_decode, llama_prefill, llama_decode;
} rp_speed;

typedef struct rp_data {
    rp_model *models; int n_models;
    rp_kv *kvs; int n_kvs;
    rp_speed *speeds; int n_speeds;
    /* quantize / convert runs, only to label and size the models their ppl runs scored */
    struct rp_artifact { char out[512], method[64], type[32], calib[256]; double bytes, bpw; } *arts;
    int n_arts;
    const char **inputs; int n_inputs;
} rp_data;

/* Reads every file (each one JSON value, or several one after another as `>>` appends them;
 * an array is read as its elements) and joins the results. Returns 0; 1 after printing a
 * one-line error naming the file ("not valid JSON at line L", "not an sqz result ..."). */
int rp_load(rp_data *d, const char *const *paths, int n);
void rp_free(rp_data *d);

/* ---- SVG (report_svg.c) */

typedef struct rp_point {
    double x, y;
    int series;
    const char *label;  /* drawn beside the point (NULL: none) */
    const char *tip;    /* its <title>: shown on hover */
    int front;          /* out: on the series' Pareto front (when asked for) */
} rp_point;

typedef struct rp_plot {
    const char *id, *title;
    const char *x_title, *y_title; /* with their units */
    int y_log;                     /* logarithmic y (values must be > 0) */
    const char *const *series;     /* legend names, indexed by rp_point.series */
    int n_series;
    int pareto;                    /* mark each series' front, least y for the x: 1 where a
                                      lower x is better (bits), 2 a higher (compression) */
} rp_plot;

/* An SVG scatter plot of p (n points) on f; with pl->pareto, sets p[i].front. */
void rp_svg_scatter(FILE *f, const rp_plot *pl, rp_point *p, int n);
/* An SVG bar chart: n_groups groups (names) of n_series bars (values[g * n_series + s], < 0:
 * missing), y from 0. tips: as values, each bar's <title>. */
void rp_svg_bars(FILE *f, const rp_plot *pl, const char *const *groups, int n_groups,
                 const double *values, const char *const *tips);
/* Writes s with &, <, >, " escaped. */
void rp_html_escape(FILE *f, const char *s);

/* ---- the page (report_html.c) */

/* Writes the page to out (temporary file, renamed when complete). Returns 0; 1 after printing
 * the error, with nothing left at out. */
int rp_write_html(rp_data *d, const char *out);
/* The models' table as text (the terminal's before / after view). */
void rp_print_table(FILE *f, const rp_data *d);

#endif
