/* The detector's training set (dataset.h): box file + train.csv + test list -> train / val
 * loader items with a seeded hold-out by individual. */
#include "stages/detector/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WHOLE_FILE_MAX ((size_t)512 << 20) /* fallback header read: a JPEG this big is absurd */

/* ---------------------------------------------------------------- small helpers */

static uint64_t mix64(uint64_t x) { /* splitmix64's finaliser */
    x += UINT64_C(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = UINT64_C(1469598103934665603);
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    return h;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The test image names: the `image` column of a CSV (sample_submission.csv) or the regular files
 * of a folder. names[] are malloc'd copies. */
typedef struct name_list {
    int n, cap;
    char **v;
} name_list;

static void names_free(name_list *l) {
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int names_add(name_list *l, const char *s, fl_err *e) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, sizeof *v * (size_t)cap);
        if (!v) return fl_errf(e, "out of memory for the test image list");
        l->v = v, l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s))) return fl_errf(e, "out of memory for the test image list");
    l->n++;
    return 0;
}

static int read_test_names(const char *src, name_list *l, fl_err *e) {
    struct stat st;
    if (stat(src, &st) != 0) return fl_errf(e, "test image list %s: %s", src, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        DIR *dir = opendir(src);
        if (!dir) return fl_errf(e, "test image folder %s: %s", src, strerror(errno));
        struct dirent *de;
        int rc = 0;
        while (rc == 0 && (de = readdir(dir)))
            if (de->d_name[0] != '.') rc = names_add(l, de->d_name, e);
        closedir(dir);
        return rc;
    }
    fl_csv c;
    if (fl_csv_read(src, &c, e) != 0) return -1;
    static const char *const cols[] = {"image"};
    int icol, rc = fl_csv_require(&c, cols, 1, &icol, e);
    for (int r = 1; rc == 0 && r <= c.nrows; r++)
        rc = names_add(l, c.rows[r].f[icol], e);
    fl_csv_free(&c);
    return rc;
}

/* Reads the JPEG header of path from growing prefixes (FL_DETSET_PREFIX, 1 MiB, the whole file):
 * libjpeg needs everything up to the first start of scan, which a large APP segment (a thumbnail,
 * an ICC profile) can push past the first read. */
