/* Build-time tool: the code identity of each stage, computed from the built objects.
 *
 * A stage's identity is XXH3-128 over exactly what the linker would put behind it:
 *   - its object, and transitively every object that defines a symbol one of them leaves
 *     undefined (what `ld` pulls from libfluke.a to resolve the stage; symbols come from `nm`);
 *   - for each such object, its source and every project header it was compiled with (the
 *     -MMD dependency file beside the object), each as (path, contents);
 *   - the compiler and flags files given with -c (C objects) and -u (CUDA objects, only when
 *     one is needed).
 * Editing a source no needed object was built from leaves the id alone; editing anything that
 * built a needed object (code, a header, a flag) changes it. Symbols that no given object
 * defines (libc, OpenBLAS, ...) are outside the identity, as are the executor's own files: a
 * stage reaches them only through the stage API, whose objects are in the closure.
 *
 * The ids cannot live in the stage objects (they depend on them), so each stage's generated
 * header declares `extern const char fl_code_id__NAME[]` and this tool writes NAME.c defining
 * it; NAME.c (and NAME.files, the list of what was hashed) is rewritten only when it changes,
 * so only an id that changed recompiles and relinks anything.
 *
 * usage: codeid_gen [-c CFLAGS_FILE] [-u CUFLAGS_FILE] [-o OUTDIR] STAGE.o... [-- OBJ...]
 *   STAGE.o: the stage objects (NAME from the file name); OBJ: every other object the binaries
 *   link from the project. Without -o the ids are printed as "NAME ID" lines.
 *   NM in the environment names the nm program (default nm). */
#include <errno.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

extern char **environ;

static void die(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "codeid_gen: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) die("out of memory%s%s", "", "");
    return p;
}

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) die("out of memory%s%s", "", "");
    return d;
}

typedef struct {
    char **v;
    size_t n, cap;
} strvec;

static void vec_push(strvec *s, char *p) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = p;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char *path;
    strvec undef; /* symbols it uses and does not define */
    int mark;     /* closure visit stamp */
} object;

typedef struct {
    const char *sym;
    size_t obj;
} def;

static object *objs;
static size_t nobj;
static def *defs;
static size_t ndef, capdef;

static size_t obj_index(const char *path) {
    for (size_t i = 0; i < nobj; i++)
        if (!strcmp(objs[i].path, path)) return i;
    return SIZE_MAX;
}

static int cmp_def(const void *a, const void *b) {
    const def *x = a, *y = b;
    int c = strcmp(x->sym, y->sym);
    return c ? c : (x->obj > y->obj) - (x->obj < y->obj);
}

/* nm -A -P lines: "PATH: SYMBOL TYPE [VALUE SIZE]". U/w/v are undefined (w/v weakly), other
 * upper-case types and u/i are global definitions; the rest are local. */
static void read_symbols(void) {
    const char *nm = getenv("NM");
    if (!nm || !*nm) nm = "nm";
    char **argv = xrealloc(NULL, (nobj + 4) * sizeof *argv);
    size_t k = 0;
    argv[k++] = (char *)nm;
    argv[k++] = "-A";
    argv[k++] = "-P";
    for (size_t i = 0; i < nobj; i++) argv[k++] = objs[i].path;
    argv[k] = NULL;
    int fd[2];
    if (pipe(fd) != 0) die("pipe: %s%s", strerror(errno), "");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, nm, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc != 0) die("cannot run %s: %s", nm, strerror(rc));
    FILE *f = fdopen(fd[0], "r");
    if (!f) die("fdopen: %s%s", strerror(errno), "");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    size_t cur = SIZE_MAX;
    while ((len = getline(&line, &cap, f)) > 0) {
        char *sep = strstr(line, ": ");
        if (!sep) continue;
        *sep = '\0';
        if (cur == SIZE_MAX || strcmp(objs[cur].path, line)) cur = obj_index(line);
        if (cur == SIZE_MAX) die("nm printed symbols of %s, which was not asked for%s", line, "");
        char *sym = strtok(sep + 2, " \n");
        char *type = strtok(NULL, " \n");
        if (!sym || !type || type[1]) continue;
        char t = type[0];
        if (t == 'U' || t == 'w' || t == 'v') {
            vec_push(&objs[cur].undef, xstrdup(sym));
        } else if ((t >= 'A' && t <= 'Z') || t == 'u' || t == 'i') {
            if (ndef == capdef) {
                capdef = capdef ? capdef * 2 : 1024;
                defs = xrealloc(defs, capdef * sizeof *defs);
            }
            defs[ndef++] = (def){xstrdup(sym), cur};
        }
    }
    free(line);
    fclose(f);
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char sts[32];
        snprintf(sts, sizeof sts, "%d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        die("%s failed on the objects (exit status %s)", nm, sts);
    }
    free(argv);
    qsort(defs, ndef, sizeof *defs, cmp_def);
}

