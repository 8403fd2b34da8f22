/* report_svg.c - the plots of sqz report as inline SVG: axes with round ticks (linear, or
 * decades for a log axis), a legend, every mark inside a <g> whose <title> the browser shows on
 * hover, and for a scatter the Pareto front of each series (the points no other point of the
 * series beats on both x and y: fewer bits and lower error) joined by a dashed line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

enum { W = 880, H = 430, X0 = 78, X1 = 590, Y0 = 48, Y1 = 370, LEGEND_X = 606 };
enum { LEGEND_CHARS = 40 }; /* a longer series name is cut (the table has it whole) */

static const char *const palette[] = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                       "#ff7f0e", "#17becf", "#8c564b", "#e377c2" };
enum { N_PALETTE = sizeof palette / sizeof *palette };

void rp_html_escape(FILE *f, const char *s) {
    for (; s && *s; s++) switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

/* An axis: data range [lo, hi] (after rounding to ticks), log or linear, and its ticks. */
typedef struct axis {
    double lo, hi, step; /* linear: tick spacing; log: lo, hi are log10 */
    int log;
} axis;

/* 1, 2 or 5 times a power of ten, about range / target. */
static double nice_step(double range, int target) {
    const double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static axis make_axis(double mn, double mx, int log_scale, int from_zero) {
    axis a = { 0 };
    if (log_scale) {
        a.log = 1;
        a.lo = floor(log10(mn));
        a.hi = ceil(log10(mx));
        if (a.hi <= a.lo) a.hi = a.lo + 1;
        return a;
    }
    if (from_zero && mn > 0) mn = 0;
    if (!(mx > mn)) { /* one value: a range around it */
        const double pad = mn != 0 ? fabs(mn) * 0.1 : 1;
        mn -= pad, mx += pad;
    }
    a.step = nice_step(mx - mn, 6);
    a.lo = floor(mn / a.step) * a.step;
    a.hi = ceil(mx / a.step) * a.step;
    /* room so that a point is not drawn on the frame */
    if (mn - a.lo < 0.02 * (a.hi - a.lo) && !(from_zero && mn == 0)) a.lo -= a.step;
    if (a.hi - mx < 0.02 * (a.hi - a.lo)) a.hi += a.step;
    return a;
}

/* Position of v on the axis in [0, 1]. */
static double frac(const axis *a, double v) {
    const double x = a->log ? log10(v) : v;
    return (x - a->lo) / (a->hi - a->lo);
}
static double px(const axis *a, double v) { return X0 + frac(a, v) * (X1 - X0); }
static double py(const axis *a, double v) { return Y1 - frac(a, v) * (Y1 - Y0); }

static void tick_label(char *buf, size_t cap, const axis *a, double v) {
    if (a->log) { snprintf(buf, cap, "%g", v); return; }
    const int dec = a->step >= 1 ? 0 : (int)ceil(-log10(a->step) - 1e-9);
    snprintf(buf, cap, "%.*f", dec, fabs(v) < 1e-12 * a->step ? 0.0 : v);
}

/* The values at which an axis has ticks: up to cap of them into v; returns how many. */
static int ticks(const axis *a, double *v, int cap) {
    int n = 0;
    if (a->log) {
        const int decades = (int)(a->hi - a->lo);
        for (int e = (int)a->lo; e <= (int)a->hi && n < cap; e++)
            for (int m = 1; m <= 5 && n < cap; m += (m == 1 ? 1 : 3)) { /* 1, 2, 5 */
                if (e == (int)a->hi && m > 1) break;
                if (m > 1 && decades > 2) continue; /* many decades: the decades only */
                v[n++] = m * pow(10, e);
            }
        return n;
    }
    for (double x = a->lo; x <= a->hi + a->step * 1e-6 && n < cap; x += a->step) v[n++] = x;
    return n;
}

static void frame(FILE *f, const rp_plot *pl, const axis *ax, const axis *ay) {
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"%s\" class=\"plot\" width=\"%d\" "
               "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"",
            pl->id, W, H, W, H);
    rp_html_escape(f, pl->title);
    fprintf(f, "\">\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"26\" class=\"ptitle\">", X0);
    rp_html_escape(f, pl->title);
    fprintf(f, "</text>\n");
    double v[64];
    char lab[32];
    int n = ax ? ticks(ax, v, 64) : 0;
    for (int i = 0; i < n; i++) {
        const double x = px(ax, v[i]);
        tick_label(lab, sizeof lab, ax, v[i]);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"grid\"/>"
                   "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%s</text>\n",
                x, Y0, x, Y1 + 5, x, Y1 + 19, lab);
    }
    n = ticks(ay, v, 64);
    for (int i = 0; i < n; i++) {
        const double y = py(ay, v[i]);
        tick_label(lab, sizeof lab, ay, v[i]);
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>"
                   "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%s</text>\n",
                X0 - 5, y, X1, y, X0 - 8, y + 4, lab);
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"axes\"/>\n", X0, Y0,
            X1 - X0, Y1 - Y0);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"atitle\" text-anchor=\"middle\">", (X0 + X1) / 2, H - 18);
    rp_html_escape(f, pl->x_title);
    fprintf(f, "</text>\n<text transform=\"translate(20 %d) rotate(-90)\" class=\"atitle\" "
               "text-anchor=\"middle\">", (Y0 + Y1) / 2);
    rp_html_escape(f, pl->y_title);
    fprintf(f, "</text>\n");
}

