/* test_layers.c - the layering of docs/ARCHITECTURE.md, enforced: every `#include "..."` in
 * src/ and tools/ must point at the file's own folder, at a layer listed before its own, or at
 * include/sqz.h. The layers are read from the ```layers block of docs/ARCHITECTURE.md (one
 * line per layer, lowest first; folders on one line are peers and may not include each
 * other), so the picture and the check cannot drift apart. A folder of src/ the picture does
 * not name fails too.
 *
 * Before the real tree, the checker runs on small planted trees (an upward include, a peer's
 * include, a folder the picture lacks, a clean tree) to show that it does fail when it must. */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#include "test.h"

enum { MAX_LAYERS = 64 };

typedef struct layers {
    char name[MAX_LAYERS][32];
    int rank[MAX_LAYERS]; /* line of the picture, 0 = lowest */
    int n;
} layers;

/* Parses the ```layers block of the document text doc. Returns the number of layers. */
static int parse_layers(const char *doc, layers *L) {
    L->n = 0;
    const char *p = strstr(doc, "```layers\n");
    if (!p) return 0;
    p += strlen("```layers\n");
    for (int line = 0; *p && strncmp(p, "```", 3); line++) {
        const char *eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        const char *hash = memchr(p, '#', (size_t)(eol - p));
        const char *end = hash ? hash : eol;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t')) p++;
            const char *w = p;
            while (p < end && *p != ' ' && *p != '\t') p++;
            if (p > w && L->n < MAX_LAYERS && p - w < 32) {
                memcpy(L->name[L->n], w, (size_t)(p - w));
                L->name[L->n][p - w] = 0;
                L->rank[L->n++] = line;
            }
        }
        p = *eol ? eol + 1 : eol;
    }
    return L->n;
}

static int layer_of(const layers *L, const char *name) {
    for (int i = 0; i < L->n; i++)
        if (!strcmp(L->name[i], name)) return i;
    return -1;
}

/* Checks one file of folder `layer` (an index into L); prints and counts each bad include. */
static int check_file(const char *root, const char *rel, const layers *L, int layer) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    size_t len;
    char *text = (char *)test_read_file(path, &len);
    if (!text) {
        printf("# cannot read %s\n", path);
        return 1;
    }
    int bad = 0, line = 1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\n') { line++; continue; }
        if (i > 0 && text[i - 1] != '\n') continue; /* a line's start: blanks, '#', blanks, include */
        size_t j = i;
        while (j < len && (text[j] == ' ' || text[j] == '\t')) j++;
        if (j >= len || text[j] != '#') continue;
        j++;
        while (j < len && (text[j] == ' ' || text[j] == '\t')) j++;
        if (len - j < 8 || strncmp(text + j, "include", 7)) continue;
        j += 7;
        while (j < len && (text[j] == ' ' || text[j] == '\t')) j++;
        if (j >= len || text[j] != '"') continue; /* <system> headers are not layers */
        const char *inc = text + j + 1, *q = memchr(inc, '"', len - j - 1);
        if (!q) continue;
        char target[256];
        snprintf(target, sizeof target, "%.*s", (int)(q - inc), inc);
        const char *slash = strchr(target, '/');
        if (!slash) {
            if (!strcmp(target, "sqz.h")) continue; /* the public API: every layer's contract */
            char sib[4096]; /* a file of the same folder, named without it (tools/sqz/cli.h) */
            snprintf(sib, sizeof sib, "%s/%.*s/%s", root, (int)(strrchr(rel, '/') - rel), rel, target);
            if (access(sib, R_OK) == 0) continue;
            printf("# %s:%d: #include \"%s\" names no layer\n", rel, line, target);
            bad++;
            continue;
        }
        char folder[64];
        snprintf(folder, sizeof folder, "%.*s", (int)(slash - target), target);
        const int t = layer_of(L, folder);
        if (t < 0) {
            printf("# %s:%d: #include \"%s\": %s is not a layer of the picture\n", rel, line, target, folder);
            bad++;
        } else if (t != layer && L->rank[t] >= L->rank[layer]) {
            printf("# %s:%d: #include \"%s\": %s may not include %s, %s\n", rel, line, target,
                   L->name[layer], folder, L->rank[t] == L->rank[layer] ? "its peer" : "a layer above it");
            bad++;
        }
    }
    free(text);
    return bad;
}

/* Every .c / .h directly in root/dir/<folder>/, each folder checked as the layer it names
 * (under tools/, every folder is the layer "tools"). Returns the number of bad includes. */
