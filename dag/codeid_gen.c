/* Build-time tool: prints the code identity of one stage source file.
 *
 * The identity is XXH3-128 over the sorted (path, contents) of every source that builds the
 * stage: the stage file itself, and for each project header it includes (transitively), every
 * source in that header's module folder (recursively), since a header's behaviour lives in the
 * .c files beside it. Module granularity over-approximates, which only costs a rerun; missing a
 * source would cost a false cache hit.
 *
 * usage: codeid_gen ROOT STAGE.c */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

typedef struct {
    char **v;
    size_t n, cap;
} strset;

static int set_has(const strset *s, const char *p) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], p)) return 1;
    return 0;
}

static int set_add(strset *s, const char *p) {
    if (set_has(s, p)) return 0;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) exit(2);
    }
    s->v[s->n++] = strdup(p);
    return 1;
}

static int is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_source(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcmp(dot, ".c") || !strcmp(dot, ".h") || !strcmp(dot, ".cu") ||
                   !strcmp(dot, ".cuh"));
}

static strset files, dirs;

static void add_file(const char *path);

static void add_dir(const char *dir) {
    if (!set_add(&dirs, dir)) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(p, &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            add_dir(p);
        else if (S_ISREG(st.st_mode) && is_source(de->d_name))
            add_file(p);
    }
    closedir(d);
}

static void add_file(const char *path) {
    if (!set_add(&files, path)) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (*s != '#') continue;
        s++;
        while (*s == ' ' || *s == '\t') s++;
        if (strncmp(s, "include", 7)) continue;
        char *q = strchr(s, '"');
        if (!q) continue;
        char *e = strchr(q + 1, '"');
        if (!e) continue;
        *e = '\0';
        const char *inc = q + 1;
        if (!is_file(inc)) continue; /* generated (codeid/...) or system: not ours */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", inc);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
            add_dir(dir);
        } else {
            add_file(inc);
        }
    }
    fclose(f);
}

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: codeid_gen ROOT STAGE.c\n");
        return 2;
    }
    if (chdir(argv[1]) != 0) {
        perror(argv[1]);
        return 2;
    }
    if (!is_file(argv[2])) {
        fprintf(stderr, "codeid_gen: no such file %s\n", argv[2]);
        return 2;
    }
    add_file(argv[2]);
    qsort(files.v, files.n, sizeof *files.v, cmp);
    XXH3_state_t *st = XXH3_createState();
    XXH3_128bits_reset(st);
    for (size_t i = 0; i < files.n; i++) {
        FILE *f = fopen(files.v[i], "rb");
        if (!f) continue;
        XXH3_128bits_update(st, files.v[i], strlen(files.v[i]) + 1);
        char buf[65536];
        size_t r;
        while ((r = fread(buf, 1, sizeof buf, f)) > 0) XXH3_128bits_update(st, buf, r);
        fclose(f);
        XXH3_128bits_update(st, "\0", 1);
    }
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    printf("%016llx%016llx\n", (unsigned long long)h.high64, (unsigned long long)h.low64);
    return 0;
}
