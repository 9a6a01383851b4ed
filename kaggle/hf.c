/* Hugging Face hub files: {base}/{repo}/resolve/main/{file}, public repositories, no Kaggle
 * credentials. model.safetensors first; pytorch_model.bin only when the former is a 404. */
#include <stdlib.h>
#include <string.h>

#include "kaggle/internal.h"

/* repo is "owner/name": no scheme, no "..", no query characters. */
static int repo_ok(const char *r) {
    const char *slash = strchr(r, '/');
    if (!slash || slash == r || !slash[1] || strchr(slash + 1, '/')) return 0;
    if (strstr(r, "..")) return 0;
    for (const char *p = r; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.' || *p == '/'))
            return 0;
    return 1;
}

static int file_ok(const char *f) {
    if (!*f || strstr(f, "..") || f[0] == '/') return 0;
    for (const char *p = f; *p; p++)
        if (*p == '?' || *p == '#' || *p == '%' || (unsigned char)*p <= 0x20) return 0;
    return 1;
}

int fl_hf_download(fl_kaggle *k, const char *base, const char *repo, const char *file,
                   const char *dest_dir, const fl_dl_expect *expect, char **name_out,
                   fl_dl_result *res, fl_err *e) {
    if (name_out) *name_out = NULL;
    if (!repo || !repo_ok(repo))
        return fl_errf(e, "Hugging Face repo '%s' is not of the form owner/name",
                       repo ? repo : "(null)");
    if (file && !file_ok(file)) return fl_errf(e, "Hugging Face file name '%s' is not valid", file);
    if (!base || !*base) base = FL_HF_DEFAULT_BASE;
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/') bl--;
    const char *cands[2] = {file ? file : "model.safetensors", file ? NULL : "pytorch_model.bin"};
    fl_dl_result r;
    for (int i = 0; i < 2 && cands[i]; i++) {
        char *url = fl_strdupf("%.*s/%s/resolve/main/%s", (int)bl, base, repo, cands[i]);
        const char *fname = strrchr(cands[i], '/') ? strrchr(cands[i], '/') + 1 : cands[i];
        char *dest = fl_strdupf("%s/%s", dest_dir, fname);
        if (!url || !dest) {
            free(url);
            free(dest);
            return fl_errf(e, "out of memory");
        }
        int rc = fl_kaggle_download_url(k, url, dest, expect, &r, e);
        free(url);
        free(dest);
        if (res) *res = r;
        if (rc == 0) {
            if (name_out) *name_out = strdup(fname);
            return 0;
        }
        if (r.http_status != 404 || i == 1 || !cands[1]) return fl_errprefix(e, "Hugging Face %s", repo);
        fprintf(k->log, "%s: no %s, trying %s\n", repo, cands[i], cands[i + 1]);
        fflush(k->log);
    }
    return fl_errf(e, "Hugging Face %s: no file found", repo);
}
