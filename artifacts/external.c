/* fl_store_hash_external: the digest of an external input (a file, or a directory as a Merkle
 * tree), reading only the files the stat cache cannot vouch for.
 *
 * One walk stats everything (following symbolic links, refusing FIFOs, devices, sockets and
 * directory cycles) and builds the directory trees in memory; files the cache does not cover
 * become jobs. The jobs are hashed by a few threads when there are many (a first run over
 * 80,000 images), then recorded in the cache and the trees are digested bottom-up. Threads are
 * plain pthreads, created and joined inside the call: no pool outlives it, so the executor can
 * fork stage processes afterwards without inheriting a half-alive runtime. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "artifacts/store_internal.h"

#define PATH_CAP 4096
#define PAR_MIN_JOBS 64 /* below this, threads cost more than they save */
#define MAX_THREADS 8   /* hashing from page cache saturates memory bandwidth around here */

typedef struct wnode {
    fl_tree t;
    struct wnode **kids; /* kids[i]: the subtree of t.v[i] when it is a directory, else NULL */
    size_t nkids, capkids;
} wnode;

typedef struct place {
    wnode *node; /* NULL: the input itself is this file */
    size_t idx;  /* entry of node->t that receives the digest */
} place;

typedef struct walk {
    fl_store *s;
    fl_hash_stats *st;
    int64_t ref_ns; /* CLOCK_REALTIME_COARSE before any file of this call was opened */
    fl_hash_job *jobs;
    place *places; /* parallel to jobs */
    size_t njobs, capjobs;
} walk;

typedef struct pool {
    fl_hash_job *jobs;
    size_t n;
    atomic_size_t next; /* next job for a worker */
} pool;

typedef struct ancestor {
    dev_t dev;
    ino_t ino;
    const struct ancestor *up;
} ancestor;

static void free_node(wnode *n) {
    if (!n) return;
    for (size_t i = 0; i < n->nkids; i++) free_node(n->kids[i]);
    free(n->kids);
    fl__tree_free(&n->t);
    free(n);
}

/* Adds an entry to n (and its subtree slot, kid may be NULL). */
static int node_add(wnode *n, const char *name, char mode, const fl_digest *d, wnode *kid, fl_err *e) {
    if (n->nkids == n->capkids) {
        size_t nc = n->capkids ? n->capkids * 2 : 16;
        wnode **nk = realloc(n->kids, nc * sizeof *nk);
        if (!nk) return fl_errf(e, "out of memory");
        n->kids = nk;
        n->capkids = nc;
    }
    if (fl__tree_add(&n->t, name, mode, d, e) != 0) return -1;
    n->kids[n->nkids++] = kid;
    return 0;
}

static int add_job(walk *w, const char *abs, wnode *node, size_t idx, fl_err *e) {
    if (w->njobs == w->capjobs) {
        size_t nc = w->capjobs ? w->capjobs * 2 : 256;
        fl_hash_job *nj = realloc(w->jobs, nc * sizeof *nj);
        if (nj) w->jobs = nj;
        place *np = nj ? realloc(w->places, nc * sizeof *np) : NULL;
        if (!np) return fl_errf(e, "out of memory");
        w->places = np;
        w->capjobs = nc;
    }
    fl_hash_job *j = &w->jobs[w->njobs];
    memset(j, 0, sizeof *j);
    if (!(j->path = strdup(abs))) return fl_errf(e, "out of memory");
    w->places[w->njobs] = (place){node, idx};
    w->njobs++;
    return 0;
}

static int walk_dir(walk *w, int dfd, char *abs, size_t alen, const ancestor *up, wnode *node,
                    fl_err *e);

/* One directory entry (followed if a symbolic link). abs holds the parent path (alen bytes);
 * the name is appended in place and removed again. */
