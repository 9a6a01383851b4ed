/* Stage "embed_weights" (stages/ident/weights_stage.h): timm EfficientNet weights by name from
 * the Hugging Face hub, as safetensors. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codeid/embed_weights.h"
#include "runtime/safetensors.h"
#include "runtime/torch_pt.h"
#include "stages/fetch/stages.h"
#include "stages/ident/weights_stage.h"

const fl_cfg_field fl_embed_weights_schema[] = {
    {"embed.backbone.weights", FL_CFG_STR, 0,
     "pretrained timm weights by name: (tf_)efficientnet_b0..b7 with its timm tag, e.g. "
     "tf_efficientnet_b7.ns_jft_in1k; downloaded from the hub (timm/<name>) and loaded by name "
     "without the classifier (default: random init)",
     0, 0},
    {"embed.backbone.weights_url", FL_CFG_STR, 0, "hub base URL (default " FL_EMBED_WEIGHTS_URL ")",
     0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

int fl_embed_weights_name(const char *v, fl_err *e) {
    const char *p = v;
    if (p && !strncmp(p, "tf_", 3)) p += 3;
    int ok = p && !strncmp(p, "efficientnet_b", 14) && p[14] >= '0' && p[14] <= '7' && p[15] == '.';
    const char *tag = ok ? p + 16 : NULL;
    ok = ok && tag[0] && strlen(tag) <= 64 &&
         strspn(tag, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(tag) && tag[0] != '_';
    if (!ok)
        return fl_errf(e,
                       "config key 'embed.backbone.weights' is '%.80s': not timm EfficientNet "
                       "weights (efficientnet_bN or tf_efficientnet_bN, N 0..7, then '.' and the "
                       "timm tag, e.g. tf_efficientnet_b7.ns_jft_in1k or efficientnet_b0.ra_in1k)",
                       v ? v : "(not a string)");
    return 0;
}

/* Checks the file is safetensors with an EfficientNet stem; logs what it holds. */
static int check_file(fl_stage_ctx *c, const char *path, const char *name, fl_err *e) {
    fl_st_file *f = fl_st_open(path, e);
    if (!f) return fl_errprefix(e, "embed.backbone.weights '%s'", name);
    size_t numel = 0, nt = f->n;
    for (size_t i = 0; i < f->n; i++)
        numel += f->t[i].numel;
    int ok = fl_st_find(f, "conv_stem.weight") != NULL;
    fl_st_close(f);
    if (!ok)
        return fl_errf(e,
                       "embed.backbone.weights '%s': the hub's file has no conv_stem.weight "
                       "(%zu tensors): not a timm EfficientNet checkpoint",
                       name, nt);
    fl_stage_log(c, "timm/%s: %zu tensors, %zu values, written as %s", name, nt, numel,
                 FL_EMBED_PRETRAINED_FILE);
    return 0;
}

static int run_embed_weights(fl_stage_ctx *c, fl_err *e) {
    const char *v;
    if (fl_stage_cfg_str(c, "embed.backbone.weights", &v, e)) return -1;
    if (fl_embed_weights_name(v, e)) return -1;
    fl_err ignore; /* the section is always declared: NULL means the key is absent */
    const cJSON *u = fl_stage_cfg(c, "embed.backbone.weights_url", &ignore);
    if (u && (!cJSON_IsString(u) || !u->valuestring[0]))
        return fl_errf(
            e, "config key 'embed.backbone.weights_url' must be a non-empty string (a URL)");
    const char *base = u ? u->valuestring : FL_EMBED_WEIGHTS_URL;
    char *repo = fl_strdupf("timm/%s", v);
    char *dir = fl_strdupf("%s/weights", fl_stage_out_dir(c));
    char *dst = fl_strdupf("%s/%s", fl_stage_out_dir(c), FL_EMBED_PRETRAINED_FILE);
    char *name = NULL, *src = NULL;
    FILE *log = fl_stage_log_file(c);
    fl_kaggle_opts o = {.progress = 1, .log = log, .no_credentials = 1};
    fl_kaggle *k = NULL;
    int rc = -1;
    if (!repo || !dir || !dst) {
        fl_errf(e, "out of memory");
        goto out;
    }
    if (!(k = fl_kaggle_new(&o, e)) || fl_mkdirs(dir, e)) goto out;
    fl_dl_result r = {0};
    if (fl_hf_download(k, base, repo, NULL, fl_stage_work_dir(c), NULL, &name, &r, e) < 0) {
        fl_errprefix(e, "embed.backbone.weights '%s'%s", v,
                     r.http_status == 404 ? " (neither model.safetensors nor pytorch_model.bin "
                                            "on the hub)"
                                          : "");
        goto out;
    }
    if (!(src = fl_strdupf("%s/%s", fl_stage_work_dir(c), name))) {
        fl_errf(e, "out of memory");
        goto out;
    }
    fl_stage_log(c, "timm/%s/%s: %llu bytes%s", v, name, (unsigned long long)r.bytes,
                 r.skipped ? " (already here)" : "");
    if (strcmp(name, "model.safetensors")) { /* pytorch_model.bin: converted, nothing executed */
        size_t nt = 0;
        if (fl_pt_convert(src, dst, &nt, e)) {
            fl_errprefix(e, "embed.backbone.weights '%s'", v);
            goto out;
        }
    } else if (rename(src, dst) != 0) {
        if (errno != EXDEV) {
            fl_errf(e, "cannot move %s to %s: %s", src, dst, strerror(errno));
            goto out;
        }
        if (fl_copy_file(src, dst, e) < 0) goto out;
    }
    rc = check_file(c, dst, v, e);
out:
    fl_kaggle_free(k);
    if (log) fclose(log);
    free(repo), free(dir), free(dst), free(name), free(src);
    return rc;
}

const fl_stage_def fl_stage_embed_weights = {
    .name = "embed_weights",
    .code_id = FL_CODE_ID,
    .summary = "download timm EfficientNet weights by name (embed.backbone.weights) as safetensors",
    .run = run_embed_weights,
};

int fl_plan_embed_weights(fl_plan *p, const cJSON *config, fl_plan_node **out, fl_err *e) {
    *out = NULL;
    const cJSON *em = cJSON_GetObjectItemCaseSensitive(config, "embed");
    const cJSON *bb = cJSON_IsObject(em) ? cJSON_GetObjectItemCaseSensitive(em, "backbone") : NULL;
    const cJSON *w = cJSON_IsObject(bb) ? cJSON_GetObjectItemCaseSensitive(bb, "weights") : NULL;
    if (!w) return 0;
    if (fl_embed_weights_name(cJSON_IsString(w) ? w->valuestring : NULL, e)) return -1;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(bb, "weights_url");
    if (u && (!cJSON_IsString(u) || !u->valuestring[0]))
        return fl_errf(
            e, "config key 'embed.backbone.weights_url' must be a non-empty string (a URL)");
    fl_plan_node *n = fl_plan_add_as(p, &fl_stage_embed_weights, FL_EMBED_WEIGHTS_NODE, e);
    if (!n || fl_plan_node_section(n, "embed.backbone.weights", e) ||
        fl_plan_node_section(n, "embed.backbone.weights_url", e) ||
        fl_plan_node_output(n, FL_EMBED_PRETRAINED_FILE, e))
        return -1;
    fl_plan_node_resources(n, 1, 0);
    *out = n;
    return 0;
}
