/* embed_model.safetensors (stages/embed/embed.h): the backbone, DOLG and neck of a trained fold
 * (the weights embeddings come from; the EMA when embed.train.ema is on) under their graph names,
 * with the architecture in the metadata for whoever reads the file without the config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/embed/embed.h"

int fl_embmodel_save(const char *path, const fl_embopts *o, const fl_param_list *pl, fl_err *e) {
    char w[32], d[32], dim[32], emb[32], sz[32], tf[8], ncls[32], bb[64];
    snprintf(bb, sizeof bb, "%s", o->backbone);
    snprintf(w, sizeof w, "%a", o->model.backbone.width);
    snprintf(d, sizeof d, "%a", o->model.backbone.depth);
    snprintf(tf, sizeof tf, "%d", o->model.backbone.tf);
    snprintf(dim, sizeof dim, "%lld", (long long)o->model.dolg.dim);
    snprintf(emb, sizeof emb, "%lld", (long long)o->model.emb_dim);
    snprintf(sz, sizeof sz, "%d", o->imgsz);
    snprintf(ncls, sizeof ncls, "%d", o->model.arc.num_classes);
    char taps[32], dil[64] = "", gem[32], sub[16];
    snprintf(taps, sizeof taps, "%d,%d", o->model.local_tap, o->model.global_tap);
    for (int i = 0; i < o->model.dolg.n_dil; i++)
        snprintf(dil + strlen(dil), sizeof dil - strlen(dil), "%s%d", i ? "," : "", o->model.dolg.dilations[i]);
    snprintf(gem, sizeof gem, "%a", o->model.dolg.gem_p0);
    snprintf(sub, sizeof sub, "%d", o->model.arc.subcenters);
    fl_st_kv meta[] = {{"embed.dolg_taps", taps}, {"embed.dolg_dilations", dil},
                       {"embed.gem_p0", gem}, {"embed.subcenters", sub},{"fluke.kind", "embed_model"}, {"embed.backbone", bb},
                       {"embed.width", w},           {"embed.depth", d},
                       {"embed.tf", tf},             {"embed.dolg_dim", dim},
                       {"embed.emb_dim", emb},       {"embed.imgsz", sz},
                       {"embed.classes", ncls}};
    return fl_st_write_params(path, pl, meta, sizeof meta / sizeof *meta, e);
}

int fl_embmodel_load(const char *path, fl_pstore *ps, fl_err *e) {
    fl_st_set *s = fl_st_open_set(path, e);
    if (!s) return -1;
    const char *kind = fl_st_meta(s->files[0], "fluke.kind");
    fl_param_list pl;
    int rc = 0;
    if (!kind || strcmp(kind, "embed_model"))
        rc = fl_errf(e, "%s: not an embedding model (fluke.kind is %s)", path, kind ? kind : "absent");
    if (rc == 0) rc = fl_pstore_params(ps, &pl, e);
    if (rc == 0) rc = fl_st_load_params(s, &pl, FL_ST_STRICT, NULL, e);
    fl_st_close_set(s);
    return rc ? fl_errprefix(e, "%s", path) : 0;
}

int fl_embmodel_load_init(const char *path, fl_pstore *ps, fl_err *e) {
    fl_st_set *s = fl_st_open_set(path, e);
    if (!s) return -1;
    const char *kind = fl_st_meta(s->files[0], "fluke.kind");
    fl_param_list all, body = {0};
    int rc = 0;
    if (!kind || strcmp(kind, "embed_model"))
        rc = fl_errf(e, "%s: not an embedding model (fluke.kind is %s)", path, kind ? kind : "absent");
    if (rc == 0) rc = fl_pstore_params(ps, &all, e);
    if (rc == 0 && !(body.v = malloc((all.n + 1) * sizeof *body.v))) rc = fl_errf(e, "out of memory");
    for (size_t i = 0; rc == 0 && i < all.n; i++)
        if (strncmp(all.v[i].name, "head.", 5) && strncmp(all.v[i].name, "species_head.", 13))
            body.v[body.n++] = all.v[i];
    if (rc == 0) rc = fl_st_load_params(s, &body, FL_ST_STRICT, NULL, e);
    free(body.v);
    fl_st_close_set(s);
    return rc ? fl_errprefix(e, "%s", path) : 0;
}