static int add_entry(walk *w, int dfd, const char *name, char *abs, size_t alen,
                     const ancestor *up, wnode *node, fl_err *e) {
    size_t nl = strlen(name);
    if (alen + 1 + nl + 1 > PATH_CAP) return fl_errf(e, "path too long: %s/%s", abs, name);
    abs[alen] = '/';
    memcpy(abs + alen + 1, name, nl + 1);
    struct stat st;
    fl_digest d;
    memset(&d, 0, sizeof d);
    int rc = 0;
    if (fstatat(dfd, name, &st, 0) != 0) {
        rc = fl_errf(e, "cannot stat %s: %s", abs, strerror(errno));
    } else if (S_ISREG(st.st_mode)) {
        w->st->files_seen++;
        int hit = fl__statcache_lookup(w->s->sc, abs, &st, &d);
        rc = node_add(node, name, (st.st_mode & 0111) ? FL_MODE_EXEC : FL_MODE_FILE, &d, NULL, e);
        if (rc == 0 && !hit) rc = add_job(w, abs, node, node->t.n - 1, e);
    } else if (S_ISDIR(st.st_mode)) {
        for (const ancestor *a = up; a && rc == 0; a = a->up)
            if (a->dev == st.st_dev && a->ino == st.st_ino)
                rc = fl_errf(e, "external input %s: directory cycle through a symbolic link", abs);
        wnode *kid = rc == 0 ? calloc(1, sizeof *kid) : NULL;
        if (rc == 0 && !kid) rc = fl_errf(e, "out of memory");
        if (rc == 0 && (rc = node_add(node, name, FL_MODE_DIR, &d, kid, e)) != 0) free(kid);
        if (rc == 0) {
            int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            ancestor me = {st.st_dev, st.st_ino, up};
            rc = cfd < 0 ? fl_errf(e, "cannot open directory %s: %s", abs, strerror(errno))
                         : walk_dir(w, cfd, abs, alen + 1 + nl, &me, kid, e);
        }
    } else {
        rc = fl_errf(e, "external input %s is not a regular file or directory", abs);
    }
    abs[alen] = '\0';
    return rc;
}

/* Walks the directory open as dfd (consumed) whose absolute path is abs[0..alen). */
static int walk_dir(walk *w, int dfd, char *abs, size_t alen, const ancestor *up, wnode *node,
                    fl_err *e) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return fl_errf(e, "cannot open directory %s: %s", abs, strerror(errno));
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (errno = 0, de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        rc = add_entry(w, dirfd(d), de->d_name, abs, alen, up, node, e);
    }
    if (rc == 0 && errno) rc = fl_errf(e, "cannot read directory %s: %s", abs, strerror(errno));
    closedir(d);
    return rc;
}

static void run_job(fl_hash_job *j) {
    fl_err e;
    /* O_NONBLOCK: a file swapped for a FIFO since it was listed must not hang the run. */
    int fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        fl_errf(&e, "cannot open %s: %s", j->path, strerror(errno));
    } else if (fstat(fd, &j->fst) != 0) {
        fl_errf(&e, "cannot stat %s: %s", j->path, strerror(errno));
    } else if (!S_ISREG(j->fst.st_mode)) {
        fl_errf(&e, "%s is not a regular file", j->path);
    } else if (fl__hash_fd(fd, j->path, &j->d, &j->bytes, &e) == 0) {
        close(fd);
        return;
    }
    if (fd >= 0) close(fd);
    j->err = strdup(e.msg);
    if (!j->err) j->err = strdup("out of memory");
}

static void *worker(void *arg) {
    pool *p = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n) return NULL;
        run_job(&p->jobs[i]);
    }
}

void fl__hash_jobs(fl_hash_job *jobs, size_t n) {
    pool p = {jobs, n, 0};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = n >= PAR_MIN_JOBS && cpus > 1 ? (size_t)cpus : 1;
    if (want > MAX_THREADS) want = MAX_THREADS;
    pthread_t tid[MAX_THREADS];
    size_t started = 0;
    for (size_t i = 1; i < want; i++) /* fewer threads if creation fails: same result */
        if (pthread_create(&tid[started], NULL, worker, &p) == 0) started++;
    worker(&p);
    for (size_t i = 0; i < started; i++) pthread_join(tid[i], NULL);
}