static int check_dir(const char *root, const char *dir, const layers *L, int *n_files) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, dir);
    DIR *d = opendir(path);
    if (!d) return 0;
    int bad = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char sub[4096], rel_dir[512];
        snprintf(rel_dir, sizeof rel_dir, "%s/%s", dir, e->d_name);
        snprintf(sub, sizeof sub, "%s/%s", root, rel_dir);
        struct stat st;
        if (stat(sub, &st) || !S_ISDIR(st.st_mode)) continue;
        const int layer = layer_of(L, strcmp(dir, "tools") ? e->d_name : "tools");
        if (layer < 0) {
            printf("# %s: a folder the picture in docs/ARCHITECTURE.md does not name\n", rel_dir);
            bad++;
            continue;
        }
        DIR *f = opendir(sub);
        struct dirent *g;
        while (f && (g = readdir(f))) {
            const size_t n = strlen(g->d_name);
            if (n < 3 || (strcmp(g->d_name + n - 2, ".c") && strcmp(g->d_name + n - 2, ".h"))) continue;
            char rel[1024];
            snprintf(rel, sizeof rel, "%s/%s", rel_dir, g->d_name);
            bad += check_file(root, rel, L, layer);
            (*n_files)++;
        }
        if (f) closedir(f);
    }
    closedir(d);
    return bad;
}

static int check_tree(const char *root, const layers *L, int *n_files) {
    *n_files = 0;
    return check_dir(root, "src", L, n_files) + check_dir(root, "tools", L, n_files);
}

/* ---- planted trees */

static void write_file(const char *path, const char *text) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        mkdir(dir, 0755);
        *s = '/';
    }
    FILE *f = fopen(path, "w");
    if (f) { fputs(text, f); fclose(f); }
}

static int planted(const char *tmp, const char *name, const char *file, const char *text,
                   const layers *L) {
    char root[1024], path[4096];
    snprintf(root, sizeof root, "%.512s/%.64s", tmp, name);
    snprintf(path, sizeof path, "%s/src/core/ok.c", root);
    write_file(path, "#include \"core/ok.h\"\n#include \"sqz.h\"\n#include <stdio.h>\n");
    snprintf(path, sizeof path, "%s/src/model/ok.c", root);
    write_file(path, "#include \"core/ok.h\"\n#include \"kernels/k.h\"\n");
    snprintf(path, sizeof path, "%s/tools/cli/main.c", root);
    write_file(path, "#include \"cli.h\"\n#include \"sqz.h\"\n");
    snprintf(path, sizeof path, "%s/tools/cli/cli.h", root);
    write_file(path, "#include \"sqz.h\"\n");
    if (file) {
        snprintf(path, sizeof path, "%s/%s", root, file);
        write_file(path, text);
    }
    int n;
    return check_tree(root, L, &n);
}

int main(void) {
    size_t len;
    char *doc = (char *)test_read_file("docs/ARCHITECTURE.md", &len);
    CHECK(doc != NULL, "docs/ARCHITECTURE.md is readable (run from the repository root)");
    if (!doc) return test_done();
    doc = realloc(doc, len + 1);
    doc[len] = 0;
    layers L;
    CHECK(parse_layers(doc, &L) >= 8, "docs/ARCHITECTURE.md has a ```layers block (%d layers)", L.n);
    CHECK(layer_of(&L, "core") == 0, "core is the lowest layer");
    CHECK(layer_of(&L, "tools") == L.n - 1, "tools is the highest layer");

    char tmp[] = "/tmp/sqz-layers-XXXXXX";
    CHECK(mkdtemp(tmp) != NULL, "a scratch folder");
    CHECK(planted(tmp, "clean", NULL, NULL, &L) == 0, "a clean planted tree passes");
    CHECK(planted(tmp, "up", "src/core/bad.c", "#include \"core/ok.h\"\n#include \"model/model.h\"\n", &L) == 1,
          "core including model (upward) fails");
    CHECK(planted(tmp, "up2", "src/kernels/bad.h", "  #  include \"quant/gptq.h\"\n", &L) == 1,
          "a spaced-out #include upward fails too");
    CHECK(planted(tmp, "unknown", "src/newthing/x.c", "#include \"core/ok.h\"\n", &L) == 1,
          "a folder the picture does not name fails");
    CHECK(planted(tmp, "nolayer", "src/model/x.c", "#include \"wherever.h\"\n", &L) == 1,
          "an include that names no layer fails");
    CHECK(planted(tmp, "tools", "tools/cli/x.c", "#include \"model/model.h\"\n", &L) == 0,
          "tools may include any layer below it");
    /* peers: two folders on one line of the picture, if it has such a line */
    int pa = -1, pb = -1;
    for (int i = 0; i + 1 < L.n && pa < 0; i++)
        if (L.rank[i] == L.rank[i + 1]) pa = i, pb = i + 1;
    if (pa >= 0) {
        char file[128], text[160];
        snprintf(file, sizeof file, "src/%s/x.c", L.name[pa]);
        snprintf(text, sizeof text, "#include \"%s/y.h\"\n", L.name[pb]);
        CHECK(planted(tmp, "peers", file, text, &L) == 1, "%s including its peer %s fails", L.name[pa],
              L.name[pb]);
    }
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "scratch folder removed");

    int n_files = 0;
    const int bad = check_tree(".", &L, &n_files);
    CHECK(n_files > 100, "the real tree: %d files of src/ and tools/ read", n_files);
    CHECK(bad == 0, "the real tree: every #include looks down (%d that do not, listed above)", bad);
    free(doc);
    return test_done();
}
