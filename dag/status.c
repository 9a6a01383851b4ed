/* `fluke status` and `fluke explain`: what is cached, what is stale and why, without running
 * anything. A stage whose inputs come from a stale stage cannot know its key yet; it is
 * reported with the root cause upstream. */
#include <stdlib.h>
#include <string.h>

#include "dag/exec.h"
#include "dag/explain.h"
#include "dag/key.h"
#include "dag/remote_hook.h"

enum { S_CACHED, S_STALE, S_PENDING, S_ERROR, S_DAMAGED, S_REMOTE };

/* The last column: where the next run takes the stage's result from. */
static const char *source(int st) {
    return st == S_CACHED ? "local hit" : st == S_REMOTE ? "remote hit"
                                        : st == S_ERROR  ? "cannot run"
                                                         : "would run";
}

typedef struct sstate {
    int st;
    fl_digest out;
    cJSON *desc;
    fl_reasons why;
    size_t root; /* S_PENDING: the stale stage upstream that causes it */
    char *err;
} sstate;

static char *join_reasons(const fl_reasons *r, int all) {
    char *line = NULL;
    for (size_t k = 0; k < r->n; k++) {
        char *t = fl_reason_text(&r->v[k]);
        char *nl = fl_strdupf("%s%s%s", line ? line : "", line ? "; " : "", t);
        free(t);
        free(line);
        line = nl;
        if (!all && k >= 2 && r->n > 4) {
            nl = fl_strdupf("%s; and %zu more", line, r->n - k - 1);
            free(line);
            return nl;
        }
    }
    return line ? line : strdup("");
}

int fl_exec_status(fl_session *s, const char *explain, fl_err *e) {
    return fl_exec_status_remote(s, explain, NULL, e);
}

/* Every node's state as the next run would find it (read-only: nothing is run or written). */
static void predict(fl_session *s, const fl_status_remote *remote, sstate *ss, fl_digest *outs) {
    size_t N = s->plan.n;
    for (size_t k = 0; k < N; k++) {
        size_t i = s->order[k];
        fl_plan_node *n = s->plan.nodes[i];
        size_t blocker = N;
        for (size_t j = 0; j < s->ndeps[i] && blocker == N; j++)
            if (ss[s->deps[i][j]].st != S_CACHED && ss[s->deps[i][j]].st != S_REMOTE)
                blocker = s->deps[i][j];
        if (blocker != N) {
            ss[i].st = S_PENDING;
            ss[i].root = ss[blocker].st == S_PENDING ? ss[blocker].root : blocker;
            continue;
        }
        fl_digest *in = calloc(n->ninputs + 1, sizeof *in);
        fl_digest key;
        fl_err le = {{0}};
        if (!in) fl_errf(&le, "out of memory");
        if (!in || fl_exec_input_digests(s, i, outs, in, 1, &le) ||
            fl_key_compute(n, s->cfg.root, in, &key, &ss[i].desc, &le)) {
            ss[i].st = S_ERROR;
            ss[i].err = strdup(le.msg);
            free(in);
            continue;
        }
        free(in);
        int rc = fl_store_record_peek(s->store, &key, &ss[i].out, NULL, &le); /* read-only */
        /* A record is only as good as its outputs: its trees load and its objects are there
         * (no object is read; verify re-hashes them). */
        int intact = rc == FL_RECORD_FOUND ? fl_store_tree_intact(s->store, &ss[i].out, &le) : 1;
        if (rc == FL_RECORD_FOUND && intact == 1) {
            ss[i].st = S_CACHED;
            outs[i] = ss[i].out;
        } else if (rc == FL_RECORD_FOUND && intact == 0) {
            char hex[FL_DIGEST_HEX];
            fl_digest_hex(&ss[i].out, hex);
            ss[i].st = S_DAMAGED;
            ss[i].err = fl_strdupf("output %.12s damaged (%s): `fluke verify` sets it aside, "
                                   "the next run then reruns it", hex, le.msg);
        } else if (rc == FL_RECORD_DAMAGED) {
            ss[i].st = S_DAMAGED;
            ss[i].err = fl_strdupf("record damaged (%s): the next run reruns it", le.msg);
        } else if (rc == FL_RECORD_ABSENT && fl_remote_hook_peek(s, &key, &ss[i].out)) {
            ss[i].st = S_REMOTE; /* its output digest lets the keys downstream be known too */
            outs[i] = ss[i].out;
        } else if (rc < 0 || intact < 0) {
            ss[i].st = S_ERROR;
            ss[i].err = strdup(le.msg);
        } else {
            ss[i].st = S_STALE;
            fl_explain_diff(fl_session_prev(s, n->id), ss[i].desc, &ss[i].why);
            if (remote && remote->peek && remote->peek(remote->ctx, &key, &ss[i].out) == 1) {
                ss[i].st = S_REMOTE; /* stale here, but its result exists: downstream keys known */
                outs[i] = ss[i].out;
            }
        }
    }
}

static int sstates_new(size_t N, sstate **ss, fl_digest **outs, fl_err *e) {
    *ss = calloc(N + 1, sizeof **ss);
    *outs = calloc(N + 1, sizeof **outs);
    if (*ss && *outs) return 0;
    free(*ss);
    free(*outs);
    return fl_errf(e, "out of memory");
}

static void sstates_free(sstate *ss, size_t N) {
    for (size_t i = 0; i < N; i++) {
        cJSON_Delete(ss[i].desc);
        fl_reasons_free(&ss[i].why);
        free(ss[i].err);
    }
    free(ss);
}

