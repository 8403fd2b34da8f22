/* bench_util.h - what every benchmark here needs: a wall clock, a whole-file reader, a qsort
 * comparator for medians, and how much CPU other processes took during a run (a 2-core
 * machine's benchmarks mean nothing while a build runs beside them; each bench reports it as
 * "other_processes_cores" and warns above 0.1 core).
 * Header-only (static functions): each bench is one .c file linked alone with libsqz. */
#ifndef SQZ_BENCH_UTIL_H
#define SQZ_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort's comparator for doubles, ascending (medians of timings). */
static inline int cmp_double(const void *a, const void *b) { /* inline: not every bench sorts */
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* CPU time of the whole machine (all cores, busy states of /proc/stat) and of this process, in
 * seconds: their difference over a stretch of wall time is what other processes used. */
typedef struct cpu_mark {
    double wall, machine, self;
} cpu_mark;

static cpu_mark cpu_now(void) {
    cpu_mark m = { now(), -1, 0 };
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        unsigned long long v[8] = { 0 };
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8)
            m.machine = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100.0; /* USER_HZ */
        fclose(f);
    }
    struct rusage ru;
    if (!getrusage(RUSAGE_SELF, &ru))
        m.self = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                 (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    return m;
}

/* Cores' worth of CPU that other processes used between a and b (-1: unknown). */
static double others_cores(cpu_mark a, cpu_mark b) {
    if (a.machine < 0 || b.machine < 0 || b.wall <= a.wall) return -1;
    const double o = ((b.machine - a.machine) - (b.self - a.self)) / (b.wall - a.wall);
    return o > 0 ? o : 0;
}

/* The whole file at path, NUL-terminated, its length in *len; NULL when it cannot be read. */
static inline char *read_file(const char *path, size_t *len) { /* inline: not every bench reads a file */
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) free(b), b = NULL;
    fclose(f);
    if (b) b[n] = 0, *len = (size_t)n;
    return b;
}

#endif