/* Every object defining sym (several for weak or duplicate definitions: all are kept, which can
 * only over-approximate). */
static void defining(const char *sym, size_t *lo, size_t *hi) {
    size_t a = 0, b = ndef;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (strcmp(defs[m].sym, sym) < 0) a = m + 1;
        else b = m;
    }
    *lo = a;
    while (a < ndef && !strcmp(defs[a].sym, sym)) a++;
    *hi = a;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0, r;
    do {
        if (cap - n < 65536) buf = xrealloc(buf, cap = cap * 2 + 65536);
        r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
    } while (r > 0);
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static char *cwd_prefix;

/* The prerequisites of an object's dependency file (its source first, then headers), with the
 * working directory stripped so the identity does not depend on where the tree lives. */
static void dep_files(const char *objpath, strvec *out) {
    size_t pl = strlen(objpath);
    char *dpath = xrealloc(NULL, pl + 1);
    memcpy(dpath, objpath, pl + 1);
    dpath[pl - 1] = 'd'; /* x.o -> x.d, x.cu.o -> x.cu.d */
    size_t len;
    char *buf = read_all(dpath, &len);
    if (!buf)
        die("no dependency file %s for %s: objects must be compiled with -MMD", dpath, objpath);
    char *colon = strstr(buf, ": ");
    if (!colon) colon = strstr(buf, ":\n");
    if (!colon) die("%s: no rule in the dependency file%s", dpath, "");
    char *p = colon + 1, tok[4096];
    size_t tl = 0;
    for (;; p++) {
        int end_rule = *p == '\0' || (*p == '\n' && p[-1] != '\\');
        if (*p == '\\' && (p[1] == '\n' || p[1] == '\r')) continue;
        if (*p == '\\' && p[1] == ' ') {
            p++;
        } else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\0') {
            if (tl) {
                tok[tl] = '\0';
                const char *t = tok;
                size_t cl = strlen(cwd_prefix);
                if (!strncmp(t, cwd_prefix, cl) && t[cl] == '/') t += cl + 1;
                vec_push(out, xstrdup(t));
                tl = 0;
            }
            if (end_rule) break;
            continue;
        }
        if (tl + 1 >= sizeof tok) die("%s: a path longer than 4 KB%s", dpath, "");
        tok[tl++] = *p;
    }
    free(buf);
    free(dpath);
}

static int is_cuda(const char *objpath) {
    size_t n = strlen(objpath);
    return n > 5 && !strcmp(objpath + n - 5, ".cu.o");
}

static void hash_file(XXH3_state_t *st, const char *tag, const char *path) {
    size_t len;
    char *buf = read_all(path, &len);
    if (!buf) die("cannot read %s: %s", path, strerror(errno));
    uint64_t n = len;
    XXH3_128bits_update(st, tag, strlen(tag) + 1);
    XXH3_128bits_update(st, path, strlen(path) + 1);
    XXH3_128bits_update(st, &n, sizeof n);
    XXH3_128bits_update(st, buf, len);
    free(buf);
}

