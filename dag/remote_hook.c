/* The session's remote cache: settings from the config and the command line, log lines on
 * stdout beside the executor's own, and the calls exec.c and status.c make. */
#include "dag/remote_hook.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifacts/remote.h"

/* One write per line, like the executor's events, so lines never interleave. On a terminal
 * (arg != NULL) an in-place progress line rewrites the current line, and every line first clears
 * it, so the line after a progress line does not start in its middle. */
static void log_line(void *arg, const char *line, int in_place) {
    size_t n = strlen(line);
    int width = (int)(n < 1100 ? n : 1100);
    const char *clear = arg && *line ? "\r\033[K" : ""; /* "": end a progress line as it is */
    char buf[1200];
    int len = snprintf(buf, sizeof buf, "%s%.*s%s", clear, width, line, in_place && arg ? "" : "\n");
    if (len < 0) return;
    if ((size_t)len >= sizeof buf) len = sizeof buf - 1;
    ssize_t w = write(1, buf, (size_t)len);
    (void)w;
}

static const char *cfg_str(const fl_session *s, const char *path) {
    const cJSON *v = fl_config_get(s->cfg.root, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int fl_remote_hook_open(fl_session *s, fl_err *e) {
    if (s->remote_opened) return 0;
    s->remote_opened = 1;
    char where[512];
    const char *url = s->remote_url_cli ? s->remote_url_cli : cfg_str(s, "cache.remote");
    const char *mode = cfg_str(s, "cache.remote_mode");
    const char *tok_env = cfg_str(s, "cache.remote_token_env");
    const cJSON *to = fl_config_get(s->cfg.root, "cache.remote_timeout_s");
    if (mode && strcmp(mode, "readwrite") && strcmp(mode, "readonly"))
        return fl_errf(e, "%s: cache.remote_mode \"%s\": expected \"readwrite\" or \"readonly\"",
                       fl_config_where(&s->cfg, "cache.remote_mode", where, sizeof where), mode);
    if (!url || !*url) return 0;
    const char *token = NULL;
    if (tok_env && *tok_env) {
        token = getenv(tok_env);
        if (!token || !*token)
            log_line(NULL, "[fluke] warning: cache.remote_token_env names an environment variable "
                           "that is not set: remote cache requests go without a token", 0);
        for (const char *c = token; c && *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) /* would break the header: say so, not what */
                return fl_errf(e, "%s: the token in $%s holds a control character",
                               fl_config_where(&s->cfg, "cache.remote_token_env", where, sizeof where),
                               tok_env);
    }
    fl_remote_opts o = {.url = url,
                        .token = token,
                        .readonly = s->remote_readonly_cli || (mode && !strcmp(mode, "readonly")),
                        .timeout_s = cJSON_IsNumber(to) ? to->valuedouble : 0,
                        .progress_tty = isatty(1),
                        .log = log_line,
                        .log_arg = isatty(1) ? (void *)s : NULL};
    fl_err re;
    s->remote = fl_remote_open(&o, &re);
    if (!s->remote) {
        if (s->remote_url_cli) return fl_errf(e, "--remote-cache: %s", re.msg);
        return fl_errf(e, "%s: %s", fl_config_where(&s->cfg, "cache.remote", where, sizeof where), re.msg);
    }
    return 0;
}

int fl_remote_hook_pull(fl_session *s, const char *node_id, const fl_digest *key, fl_digest *tree,
                        fl_err *e) {
    if (!s->remote || !fl_remote_usable(s->remote)) return 0;
    int rc = fl_remote_pull(s->remote, s->store, key, node_id, tree, e);
    if (rc < 0) return fl_errprefix(e, "stage '%s': storing its remote cache hit", node_id);
    if (rc == FL_REMOTE_HIT) s->remote_hits++;
    return rc == FL_REMOTE_HIT;
}

void fl_remote_hook_push(fl_session *s, const char *node_id, const fl_digest *key) {
    if (!s->remote || !fl_remote_usable(s->remote) || fl_remote_readonly(s->remote)) return;
    fl_err e = {{0}};
    if (fl_remote_push(s->remote, s->store, key, node_id, &e) != 0) {
        char line[FL_ERRLEN + 128];
        snprintf(line, sizeof line, "[fluke] warning: not uploading %s to the remote cache: %s", node_id, e.msg);
        log_line(NULL, line, 0);
    } else if (fl_remote_usable(s->remote)) {
        s->remote_pushes++;
    }
}

int fl_remote_hook_peek(fl_session *s, const fl_digest *key, fl_digest *tree) {
    if (!s->remote) return 0;
    return fl_remote_peek(s->remote, key, tree) == FL_REMOTE_HIT;
}

void fl_remote_hook_summary(fl_session *s) {
    if (!s->remote) return;
    const fl_remote_stats *st = fl_remote_get_stats(s->remote);
    char line[1024];
    snprintf(line, sizeof line,
             "[fluke] remote cache %s%s: %d hits, %d uploaded; %.1f MiB down, %.1f MiB up%s",
             fl_remote_display_url(s->remote), fl_remote_readonly(s->remote) ? " (read-only)" : "",
             s->remote_hits, s->remote_pushes, (double)st->get_bytes / 1048576.0,
             (double)st->put_bytes / 1048576.0, fl_remote_usable(s->remote) ? "" : " (off after an error)");
    log_line(NULL, line, 0);
}
