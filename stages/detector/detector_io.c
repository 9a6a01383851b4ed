/* The detector artifact (stages/detector/detector_io.h): YOLOv5 weights plus the metadata needed
 * to rebuild the network that owns them. */
#include "stages/detector/detector_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/safetensors.h"

int fl_detector_save(const char *path, const fl_detector_meta *m, const fl_param_list *weights,
                     fl_err *e) {
    char depth[64], width[64], nc[16], imgsz[16], classes[FL_DETECTOR_MAX_CLASSES * 65 + 1];
    snprintf(depth, sizeof depth, "%a", m->cfg.depth);
    snprintf(width, sizeof width, "%a", m->cfg.width);
    snprintf(nc, sizeof nc, "%d", m->cfg.nc);
    snprintf(imgsz, sizeof imgsz, "%d", m->imgsz);
    classes[0] = 0;
    if (m->nclasses != m->cfg.nc || m->nclasses < 1 || m->nclasses > FL_DETECTOR_MAX_CLASSES)
        return fl_errf(e, "%s: %d class names for a %d-class detector", path, m->nclasses,
                       m->cfg.nc);
    for (int i = 0; i < m->nclasses; i++) {
        if (strchr(m->classes[i], ','))
            return fl_errf(e, "%s: class name '%s' has a comma", path, m->classes[i]);
        if (i) strcat(classes, ",");
        strcat(classes, m->classes[i]);
    }
    fl_st_kv meta[] = {
        {"fluke.detector", "1"},   {"format", "pt"}, {"yolo.depth", depth},
        {"yolo.width", width},     {"yolo.nc", nc},  {"yolo.imgsz", imgsz},
        {"yolo.classes", classes},
    };
    return fl_st_write_params(path, weights, meta, sizeof meta / sizeof meta[0], e);
}

static int meta_num(const fl_st_file *f, const char *key, double lo, double hi, double *out,
                    fl_err *e) {
    const char *v = fl_st_meta(f, key);
    if (!v) return fl_errf(e, "%s: not a fluke detector (metadata '%s' missing)", f->path, key);
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !(d >= lo && d <= hi))
        return fl_errf(e, "%s: metadata %s = '%s' is not a number in [%g, %g]", f->path, key, v, lo,
                       hi);
    *out = d;
    return 0;
}

static int read_meta(const fl_st_file *f, fl_detector_meta *m, fl_err *e) {
    memset(m, 0, sizeof *m);
    const char *tag = fl_st_meta(f, "fluke.detector");
    if (!tag || strcmp(tag, "1"))
        return fl_errf(e, "%s: not a fluke detector (metadata fluke.detector is %s)", f->path,
                       tag ? tag : "missing");
    double depth, width, nc, imgsz;
    if (meta_num(f, "yolo.depth", 1e-3, 16, &depth, e) ||
        meta_num(f, "yolo.width", 1e-3, 16, &width, e) ||
        meta_num(f, "yolo.nc", 1, FL_DETECTOR_MAX_CLASSES, &nc, e) ||
        meta_num(f, "yolo.imgsz", 32, 8192, &imgsz, e))
        return -1;
    if ((int)nc != nc || (int)imgsz != imgsz || (int)imgsz % 32)
        return fl_errf(e,
                       "%s: yolo.nc %g / yolo.imgsz %g must be integers (imgsz a multiple of 32)",
                       f->path, nc, imgsz);
    if (fl_yolo_cfg_make(&m->cfg, depth, width, (int)nc, e)) return fl_errprefix(e, "%s", f->path);
    m->imgsz = (int)imgsz;
    const char *cl = fl_st_meta(f, "yolo.classes");
    if (!cl) return fl_errf(e, "%s: metadata yolo.classes missing", f->path);
    const char *p = cl;
    for (;;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (m->nclasses >= FL_DETECTOR_MAX_CLASSES || len == 0 || len >= sizeof m->classes[0])
            return fl_errf(e, "%s: metadata yolo.classes '%.60s' is not %d names", f->path, cl,
                           (int)nc);
        memcpy(m->classes[m->nclasses], p, len);
        m->nclasses++;
        if (!q) break;
        p = q + 1;
    }
    if (m->nclasses != m->cfg.nc)
        return fl_errf(e, "%s: %d class names for yolo.nc %d", f->path, m->nclasses, m->cfg.nc);
    return 0;
}

int fl_detector_read_meta(const char *path, fl_detector_meta *m, fl_err *e) {
    fl_st_file *f = fl_st_open(path, e);
    if (!f) return -1;
    int rc = read_meta(f, m, e);
    fl_st_close(f);
    return rc;
}

void fl_detector_free(fl_detector *d) {
    fl_graph_free(d->graph);
    fl_pstore_free(d->store);
    memset(d, 0, sizeof *d);
}

int fl_detector_load(const char *path, int batch, int imgsz, fl_detector *d, fl_err *e) {
    memset(d, 0, sizeof *d);
    fl_st_set *set = fl_st_open_set(path, e);
    if (!set) return -1;
    int rc = read_meta(set->files[0], &d->meta, e);
    if (rc == 0 && imgsz <= 0) imgsz = d->meta.imgsz;
    if (rc == 0 && (imgsz % 32 || imgsz < 32 || batch < 1))
        rc = fl_errf(e, "%s: detector input %d is not a positive multiple of 32 (batch %d)", path,
                     imgsz, batch);
    d->batch = batch;
    if (rc == 0 && !(d->store = fl_pstore_new(FL_F32, 0, e))) rc = -1;
    if (rc == 0 && !(d->graph = fl_graph_new(d->store, FL_MODE_EVAL, e))) rc = -1;
    if (rc == 0) {
        d->x = fl_input(d->graph, "x", 4, (int64_t[]){batch, imgsz, imgsz, 3});
        if (fl_yolo_build(d->graph, d->store, d->x, &d->meta.cfg, &d->heads, e)) rc = -1;
    }
    if (rc == 0) {
        d->flat = fl_yolo_flat_heads(d->graph, &d->heads);
        if (fl_graph_compile(d->graph, d->flat, e) < 0) rc = -1;
    }
    fl_param_list pl;
    if (rc == 0 && fl_pstore_params(d->store, &pl, e)) rc = -1;
    if (rc == 0 && fl_st_load_params(set, &pl, FL_ST_STRICT, NULL, e)) rc = -1;
    fl_st_close_set(set);
    if (rc) fl_detector_free(d);
    return rc;
}