static int probe_file(const char *path, fl_decode_info *info, fl_err *e) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fl_errf(e, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fl_errf(e, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size > WHOLE_FILE_MAX) {
        close(fd);
        return fl_errf(e, "%s: %zu bytes, more than %zu for one JPEG", path, size, WHOLE_FILE_MAX);
    }
    static const size_t steps[] = {FL_DETSET_PREFIX, (size_t)1 << 20, WHOLE_FILE_MAX};
    uint8_t *buf = NULL;
    size_t got = 0;
    int rc = -1;
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        size_t want = size < steps[k] ? size : steps[k];
        if (k > 0 && want <= got) break; /* the whole file was read and did not do */
        uint8_t *nb = realloc(buf, want ? want : 1);
        if (!nb) {
            rc = fl_errf(e, "%s: out of memory", path);
            break;
        }
        buf = nb;
        while (got < want) {
            ssize_t r = pread(fd, buf + got, want - got, (off_t)got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        if ((rc = fl_jpeg_probe(buf, got, path, info, e)) == 0 || got < want) break;
    }
    free(buf);
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------- build */

typedef struct cand {
    int row; /* train.csv row (the item order) */
    const fl_box_entry *be;
    int w, h, bad; /* upright size; bad: the header did not read */
    char *err;     /* why, when bad */
} cand;

static int cmp_cand(const void *a, const void *b) {
    return ((const cand *)a)->row - ((const cand *)b)->row;
}

typedef struct ind_key {
    uint64_t h;
    const char *id;
    int val;
} ind_key;

static int cmp_ind(const void *pa, const void *pb) {
    const ind_key *a = pa, *b = pb;
    if (a->h != b->h) return a->h < b->h ? -1 : 1;
    return strcmp(a->id, b->id);
}

/* Appends line to a ", "-separated list of at most FL_DETSET_NAMES; 1 when it did not fit. */
static int append_line(char *buf, size_t cap, int *named, int line) {
    if (*named >= FL_DETSET_NAMES) return 1;
    size_t l = strlen(buf);
    snprintf(buf + l, cap - l, "%s%d", *named ? ", " : "", line);
    (*named)++;
    return 0;
}

void fl_detset_free(fl_detset *d) {
    if (!d) return;
    free(d->train), free(d->val), free(d->train_info), free(d->val_info);
    free(d->box_store);
    for (int i = 0; i < d->npaths; i++)
        free(d->path_store[i]);
    free(d->path_store);
    for (int i = 0; d->class_store && i < d->nclasses; i++)
        free(d->class_store[i]);
    free(d->class_store);
    free((void *)d->classes);
    for (int i = 0; i < d->nbad_names; i++)
        free((void *)d->bad_names[i]);
    fl_train_free(&d->tset);
    memset(d, 0, sizeof *d);
}

static int check_opts(const fl_detset_opts *o, fl_err *e) {
    if (!o->train_csv || !o->train_dir)
        return fl_errf(e, "detector data: train.csv or the train image folder not given");
    if (!o->boxes)
        return fl_errf(e,
                       "detector data: no box file; give one with the config key detector.boxes "
                       "(a CSV with image,bbox \"[[x1 y1 x2 y2]]\" or image,box \"x1 y1 x2 y2\")");
    struct stat st;
    if (stat(o->boxes, &st) != 0)
        return fl_errf(e, "box file %s: %s; give one with the config key detector.boxes", o->boxes,
                       strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fl_errf(e, "box file %s is %s, not a file (config key detector.boxes)", o->boxes,
                       fl_file_kind(st.st_mode));
    if (!(o->val_share > 0 && o->val_share < 1))
        return fl_errf(e, "detector data: validation share %g is not in (0, 1)", o->val_share);
    if (o->classes != FL_DETSET_ONE_CLASS && o->classes != FL_DETSET_SPECIES)
        return fl_errf(e, "detector data: unknown class mode %d", (int)o->classes);
    return 0;
}

int fl_detset_build(const fl_detset_opts *o, fl_detset *d, fl_err *e) {
    memset(d, 0, sizeof *d);
    if (check_opts(o, e) != 0) return -1;
    fl_box_set bs = {0};
    name_list tests = {0};
    fl_strmap train_map = {0}, test_map = {0}, ind_map = {0};
    cand *cs = NULL;
    ind_key *inds = NULL;
    const char **species = NULL;
    int rc = -1, nc = 0;

    if (fl_train_read(o->train_csv, NULL, &d->tset, e) != 0) goto done;
    if (o->test && read_test_names(o->test, &tests, e) != 0) goto done;
    if (fl_boxes_read(o->boxes, NULL, &bs, e) != 0) goto done;
    const fl_train_set *t = &d->tset;
    if (fl_strmap_init(&train_map, (size_t)t->n, e) ||
        fl_strmap_init(&test_map, (size_t)tests.n, e))
        goto done;
    for (int i = 0; i < t->n; i++)
        if (fl_strmap_put(&train_map, t->image[i], i) == -2) goto oom;
    for (int i = 0; i < tests.n; i++)
        if (fl_strmap_put(&test_map, tests.v[i], i) == -2) goto oom;

    /* Classify the rows: train with boxes (candidates), train without, test, unknown. */
    d->n.rows = bs.n;
    if (!(cs = calloc((size_t)bs.n + 1, sizeof *cs))) goto oom;
    for (int i = 0; i < bs.n; i++) {
        const fl_box_entry *be = &bs.entry[i];
        int row = fl_strmap_get(&train_map, be->image);
        if (row < 0) {
            if (fl_strmap_get(&test_map, be->image) >= 0) {
                d->n.rows_test++;
                continue;
            }
            fl_errf(e, "%s:%d: image \"%s\" is neither in %s nor a test image (%s)", o->boxes,
                    be->line, be->image, o->train_csv, o->test ? o->test : "no test list given");
            goto done;
        }
        if (be->nbox == 0) {
            d->n.rows_empty++;
            continue;
        }
        cs[nc++] = (cand){.row = row, .be = be};
    }
    d->n.boxed = nc;
    qsort(cs, (size_t)nc, sizeof *cs, cmp_cand);

    /* Classes: one, or the sorted species of the boxed train images. */
    if (o->classes == FL_DETSET_SPECIES) {
        if (!(species = malloc(sizeof *species * ((size_t)nc + 1)))) goto oom;
        for (int i = 0; i < nc; i++)
            species[i] = t->species[cs[i].row];
        qsort(species, (size_t)nc, sizeof *species, cmp_str);
        for (int i = 0; i < nc; i++)
            if (i == 0 || strcmp(species[i], species[i - 1])) species[d->nclasses++] = species[i];
    } else {
        d->nclasses = 1;
    }
    if (!(d->class_store = calloc((size_t)d->nclasses + 1, sizeof *d->class_store)) ||
        !(d->classes = calloc((size_t)d->nclasses + 1, sizeof *d->classes)))
        goto oom;
    for (int k = 0; k < d->nclasses; k++) {
        if (!(d->class_store[k] = strdup(species ? species[k] : FL_DETSET_ONE_CLASS_NAME)))
            goto oom;
        d->classes[k] = d->class_store[k];
    }

    /* Image sizes (in parallel; each result lands in its own candidate), then in order: unreadable
     * headers skipped and counted, boxes checked against the upright size. */
    int probe_oom = 0;
    int nthr = o->threads > 0 ? o->threads : omp_get_max_threads();
    // clang-format off
#pragma omp parallel for schedule(dynamic, 16) reduction(| : probe_oom) num_threads(nthr)
    // clang-format on
    for (int i = 0; i < nc; i++) {
        cand *c = &cs[i];
        char *path = fl_strdupf("%s/%s", o->train_dir, c->be->image);
        fl_decode_info info;
        fl_err pe = {{0}};
        if (!path) {
            probe_oom = 1;
            continue;
        }
        if (probe_file(path, &info, &pe) == 0) {
            c->w = info.src_width, c->h = info.src_height;
        } else {
            c->bad = 1;
            if (!(c->err = strdup(pe.msg))) probe_oom = 1;
        }
        free(path);
    }
    if (probe_oom) goto oom;
    char clip_lines[FL_ERRLEN / 2] = "", bad_first[FL_ERRLEN] = "";
    int clip_named = 0, clip_last = 0, clip_more = 0, nused = 0, nboxes = 0;
    for (int i = 0; i < nc; i++) {
        cand *c = &cs[i];
        if (c->bad) {
            if (d->n.bad_images++ == 0) snprintf(bad_first, sizeof bad_first, "%s", c->err);
            if (d->nbad_names < FL_DETSET_NAMES) {
                if (!(d->bad_names[d->nbad_names] = strdup(c->be->image))) goto oom;
                d->nbad_names++;
            }
            continue;
        }
        float *b = c->be->xyxy;
        for (int k = 0; k < c->be->nbox; k++, b += 4) {
            if (b[0] >= c->w || b[1] >= c->h || b[2] <= 0 || b[3] <= 0) {
                fl_errf(e,
                        "%s:%d: box %d [%g %g %g %g] lies entirely outside image %s (%dx%d "
                        "upright)",
                        o->boxes, c->be->line, k + 1, b[0], b[1], b[2], b[3], c->be->image, c->w,
                        c->h);
                goto done;
            }
            if (b[0] < 0 || b[1] < 0 || b[2] > c->w || b[3] > c->h) {
                d->n.boxes_clipped++;
                if (clip_last != c->be->line)
                    clip_more |=
                        append_line(clip_lines, sizeof clip_lines, &clip_named, c->be->line);
                clip_last = c->be->line;
                b[0] = fmaxf(b[0], 0), b[1] = fmaxf(b[1], 0);
                b[2] = fminf(b[2], (float)c->w), b[3] = fminf(b[3], (float)c->h);
            }
        }
        nused++;
        nboxes += c->be->nbox;
    }
    if (d->n.boxes_clipped)
        snprintf(d->clip_warning, sizeof d->clip_warning,
                 "%s: %d box%s partly outside the image clipped to it (line%s %s%s)", o->boxes,
                 d->n.boxes_clipped, d->n.boxes_clipped == 1 ? "" : "es",
                 clip_named == 1 ? "" : "s", clip_lines, clip_more ? ", ..." : "");
    if (d->n.bad_images) {
        char names[FL_ERRLEN / 2] = "";
        for (int k = 0; k < d->nbad_names; k++) {
            size_t l = strlen(names);
            snprintf(names + l, sizeof names - l, "%s%s", k ? ", " : "", d->bad_names[k]);
        }
        snprintf(d->bad_warning, sizeof d->bad_warning,
                 "%d of %d boxed train images skipped, their JPEG header does not read (%s%s); "
                 "the first: %.200s",
                 d->n.bad_images, nc, names, d->n.bad_images > d->nbad_names ? ", ..." : "",
                 bad_first);
    }
    if (nused < 2) {
        fl_errf(e,
                "%s: %d usable boxed train image%s (%d rows: %d of test images, %d without "
                "boxes, %d unreadable); the detector needs at least 2, one to train and one to "
                "validate",
                o->boxes, nused, nused == 1 ? "" : "s", bs.n, d->n.rows_test, d->n.rows_empty,
                d->n.bad_images);
        goto done;
    }

    /* The hold-out by individual: hash(seed, id) order, the first round(share * n) to val. */
    if (fl_strmap_init(&ind_map, (size_t)nused, e)) goto done;
    if (!(inds = malloc(sizeof *inds * (size_t)nused))) goto oom;
    int nind = 0;
    for (int i = 0; i < nc; i++) {
        if (cs[i].bad) continue;
        const char *id = t->individual[cs[i].row];
        int prev = fl_strmap_put(&ind_map, id, nind);
        if (prev == -2) goto oom;
        if (prev >= 0) continue;
        inds[nind++] = (ind_key){mix64(fnv1a(id) ^ mix64(o->seed)), id, 0};
    }
    if (nind < 2) {
        fl_errf(e,
                "%s: the %d usable boxed train images show %d individual; a hold-out by "
                "individual needs at least 2",
                o->boxes, nused, nind);
        goto done;
    }
    qsort(inds, (size_t)nind, sizeof *inds, cmp_ind);
    int nval_ind = (int)llround(o->val_share * nind);
    if (nval_ind < 1) nval_ind = 1;
    if (nval_ind > nind - 1) nval_ind = nind - 1;
    for (int k = 0; k < nval_ind; k++)
        inds[k].val = 1;
    /* ind_map now maps id -> insertion index; rebuild as id -> sorted position. */
    fl_strmap_free(&ind_map);
    if (fl_strmap_init(&ind_map, (size_t)nind, e)) goto done;
    for (int k = 0; k < nind; k++)
        if (fl_strmap_put(&ind_map, inds[k].id, k) == -2) goto oom;
    d->n.individuals = nind, d->n.val_individuals = nval_ind;

    /* The items. */
    d->train = calloc((size_t)nused, sizeof *d->train);
    d->val = calloc((size_t)nused, sizeof *d->val);
    d->train_info = calloc((size_t)nused, sizeof *d->train_info);
    d->val_info = calloc((size_t)nused, sizeof *d->val_info);
    d->box_store = calloc((size_t)nboxes, sizeof *d->box_store);
    d->path_store = calloc((size_t)nused, sizeof *d->path_store);
    if (!d->train || !d->val || !d->train_info || !d->val_info || !d->box_store || !d->path_store)
        goto oom;
    fl_box *bx = d->box_store;
    for (int i = 0; i < nc; i++) {
        const cand *c = &cs[i];
        if (c->bad) continue;
        int r = c->row;
        int cls = 0;
        if (o->classes == FL_DETSET_SPECIES) {
            const char **hit = bsearch(&t->species[r], d->classes, (size_t)d->nclasses,
                                       sizeof *d->classes, cmp_str);
            cls = (int)(hit - d->classes);
        }
        char *path = fl_strdupf("%s/%s", o->train_dir, t->image[r]);
        if (!path) goto oom;
        d->path_store[d->npaths++] = path;
        int val = inds[fl_strmap_get(&ind_map, t->individual[r])].val;
        fl_loader_item *it = val ? &d->val[d->nval] : &d->train[d->ntrain];
        fl_detset_image *inf = val ? &d->val_info[d->nval++] : &d->train_info[d->ntrain++];
        const float *b = c->be->xyxy;
        for (int k = 0; k < c->be->nbox; k++, b += 4)
            bx[k] = (fl_box){b[0], b[1], b[2], b[3], cls};
        *it = (fl_loader_item){
            .path = path, .label = -1, .box = {0, 0, 0, 0, -1}, .boxes = bx, .nboxes = c->be->nbox};
        *inf = (fl_detset_image){t->image[r], t->individual[r], t->species[r], c->be->line, c->w,
                                 c->h};
        bx += c->be->nbox;
        d->n.rows_used++;
        d->n.boxes += c->be->nbox;
    }
    rc = 0;
    goto done;
oom:
    fl_errf(e, "detector data: out of memory");
done:
    fl_boxes_free(&bs);
    names_free(&tests);
    fl_strmap_free(&train_map), fl_strmap_free(&test_map), fl_strmap_free(&ind_map);
    for (int i = 0; cs && i < nc; i++)
        free(cs[i].err);
    free(cs), free(inds), free(species);
    if (rc != 0) fl_detset_free(d);
    return rc;
}

/* ---------------------------------------------------------------- letterboxed ground truth */

fl_box fl_detset_letterbox_box(int w, int h, int s, fl_box b) {
    /* sample.c yolo_load: the long side to s (ceil), boxes scaled by the float ratio */
    double r = (double)s / fmax(w, h);
    int nw = (int)ceil(w * r), nh = (int)ceil(h * r);
    float kx = (float)nw / w, ky = (float)nh / h;
    b.x1 *= kx, b.y1 *= ky, b.x2 *= kx, b.y2 *= ky;
    /* fl_letterbox_apply with scaleup off (augment off) */
    double r2 = fmin((double)s / nh, (double)s / nw);
    if (r2 > 1) r2 = 1;
    int nw2 = (int)nearbyint(nw * r2), nh2 = (int)nearbyint(nh * r2);
    if (nw2 < 1) nw2 = 1;
    if (nh2 < 1) nh2 = 1;
    int left = (int)nearbyint((s - nw2) / 2.0 - 0.1), top = (int)nearbyint((s - nh2) / 2.0 - 0.1);
    float kx2 = (float)nw2 / nw, ky2 = (float)nh2 / nh;
    b.x1 = b.x1 * kx2 + left, b.x2 = b.x2 * kx2 + left;
    b.y1 = b.y1 * ky2 + top, b.y2 = b.y2 * ky2 + top;
    return b;
}

int fl_detset_val_gt(const fl_detset *d, int s, fl_yolo_gt **gt, size_t *ngt, fl_err *e) {
    *gt = NULL, *ngt = 0;
    if (s < 1) return fl_errf(e, "detector data: image size %d", s);
    size_t n = 0;
    for (int i = 0; i < d->nval; i++)
        n += (size_t)d->val[i].nboxes;
    fl_yolo_gt *g = malloc(sizeof *g * (n ? n : 1));
    if (!g) return fl_errf(e, "detector data: out of memory for %zu ground-truth boxes", n);
    size_t k = 0;
    for (int i = 0; i < d->nval; i++)
        for (int j = 0; j < d->val[i].nboxes; j++) {
            fl_box b = fl_detset_letterbox_box(d->val_info[i].width, d->val_info[i].height, s,
                                               d->val[i].boxes[j]);
            g[k++] = (fl_yolo_gt){i, b.cls, b.x1, b.y1, b.x2, b.y2};
        }
    *gt = g, *ngt = n;
    return 0;
}