int fl_exec_cached_nodes(fl_session *s, unsigned char *hit, fl_err *e) {
    if (fl_session_store(s, e)) return -1;
    size_t N = s->plan.n;
    sstate *ss;
    fl_digest *outs;
    if (sstates_new(N, &ss, &outs, e)) return -1;
    predict(s, NULL, ss, outs);
    for (size_t i = 0; i < N; i++) hit[i] = ss[i].st == S_CACHED || ss[i].st == S_REMOTE;
    sstates_free(ss, N);
    free(outs);
    return 0;
}

int fl_exec_status_remote(fl_session *s, const char *explain, const fl_status_remote *remote,
                          fl_err *e) {
    if (fl_session_store(s, e)) return -1;
    size_t N = s->plan.n, only = N;
    if (explain) {
        fl_plan_node *n = fl_plan_find(&s->plan, explain);
        if (!n) return fl_errf(e, "explain %s: no such stage in %s (see `fluke dag`)", explain, s->cfg.file);
        only = n->index;
    }
    sstate *ss;
    fl_digest *outs;
    if (sstates_new(N, &ss, &outs, e)) return -1;
    int not_cached = 0;
    predict(s, remote, ss, outs);
    for (size_t k = 0; k < N; k++) {
        size_t i = s->order[k];
        if (explain && i != only) continue;
        fl_plan_node *n = s->plan.nodes[i];
        sstate *x = &ss[i];
        if (x->st != S_CACHED) not_cached++;
        if (x->st == S_CACHED) {
            char hex[FL_DIGEST_HEX];
            fl_digest_hex(&x->out, hex);
            printf("cached   %-24s output %.12s  [%s]\n", n->id, hex, source(x->st));
        } else if (x->st == S_REMOTE) {
            char hex[FL_DIGEST_HEX];
            fl_digest_hex(&x->out, hex);
            printf("remote   %-24s remote hit: output %.12s (the next run downloads it)  [%s]\n", n->id, hex,
                   source(x->st));
        } else if (x->st == S_ERROR || x->st == S_DAMAGED) {
            printf("%-8s %-24s %s  [%s]\n", x->st == S_ERROR ? "error" : "damaged", n->id,
                   x->err ? x->err : "out of memory", source(x->st));
        } else if (x->st == S_STALE || x->st == S_REMOTE) {
            /* A stage whose only change is an input from a re-run upstream stage points there. */
            char *r = join_reasons(&x->why, explain != NULL);
            const char *word = x->why.n == 1 && x->why.v[0].kind == FL_WHY_NEW ? "missing" : "stale";
            printf("%-8s %-24s %s  [%s]\n", word, n->id, r, source(x->st));
            free(r);
        } else {
            sstate *root = &ss[x->root];
            char *r = root->st == S_STALE ? join_reasons(&root->why, explain != NULL)
                                          : strdup(root->err ? root->err : "");
            const char *word = root->st == S_STALE && root->why.n == 1 &&
                                       root->why.v[0].kind == FL_WHY_NEW
                                   ? "missing"
                                   : "stale";
            printf("%-8s %-24s upstream %s: %s  [%s]\n", word, n->id, s->plan.nodes[x->root]->id, r,
                   source(x->st));
            free(r);
        }
        if (explain) {
            printf("  stage    %s (code %.12s)\n", n->def->name,
                   n->def->code_id ? n->def->code_id : "");
            for (size_t j = 0; j < n->sections.n; j++) printf("  config   %s\n", n->sections.v[j]);
            for (size_t j = 0; j < n->ninputs; j++)
                printf("  input    %s <- %s\n", n->inputs[j].name,
                       n->inputs[j].from_node ? n->inputs[j].from_node : n->inputs[j].path);
            for (size_t j = 0; j < n->outputs.n; j++) printf("  output   %s\n", n->outputs.v[j]);
            if (x->st == S_PENDING)
                printf("  note     its key is known once %s has run; if %s reproduces its previous "
                       "output bytes, %s stays cached (early cutoff)\n",
                       s->plan.nodes[x->root]->id, s->plan.nodes[x->root]->id, n->id);
        }
    }
    fflush(stdout);
    sstates_free(ss, N);
    free(outs);
    return not_cached;
}

void fl_exec_print_dag(const fl_session *s, int dot) {
    const fl_plan *p = &s->plan;
    if (dot) {
        printf("digraph fluke {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
        for (size_t k = 0; k < p->n; k++) {
            const fl_plan_node *n = p->nodes[s->order[k]];
            printf("  \"%s\";\n", n->id);
            for (size_t j = 0; j < n->ninputs; j++) {
                if (n->inputs[j].from_node)
                    printf("  \"%s\" -> \"%s\" [label=\"%s\"];\n", n->inputs[j].from_node, n->id,
                           n->inputs[j].name);
                else
                    printf("  \"%s\" [shape=note];\n  \"%s\" -> \"%s\" [label=\"%s\"];\n",
                           n->inputs[j].path, n->inputs[j].path, n->id, n->inputs[j].name);
            }
        }
        printf("}\n");
        return;
    }
    for (size_t k = 0; k < p->n; k++) {
        const fl_plan_node *n = p->nodes[s->order[k]];
        printf("%s", n->id);
        if (n->def->summary) printf("  — %s", n->def->summary);
        printf("\n");
        for (size_t j = 0; j < n->ninputs; j++)
            printf("    in   %s <- %s\n", n->inputs[j].name,
                   n->inputs[j].from_node ? n->inputs[j].from_node : n->inputs[j].path);
        for (size_t j = 0; j < n->sections.n; j++) printf("    cfg  %s\n", n->sections.v[j]);
        if (n->threads > 1 || n->gpus) printf("    uses %d threads, %d gpu\n", n->threads, n->gpus);
    }
}
