/* The run report (report.h): the state of every stage as `fluke status` computes it from the
 * store, merged with what the latest run did (the ref report/<name>), then the page with its
 * sections, written atomically into out/<name>/. */
#include "dag/report.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dag/explain.h"
#include "dag/key.h"
#include "dag/report_int.h"

static const char *state_names[RS_NSTATES] = {"ran",     "cached",  "failed",  "skipped", "stale",
                                              "missing", "pending", "damaged", "error"};

const char *fl_rstate_name(int st) { return st >= 0 && st < RS_NSTATES ? state_names[st] : "?"; }

int fl_rnode_declares(const fl_rnode *r, const char *rel) {
    for (size_t i = 0; i < r->n->outputs.n; i++)
        if (!strcmp(r->n->outputs.v[i], rel)) return 1;
    return 0;
}

char *fl_rnode_file(const fl_rnode *r, const char *rel) {
    if (!r->dir) return NULL;
    char *p = fl_strdupf("%s/%s", r->dir, rel);
    if (p && access(p, R_OK) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

cJSON *fl_rnode_json(const fl_rnode *r, const char *rel, char *why, size_t whylen) {
    if (!r->dir && (r->state == RS_CACHED || r->state == RS_RAN)) {
        snprintf(why, whylen, "%s: its outputs are not checked out (`fluke report` makes them)",
                 r->n->id);
        return NULL;
    }
    if (!r->dir) {
        snprintf(why, whylen, "%s %s%s%s", r->n->id, fl_rstate_name(r->state), r->why ? ": " : "",
                 r->why ? r->why : "");
        return NULL;
    }
    char *p = fl_strdupf("%s/%s", r->dir, rel);
    fl_err e = {{0}};
    size_t len;
    char *text = p ? fl_read_file_max(p, &len, 64u << 20, &e) : NULL;
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (!p) snprintf(why, whylen, "out of memory");
    else if (!text) snprintf(why, whylen, "%s wrote no %s (%s)", r->n->id, rel, e.msg);
    else if (!j) snprintf(why, whylen, "%s: %s is not valid JSON", r->n->id, rel);
    free(p);
    free(text);
    return j;
}

double fl_rjson_num(const cJSON *o, const char *key) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

void fl_report_missing(fl_html *h, const char *what, const char *why) {
    fl_html_raw(h, "<div class=\"missing\"><b>");
    fl_html_text(h, what);
    fl_html_raw(h, "</b>: ");
    fl_html_text(h, why);
    fl_html_raw(h, "</div>\n");
}

/* ---------------------------------------------------------------- the run summary */

static char *ref_name(const fl_session *s) { return fl_strdupf("report/%s", s->cfg.name); }

static const char *node_state_word(int st) {
    switch (st) {
    case FL_NODE_CACHED: return "cached";
    case FL_NODE_RAN: return "ran";
    case FL_NODE_FAILED: return "failed";
    case FL_NODE_SKIPPED: return "skipped";
    default: return "not_run";
    }
}

int fl_report_note_run(fl_session *s, const fl_run_node *nodes, double t_start, double t_end,
                       int run_rc, const char *error, fl_err *e) {
    cJSON *j = cJSON_CreateObject(), *ns = j ? cJSON_AddObjectToObject(j, "nodes") : NULL;
    char *name = ref_name(s), *text = NULL;
    int rc = -1;
    if (!ns || !name) {
        fl_errf(e, "out of memory");
        goto out;
    }
    cJSON_AddNumberToObject(j, "started", t_start);
    cJSON_AddNumberToObject(j, "seconds", t_end - t_start);
    cJSON_AddNumberToObject(j, "exit", run_rc);
    if (error && *error) cJSON_AddStringToObject(j, "error", error);
    for (size_t i = 0; nodes && i < s->plan.n; i++) {
        const fl_run_node *r = &nodes[i];
        cJSON *o = cJSON_AddObjectToObject(ns, s->plan.nodes[i]->id);
        if (!o) break;
        cJSON_AddStringToObject(o, "state", node_state_word(r->state));
        if (r->have_key) {
            char hex[FL_DIGEST_HEX];
            fl_digest_hex(&r->key, hex);
            cJSON_AddStringToObject(o, "key", hex);
        }
        if (r->seconds > 0) cJSON_AddNumberToObject(o, "seconds", r->seconds);
        if (r->why[0]) cJSON_AddStringToObject(o, "why", r->why);
        if (r->error[0]) cJSON_AddStringToObject(o, "error", r->error);
    }
    /* One comment line: gc reads refs for keys to keep and skips '#' lines; this ref protects
     * nothing (runs/<name> and work/<name> do). cJSON escapes newlines inside strings. */
    char *json = cJSON_PrintUnformatted(j);
    text = json ? fl_strdupf("# the latest run, for the report (dag/report.c)\n# %s\n", json) : NULL;
    cJSON_free(json);
    if (!text) {
        fl_errf(e, "out of memory");
        goto out;
    }
    rc = fl_session_store(s, e) ? -1 : fl_store_ref_set(s->store, name, text, e);
out:
    cJSON_Delete(j);
    free(name);
    free(text);
    return rc;
}

static cJSON *load_run(fl_session *s) {
    char *name = ref_name(s);
    fl_err e = {{0}};
    char *text = name ? fl_store_ref_get(s->store, name, &e) : NULL;
    char *line = text ? strstr(text, "\n# {") : NULL;
    cJSON *j = line ? cJSON_Parse(line + 3) : NULL;
    free(name);
    free(text);
    return j;
}

/* ---------------------------------------------------------------- node states */

static char *join_reasons(const fl_reasons *r) {
    char *line = NULL;
    for (size_t k = 0; k < r->n; k++) {
        char *t = fl_reason_text(&r->v[k]);
        char *nl = fl_strdupf("%s%s%s", line ? line : "", line ? "; " : "", t ? t : "?");
        free(t);
        free(line);
        line = nl;
    }
    return line;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* As fl_exec_status: a node is cached when its key's record and outputs are in the store. */
static int node_states(fl_rctx *r, fl_err *e) {
    fl_session *s = r->s;
    size_t N = s->plan.n;
    fl_digest *outs = calloc(N + 1, sizeof *outs);
    if (!outs) return fl_errf(e, "out of memory");
    for (size_t k = 0; k < N; k++) {
        size_t i = s->order[k];
        fl_rnode *x = &r->nodes[i];
        const fl_plan_node *n = s->plan.nodes[i];
        x->n = n;
        x->seconds = NAN;
        size_t blocker = N;
        for (size_t j = 0; j < s->ndeps[i] && blocker == N; j++)
            if (r->nodes[s->deps[i][j]].state != RS_CACHED) blocker = s->deps[i][j];
        if (blocker != N) {
            x->state = RS_PENDING;
            x->why = fl_strdupf("waits for %s", s->plan.nodes[blocker]->id);
            continue;
        }
        fl_digest *in = calloc(n->ninputs + 1, sizeof *in), key, tree;
        cJSON *desc = NULL;
        char *json = NULL;
        fl_err le = {{0}};
        if (!in || fl_exec_input_digests(s, i, outs, in, 1, &le) ||
            fl_key_compute(n, s->cfg.root, in, &key, &desc, &le)) {
            x->state = RS_ERROR;
            x->why = strdup(in ? le.msg : "out of memory");
            free(in);
            cJSON_Delete(desc);
            continue;
        }
        free(in);
        x->have_key = 1;
        fl_digest_hex(&key, x->key);
        int rc = fl_store_record_peek(s->store, &key, &tree, &json, &le);
        int intact = rc == FL_RECORD_FOUND ? fl_store_tree_intact(s->store, &tree, &le) : 1;
        if (rc == FL_RECORD_FOUND && intact == 1) {
            x->state = RS_CACHED;
            outs[i] = tree;
            x->have_out = 1;
            fl_digest_hex(&tree, x->out);
            cJSON *rec = json ? cJSON_Parse(json) : NULL;
            x->seconds = fl_rjson_num(rec, "seconds");
            cJSON_Delete(rec);
            /* After a run, only the checkouts it left (it may have removed a damaged one, for
             * the next run to rebuild); on demand, missing ones are made. */
            char *co = fl_strdupf("%s/checkouts/%s", fl_store_root(s->store), x->out);
            struct stat st;
            if (co && stat(co, &st) == 0 && S_ISDIR(st.st_mode)) x->dir = co, co = NULL;
            else if (r->checkout) x->dir = fl_store_checkout(s->store, &tree, &le);
            free(co);
        } else if (rc == FL_RECORD_FOUND || rc == FL_RECORD_DAMAGED) {
            x->state = RS_DAMAGED;
            x->why = strdup(le.msg);
        } else if (rc < 0 || intact < 0) {
            x->state = RS_ERROR;
            x->why = strdup(le.msg);
        } else {
            fl_reasons why;
            fl_explain_diff(fl_session_prev(s, n->id), desc, &why);
            x->state = why.n == 1 && why.v[0].kind == FL_WHY_NEW ? RS_MISSING : RS_STALE;
            x->why = join_reasons(&why);
            fl_reasons_free(&why);
        }
        free(json);
        cJSON_Delete(desc);
    }
    free(outs);
    /* What the latest run did, where it still describes the same key. */
    const cJSON *rn = cJSON_GetObjectItemCaseSensitive(r->run, "nodes");
    for (size_t i = 0; rn && i < N; i++) {
        fl_rnode *x = &r->nodes[i];
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(rn, x->n->id);
        const char *st = jstr(o, "state"), *key = jstr(o, "key");
        if (!st) continue;
        int same = key && x->have_key && !strcmp(key, x->key);
        const char *msg = NULL;
        if (!strcmp(st, "ran") && same && x->state == RS_CACHED) {
            x->state = RS_RAN;
            msg = jstr(o, "why");
        } else if (!strcmp(st, "failed") && (same || !x->have_key) && x->state != RS_CACHED) {
            x->state = RS_FAILED;
            x->seconds = fl_rjson_num(o, "seconds");
            const char *err = jstr(o, "error"), *why = jstr(o, "why");
            free(x->why);
            x->why = fl_strdupf("%s%s%s", err ? err : "failed", why ? " (it ran: " : "",
                                why ? why : "");
            if (x->why && why) {
                char *w = fl_strdupf("%s)", x->why);
                free(x->why);
                x->why = w;
            }
            continue;
        } else if (!strcmp(st, "skipped") && x->state == RS_PENDING) {
            x->state = RS_SKIPPED;
            if (x->why && !strncmp(x->why, "waits for ", 10)) {
                char *w = fl_strdupf("not started: %s did not finish in this run", x->why + 10);
                free(x->why);
                x->why = w;
            }
        }
        if (msg) {
            free(x->why);
            x->why = strdup(msg);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- the page */

static const char css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px "
    "40px;color:#222;background:#fff}"
    "h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;border-bottom:1px solid #ccc;"
    "padding-bottom:3px;margin-top:28px}h3{font-size:15px;margin:16px 0 6px}"
    ".scroll{overflow-x:auto}nav a{margin-right:14px}.sub{color:#666}"
    ".banner{padding:8px 12px;border-radius:4px;margin:10px 0}"
    ".banner.ok{background:#e6f4ea}.banner.bad{background:#fde7e7;color:#8a1010}"
    "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;"
    "text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;"
    "font-variant-numeric:tabular-nums}code{font-size:12px}"
    ".missing{background:#fff6e0;border:1px dashed #d9a400;padding:6px 10px;margin:6px 0;"
    "border-radius:4px}"
    ".grid2{display:flex;flex-wrap:wrap;gap:10px}.panel{border:1px solid #e3e3e3;"
    "border-radius:4px;padding:6px;margin:4px 0}"
    "svg text{font:11px sans-serif;fill:#333}svg .ctitle{font-weight:bold;font-size:12px}"
    "svg .frame{fill:none;stroke:#999}svg .grid{stroke:#eee}svg .nodata{fill:#b36b00;"
    "font-size:14px}"
    "svg .series{fill:none;stroke-width:1.8}svg .mark{stroke:#d62728;stroke-dasharray:4 3}"
    "svg .marklabel{fill:#d62728}svg .bar{fill:#4c78a8}svg .bval.bad{fill:#c00}"
    ".s0{stroke:#1f77b4;fill:#1f77b4}.s1{stroke:#ff7f0e;fill:#ff7f0e}.s2{stroke:#2ca02c;"
    "fill:#2ca02c}.s3{stroke:#9467bd;fill:#9467bd}.s4{stroke:#8c564b;fill:#8c564b}"
    ".s5{stroke:#aaa;fill:#aaa}svg text.legend{stroke:none}"
    ".st-ran{fill:#cfe8ff}.st-cached{fill:#e3f4e3}.st-failed{fill:#ffd0d0}.st-skipped,"
    ".st-pending{fill:#eee}.st-stale,.st-missing{fill:#fff1c9}.st-damaged,.st-error{fill:#ffb3b3}"
    "td.st-ran{background:#cfe8ff}td.st-cached{background:#e3f4e3}td.st-failed,td.st-damaged,"
    "td.st-error{background:#ffd0d0}td.st-stale,td.st-missing{background:#fff1c9}"
    "td.st-skipped,td.st-pending{background:#eee}"
    "svg .node rect{stroke:#555}svg .edge{fill:none;stroke:#888;stroke-width:1.2}"
    ".sheet{display:flex;flex-wrap:wrap;gap:8px}.sheet figure{margin:0;font-size:11px;"
    "text-align:center}.sheet img{display:block;border:1px solid #ccc}"
    ".nb{display:flex;gap:6px;align-items:flex-end;margin:6px 0}.nb figure{margin:0;"
    "font-size:11px;text-align:center}.nb img{display:block;border:3px solid #ddd}"
    ".nb .hit img{border-color:#2ca02c}.nb .query img{border-color:#1f77b4}";

static void page_head(fl_html *h, const fl_rctx *r) {
    fl_session *s = r->s;
    fl_html_raw(h, "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n"
                   "<head><meta charset=\"utf-8\"/><title>fluke report: ");
    fl_html_text(h, s->cfg.name);
    fl_html_raw(h, "</title>\n<style>");
    fl_html_raw(h, css);
    fl_html_raw(h, "</style></head>\n<body>\n<h1>fluke run report: ");
    fl_html_text(h, s->cfg.name);
    fl_html_raw(h, "</h1>\n<div class=\"sub\">config <code>");
    fl_html_text(h, s->cfg.file);
    fl_html_raw(h, "</code>, store <code>");
    fl_html_text(h, s->store_path);
    time_t now = time(NULL);
    char tb[64];
    strftime(tb, sizeof tb, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    fl_html_raw(h, "</code>; report written ");
    fl_html_text(h, tb);
    double started = fl_rjson_num(r->run, "started");
    if (isfinite(started)) {
        time_t t = (time_t)started;
        strftime(tb, sizeof tb, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
        fl_html_raw(h, ", latest run started ");
        fl_html_text(h, tb);
        fl_html_raw(h, " and took ");
        fl_html_secs(h, fl_rjson_num(r->run, "seconds"));
    } else {
        fl_html_raw(h, "; no run of this config is on record in the store");
    }
    fl_html_raw(h, "</div>\n");
    double ex = fl_rjson_num(r->run, "exit");
    const char *err = jstr(r->run, "error");
    if (isfinite(ex) && ex != 0) {
        fl_html_printf(h, "<div class=\"banner bad\" id=\"run-failed\">The latest run failed (exit "
                          "%d): ", (int)ex);
        fl_html_text(h, err ? err : "no message");
        fl_html_raw(h, "</div>\n");
    } else if (isfinite(ex)) {
        fl_html_raw(h, "<div class=\"banner ok\">The latest run succeeded.</div>\n");
    }
    fl_html_raw(h, "<nav><a href=\"#run\">The run</a><a href=\"#curves\">Training curves</a>"
                   "<a href=\"#ident\">Identification</a><a href=\"#data\">The data</a></nav>\n");
}

/* Writes text to dir/report.html through a fresh temporary name (O_EXCL: never through a link
 * someone placed there), then renames it into place. */
static int write_page(const char *dir, const fl_html *h, char **path, fl_err *e) {
    char *dst = fl_strdupf("%s/report.html", dir), *tmp = fl_strdupf("%s/.report.html.XXXXXX", dir);
    int rc = -1, fd = -1;
    if (!dst || !tmp) {
        fl_errf(e, "out of memory");
        goto out;
    }
    if ((fd = mkstemp(tmp)) < 0) {
        fl_errf(e, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    size_t off = 0;
    while (off < h->n) {
        ssize_t w = write(fd, h->p + off, h->n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    if (off != h->n || fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        fl_errf(e, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, dst) != 0) {
        fl_errf(e, "cannot rename %s to %s: %s", tmp, dst, strerror(errno));
        goto out;
    }
    rc = 0;
    if (path) *path = dst, dst = NULL;
out:
    if (fd >= 0) close(fd);
    if (rc && tmp) unlink(tmp);
    free(dst);
    free(tmp);
    return rc;
}

int fl_report_write(fl_session *s, int checkout, char **path, fl_err *e) {
    if (path) *path = NULL;
    if (fl_session_store(s, e)) return -1;
    fl_rctx r = {.s = s, .n = s->plan.n, .checkout = checkout};
    r.nodes = calloc(s->plan.n + 1, sizeof *r.nodes);
    if (!r.nodes) return fl_errf(e, "out of memory");
    cJSON *run = load_run(s);
    r.run = run;
    fl_html h = {0};
    int rc = node_states(&r, e);
    if (rc == 0) {
        page_head(&h, &r);
        fl_report_dag(&h, &r);
        fl_report_curves(&h, &r);
        fl_report_ident(&h, &r);
        fl_report_sheet(&h, &r);
        fl_html_raw(&h, "</body>\n</html>\n");
        if (h.oom) rc = fl_errf(e, "report: out of memory");
    }
    if (rc == 0) rc = fl_exec_out_dir_ready(s, e);
    if (rc == 0) rc = write_page(s->out_dir, &h, path, e);
    if (rc) fl_errprefix(e, "report");
    for (size_t i = 0; i < r.n; i++) {
        free(r.nodes[i].why);
        free(r.nodes[i].dir);
    }
    free(r.nodes);
    cJSON_Delete(run);
    fl_html_free(&h);
    return rc;
}
