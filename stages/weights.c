/* Stage "weights": a pretrained checkpoint from the Hugging Face hub
 * ({base}/{repo}/resolve/main/{file}), downloaded through the same client (resume, retries,
 * redirects without credentials), checked against an optional size / XXH3-128 digest, and
 * cached by content like every artifact. A PyTorch file (the pytorch_model.bin fallback, or a
 * weights.file ending in .bin/.pt/.pth) is read by the safe torch.save reader (runtime/
 * torch_pt.h, nothing in it is executed) and written out as safetensors (pytorch_model.bin ->
 * model.safetensors, x.pt -> x.safetensors), so the rest of fluke only ever loads safetensors;
 * the original stays in the work directory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codeid/weights.h"
#include "runtime/torch_pt.h"
#include "stages/fetch/stages.h"

const fl_cfg_field fl_weights_schema[] = {
    {"weights", FL_CFG_OBJ, 0, "pretrained weights from the Hugging Face hub", 0, 0},
    {"weights.repo", FL_CFG_STR, 0, "hub repo, e.g. timm/tf_efficientnet_b7.ns_jft_in1k", 0, 0},
    {"weights.file", FL_CFG_STR, 0,
     "file in the repo (default model.safetensors, falling back to pytorch_model.bin on 404); "
     "a PyTorch file (.bin/.pt/.pth) is converted to safetensors",
     0, 0},
    {"weights.size", FL_CFG_INT, 0, "expected size in bytes", 0, FL_CFG_INT_MAX},
    {"weights.xxh3", FL_CFG_STR, 0, "expected XXH3-128 digest (32 hex digits)", 0, 0},
    {"weights.base_url", FL_CFG_STR, 0, "hub base URL (default https://huggingface.co)", 0, 0},
    {NULL, 0, 0, NULL, 0, 0},
};

static const char *opt_str(const cJSON *sec, const char *key, int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(sec, key);
    if (!v) return NULL;
    if (!cJSON_IsString(v) || !v->valuestring[0]) *bad = 1;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The safetensors name of a PyTorch file, or NULL when name is not one (malloc'd). */
static char *converted_name(const char *name) {
    if (!strcmp(name, "pytorch_model.bin")) return strdup("model.safetensors");
    const char *dot = strrchr(name, '.');
    if (!dot || (strcmp(dot, ".bin") && strcmp(dot, ".pt") && strcmp(dot, ".pth"))) return NULL;
    return fl_strdupf("%.*s.safetensors", (int)(dot - name), name);
}

static int run_weights(fl_stage_ctx *c, fl_err *e) {
    const cJSON *sec = fl_stage_cfg(c, "weights", e);
    if (!sec) return -1;
    if (!cJSON_IsObject(sec)) return fl_errf(e, "config key 'weights' must be an object");
    int bad = 0;
    const char *repo = opt_str(sec, "repo", &bad);
    if (bad || !repo) return fl_errf(e, "config key 'weights.repo' must be a string like \"timm/tf_efficientnet_b7.ns_jft_in1k\"");
    const char *file = opt_str(sec, "file", &bad);
    if (bad) return fl_errf(e, "config key 'weights.file' must be a non-empty string");
    const char *base = opt_str(sec, "base_url", &bad);
    if (bad) return fl_errf(e, "config key 'weights.base_url' must be a non-empty string");
    const char *xxh = opt_str(sec, "xxh3", &bad);
    if (bad || (xxh && (strlen(xxh) != 32 || strspn(xxh, "0123456789abcdefABCDEF") != 32)))
        return fl_errf(e, "config key 'weights.xxh3' must be 32 hex digits");
    fl_dl_expect ex = {.size = -1, .xxh128 = xxh};
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(sec, "size");
    if (sz) {
        if (!cJSON_IsNumber(sz) || sz->valuedouble < 0 || sz->valuedouble != (double)(int64_t)sz->valuedouble)
            return fl_errf(e, "config key 'weights.size' must be a non-negative integer");
        ex.size = (int64_t)sz->valuedouble;
    }
    FILE *log = fl_stage_log_file(c);
    fl_kaggle_opts o = {.progress = 1, .log = log, .no_credentials = 1};
    fl_kaggle *k = fl_kaggle_new(&o, e);
    int rc = -1;
    char *name = NULL, *src = NULL, *dst = NULL, *dir = NULL;
    if (!k) goto out;
    fl_dl_result r = {0};
    if (fl_hf_download(k, base, repo, file, fl_stage_work_dir(c), &ex, &name, &r, e) < 0) goto out;
    dir = fl_strdupf("%s/weights", fl_stage_out_dir(c));
    src = fl_strdupf("%s/%s", fl_stage_work_dir(c), name);
    dst = fl_strdupf("%s/%s", dir, name);
    if (!dir || !src || !dst) {
        fl_errf(e, "out of memory");
        goto out;
    }
    if (fl_mkdirs(dir, e) < 0) goto out;
    char *conv = converted_name(name);
    if (conv) {
        free(dst);
        dst = fl_strdupf("%s/%s", dir, conv);
        size_t n = 0;
        int crc = dst ? fl_pt_convert(src, dst, &n, e) : fl_errf(e, "out of memory");
        if (crc == 0)
            fl_stage_log(c, "%s/%s: %llu bytes%s, converted to %s (%zu tensors, F32)", repo, name,
                         (unsigned long long)r.bytes, xxh ? " (XXH3-128 verified)" : "", conv, n);
        free(conv);
        if (crc) goto out;
    } else {
        if (rename(src, dst) != 0) {
            if (errno != EXDEV) {
                fl_errf(e, "cannot move %s to %s: %s", src, dst, strerror(errno));
                goto out;
            }
            if (fl_copy_file(src, dst, e) < 0) goto out;
        }
        fl_stage_log(c, "%s/%s: %llu bytes%s", repo, name, (unsigned long long)r.bytes,
                     xxh ? " (XXH3-128 verified)" : "");
    }
    rc = 0;
out:
    free(name);
    free(src);
    free(dst);
    free(dir);
    fl_kaggle_free(k);
    if (log) fclose(log);
    return rc;
}

const fl_stage_def fl_stage_weights = {
    .name = "weights",
    .code_id = FL_CODE_ID,
    .summary = "download pretrained weights from the Hugging Face hub (weights.repo)",
    .run = run_weights,
};