/* Writes path only when its contents differ, so make sees a newer file exactly on a change. */
static void write_if_changed(const char *path, const char *text) {
    size_t len;
    char *old = read_all(path, &len);
    int same = old && len == strlen(text) && !memcmp(old, text, len);
    free(old);
    if (same) return;
    char *tmp = xrealloc(NULL, strlen(path) + 8);
    sprintf(tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) die("cannot write %s: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0) die("cannot rename to %s: %s", path, strerror(errno));
    free(tmp);
}

static void stage_name(const char *objpath, char *name, size_t cap) {
    const char *b = strrchr(objpath, '/');
    b = b ? b + 1 : objpath;
    size_t n = strlen(b);
    if (n < 3 || strcmp(b + n - 2, ".o") || n - 2 >= cap)
        die("%s: a stage object is named NAME.o%s", objpath, "");
    memcpy(name, b, n - 2);
    name[n - 2] = '\0';
    for (char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_'))
            die("%s: the stage name '%s' is not a C identifier", objpath, name);
}

int main(int argc, char **argv) {
    const char *cflags = NULL, *cuflags = NULL, *outdir = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && strcmp(argv[i], "--"); i += 2) {
        if (i + 1 >= argc) die("%s needs a value%s", argv[i], "");
        if (!strcmp(argv[i], "-c")) cflags = argv[i + 1];
        else if (!strcmp(argv[i], "-u")) cuflags = argv[i + 1];
        else if (!strcmp(argv[i], "-o")) outdir = argv[i + 1];
        else die("unknown option %s (usage: codeid_gen [-c F] [-u F] [-o DIR] STAGE.o... -- OBJ...)%s",
                 argv[i], "");
    }
    size_t nroot = 0;
    objs = xrealloc(NULL, (size_t)argc * sizeof *objs);
    for (int in_roots = 1; i < argc; i++) {
        if (in_roots && !strcmp(argv[i], "--")) {
            in_roots = 0;
            continue;
        }
        if (obj_index(argv[i]) != SIZE_MAX) {
            if (in_roots) die("%s is named twice%s", argv[i], "");
            continue; /* a stage object is usually also a library object */
        }
        struct stat sb;
        if (stat(argv[i], &sb) != 0 || !S_ISREG(sb.st_mode)) die("no object %s%s", argv[i], "");
        objs[nobj++] = (object){.path = argv[i]};
        if (in_roots) nroot++;
    }
    if (!nroot) die("no stage objects given%s%s", "", "");
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) die("getcwd: %s%s", strerror(errno), "");
    cwd_prefix = cwd;
    read_symbols();

    char (*names)[256] = xrealloc(NULL, nroot * sizeof *names);
    size_t *queue = xrealloc(NULL, nobj * sizeof *queue);
    for (size_t r = 0; r < nroot; r++) {
        stage_name(objs[r].path, names[r], sizeof names[r]);
        for (size_t q = 0; q < r; q++)
            if (!strcmp(names[q], names[r]))
                die("two stage sources are named %s (%s): stage file names must be unique",
                    names[r], objs[r].path);
        /* The closure: breadth-first over undefined symbols. */
        size_t qn = 0;
        queue[qn++] = r;
        objs[r].mark = (int)r + 1;
        int cuda = 0;
        for (size_t h = 0; h < qn; h++) {
            object *o = &objs[queue[h]];
            cuda |= is_cuda(o->path);
            for (size_t u = 0; u < o->undef.n; u++) {
                size_t lo, hi;
                defining(o->undef.v[u], &lo, &hi);
                for (size_t d = lo; d < hi; d++) {
                    if (objs[defs[d].obj].mark == (int)r + 1) continue;
                    objs[defs[d].obj].mark = (int)r + 1;
                    queue[qn++] = defs[d].obj;
                }
            }
        }
        strvec files = {0};
        for (size_t h = 0; h < qn; h++) dep_files(objs[queue[h]].path, &files);
        qsort(files.v, files.n, sizeof *files.v, cmp_str);
        XXH3_state_t *st = XXH3_createState();
        if (!st) die("out of memory%s%s", "", "");
        XXH3_128bits_reset(st);
        if (cflags) hash_file(st, "flags", cflags);
        if (cuflags && cuda) hash_file(st, "cuda-flags", cuflags);
        size_t listed = 0, cap = 256;
        char *list = xrealloc(NULL, cap);
        list[0] = '\0';
        for (size_t k = 0; k < files.n; k++) {
            if (k && !strcmp(files.v[k], files.v[k - 1])) continue;
            hash_file(st, "file", files.v[k]);
            size_t need = listed + strlen(files.v[k]) + 2;
            if (need > cap) list = xrealloc(list, cap = need * 2);
            listed += (size_t)sprintf(list + listed, "%s\n", files.v[k]);
        }
        XXH128_hash_t hv = XXH3_128bits_digest(st);
        XXH3_freeState(st);
        char id[33];
        snprintf(id, sizeof id, "%016llx%016llx", (unsigned long long)hv.high64,
                 (unsigned long long)hv.low64);
        if (!outdir) {
            printf("%s %s\n", names[r], id);
        } else {
            size_t pl = strlen(outdir) + strlen(names[r]) + 16;
            char *path = xrealloc(NULL, pl);
            char *text = xrealloc(NULL, strlen(names[r]) * 2 + strlen(objs[r].path) + 256);
            sprintf(text,
                    "/* generated by dag/codeid_gen.c: the code identity of %s */\n"
                    "const char fl_code_id__%s[] = \"%s\";\n",
                    objs[r].path, names[r], id);
            snprintf(path, pl, "%s/%s.c", outdir, names[r]);
            write_if_changed(path, text);
            /* What the id covers, for a person asking why a stage reran. */
            char *man = xrealloc(NULL, listed + 256 + (cflags ? strlen(cflags) : 0) +
                                           (cuflags ? strlen(cuflags) : 0));
            sprintf(man, "%s\nflags %s\n%s%s%s%s", id, cflags ? cflags : "-",
                    cuflags && cuda ? "cuda-flags " : "", cuflags && cuda ? cuflags : "",
                    cuflags && cuda ? "\n" : "", list);
            snprintf(path, pl, "%s/%s.files", outdir, names[r]);
            write_if_changed(path, man);
            free(man);
            free(text);
            free(path);
        }
        for (size_t k = 0; k < files.n; k++) free(files.v[k]);
        free(files.v);
        free(list);
    }
    return 0;
}