static void legend(FILE *f, const rp_plot *pl, int with_front) {
    int y = Y0 + 8;
    fprintf(f, "<g class=\"legend\">\n");
    for (int s = 0; s < pl->n_series; s++, y += 20) {
        fprintf(f, "<circle cx=\"%d\" cy=\"%d\" r=\"5\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">",
                LEGEND_X + 6, y, palette[s % N_PALETTE], LEGEND_X + 16, y + 4);
        char name[LEGEND_CHARS + 4];
        snprintf(name, sizeof name, "%s", pl->series[s]);
        if (strlen(pl->series[s]) > LEGEND_CHARS) strcpy(name + LEGEND_CHARS - 3, "...");
        rp_html_escape(f, name);
        fprintf(f, "</text>\n");
    }
    if (with_front)
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"front\" stroke=\"#444\"/>"
                   "<circle cx=\"%d\" cy=\"%d\" r=\"7\" class=\"ring\"/>"
                   "<text x=\"%d\" y=\"%d\">Pareto front</text>\n",
                LEGEND_X, y, LEGEND_X + 12, y, LEGEND_X + 6, y, LEGEND_X + 16, y + 4);
    fprintf(f, "</g>\n");
}

/* Marks the points of series s that no other point of s beats: sorted by x, each that has a
 * lower y than every point before it. */
static void mark_front(rp_point *p, int n, int s, int hi, int *order, int *m) {
    const double sx = hi ? -1 : 1; /* hi: a higher x is the better one */
    *m = 0;
    for (int i = 0; i < n; i++)
        if (p[i].series == s) order[(*m)++] = i;
    for (int i = 1; i < *m; i++) /* insertion sort by (x, y): a handful of points */
        for (int j = i; j > 0; j--) {
            const rp_point *a = &p[order[j - 1]], *b = &p[order[j]];
            if (sx * a->x < sx * b->x || (a->x == b->x && a->y <= b->y)) break;
            const int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    double best = INFINITY;
    for (int i = 0; i < *m; i++) {
        rp_point *q = &p[order[i]];
        q->front = q->y < best;
        if (q->front) best = q->y;
    }
}

void rp_svg_scatter(FILE *f, const rp_plot *pl, rp_point *p, int n) {
    double xmn = INFINITY, xmx = -INFINITY, ymn = INFINITY, ymx = -INFINITY;
    for (int i = 0; i < n; i++) {
        xmn = fmin(xmn, p[i].x), xmx = fmax(xmx, p[i].x);
        ymn = fmin(ymn, p[i].y), ymx = fmax(ymx, p[i].y);
    }
    const axis ax = make_axis(xmn, xmx, 0, 0), ay = make_axis(ymn, ymx, pl->y_log, 0);
    frame(f, pl, &ax, &ay);
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    for (int s = 0; pl->pareto && order && s < pl->n_series; s++) {
        int m;
        mark_front(p, n, s, pl->pareto == 2, order, &m);
        fprintf(f, "<polyline class=\"front\" stroke=\"%s\" points=\"", palette[s % N_PALETTE]);
        for (int i = 0; i < m; i++)
            if (p[order[i]].front) fprintf(f, "%.1f,%.1f ", px(&ax, p[order[i]].x), py(&ay, p[order[i]].y));
        fprintf(f, "\"/>\n");
    }
    free(order);
    for (int i = 0; i < n; i++) {
        const double x = px(&ax, p[i].x), y = py(&ay, p[i].y);
        fprintf(f, "<g class=\"pt\"><title>");
        rp_html_escape(f, p[i].tip);
        fprintf(f, "</title>");
        if (pl->pareto && p[i].front)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"8\" class=\"ring\"/>", x, y);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>", x, y,
                palette[p[i].series % N_PALETTE]);
        if (p[i].label) {
            /* labels right of the point, or left of it near the right edge */
            const int left = x > X1 - 110;
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"plabel\"%s>", left ? x - 9 : x + 9, y - 7,
                    left ? " text-anchor=\"end\"" : "");
            rp_html_escape(f, p[i].label);
            fprintf(f, "</text>");
        }
        fprintf(f, "</g>\n");
    }
    legend(f, pl, pl->pareto);
    fprintf(f, "</svg>\n");
}

void rp_svg_bars(FILE *f, const rp_plot *pl, const char *const *groups, int n_groups,
                 const double *values, const char *const *tips) {
    const int ns = pl->n_series;
    double mx = 0;
    for (int i = 0; i < n_groups * ns; i++) mx = fmax(mx, values[i]);
    const axis ay = make_axis(0, mx > 0 ? mx : 1, 0, 1);
    frame(f, pl, NULL, &ay);
    const double gw = (double)(X1 - X0) / (n_groups ? n_groups : 1), bw = gw * 0.7 / ns;
    for (int g = 0; g < n_groups; g++) {
        const double gx = X0 + g * gw + gw * 0.15;
        for (int s = 0; s < ns; s++) {
            const double v = values[g * ns + s];
            if (v < 0) continue;
            const double y = py(&ay, v);
            fprintf(f, "<g class=\"bar\"><title>");
            rp_html_escape(f, tips[g * ns + s]);
            fprintf(f, "</title><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" class=\"plabel\" text-anchor=\"middle\">%.0f</text></g>\n",
                    gx + s * bw, y, bw - 2, Y1 - y, palette[s % N_PALETTE], gx + s * bw + bw / 2 - 1,
                    y - 4, v);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">", X0 + g * gw + gw / 2,
                Y1 + 19);
        rp_html_escape(f, groups[g]);
        fprintf(f, "</text>\n");
    }
    legend(f, pl, 0);
    fprintf(f, "</svg>\n");
}