/* Records the jobs' results (in walk order, so the first failure reported is deterministic). */
static int collect_jobs(walk *w, fl_digest *single, fl_err *e) {
    for (size_t i = 0; i < w->njobs; i++) {
        fl_hash_job *j = &w->jobs[i];
        if (j->err) return fl_errf(e, "%s", j->err);
        if (fl__statcache_record(w->s->sc, j->path, &j->fst, w->ref_ns, &j->d, e) != 0) return -1;
        w->st->files_hashed++;
        w->st->bytes_hashed += j->bytes;
        if (w->places[i].node) w->places[i].node->t.v[w->places[i].idx].d = j->d;
        else *single = j->d;
    }
    return 0;
}

/* Digests a finished node bottom-up (subtree digests first, then this tree's encoding). */
static int finalize(wnode *n, fl_digest *out, fl_err *e) {
    for (size_t i = 0; i < n->nkids; i++)
        if (n->kids[i] && finalize(n->kids[i], &n->t.v[i].d, e) != 0) return -1;
    return fl__tree_compute(&n->t, out, e); /* sorts n->t: kids[] no longer line up after this */
}

int fl_store_hash_external(fl_store *s, const char *path, fl_digest *out, fl_hash_stats *stats,
                           fl_err *e) {
    fl_hash_stats local = {0};
    if (!stats) stats = &local;
    if (fl__statcache_load(s, e) != 0) return -1;
    char abs[PATH_CAP];
    if (path[0] == '/') {
        if (strlen(path) >= sizeof abs) return fl_errf(e, "path too long: %s", path);
        strcpy(abs, path);
    } else {
        if (!getcwd(abs, sizeof abs)) return fl_errf(e, "cannot resolve %s: %s", path, strerror(errno));
        size_t l = strlen(abs);
        if (l + 1 + strlen(path) >= sizeof abs) return fl_errf(e, "path too long: %s", path);
        if (abs[l - 1] != '/') abs[l++] = '/';
        strcpy(abs + l, path);
    }
    size_t alen = strlen(abs);
    while (alen > 1 && abs[alen - 1] == '/') abs[--alen] = '\0';
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    walk w;
    memset(&w, 0, sizeof w);
    w.s = s;
    w.st = stats;
    w.ref_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    struct stat st;
    if (stat(abs, &st) != 0) {
        if (errno == ENOENT) return fl_errf(e, "external input %s does not exist", path);
        return fl_errf(e, "cannot stat external input %s: %s", path, strerror(errno));
    }
    int rc;
    wnode *root = NULL;
    if (S_ISREG(st.st_mode)) {
        stats->files_seen++;
        if (fl__statcache_lookup(s->sc, abs, &st, out)) return 0;
        rc = add_job(&w, abs, NULL, 0, e);
    } else if (S_ISDIR(st.st_mode)) {
        int dfd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ancestor me = {st.st_dev, st.st_ino, NULL};
        root = calloc(1, sizeof *root);
        if (!root) rc = fl_errf(e, "out of memory");
        else if (dfd < 0) rc = fl_errf(e, "cannot open directory %s: %s", abs, strerror(errno));
        else rc = walk_dir(&w, dfd, abs, alen, &me, root, e);
        if (dfd >= 0 && !root) close(dfd);
    } else {
        return fl_errf(e, "external input %s is not a regular file or directory", path);
    }
    if (rc == 0) {
        fl__hash_jobs(w.jobs, w.njobs);
        rc = collect_jobs(&w, out, e);
    }
    if (rc == 0 && root) rc = finalize(root, out, e);
    fl__hash_jobs_free(w.jobs, w.njobs);
    free(w.places);
    free_node(root);
    return rc;
}

void fl__hash_jobs_free(fl_hash_job *jobs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(jobs[i].path);
        free(jobs[i].err);
    }
    free(jobs);
}
