/* Plan building: the declarations a registry makes for each node. */
#include "stages/api/plan.h"

#include <stdlib.h>
#include <string.h>

int fl_strv_push(fl_strv *v, const char *s) {
    char **nv = realloc(v->v, (v->n + 1) * sizeof *nv);
    if (!nv) return -1;
    v->v = nv;
    if (!(v->v[v->n] = strdup(s))) return -1;
    v->n++;
    return 0;
}

void fl_strv_free(fl_strv *v) {
    for (size_t i = 0; i < v->n; i++) free(v->v[i]);
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

void fl_plan_init(fl_plan *p, const char *config_dir) {
    memset(p, 0, sizeof *p);
    p->config_dir = config_dir;
}

static void node_free(fl_plan_node *n) {
    free(n->id);
    fl_strv_free(&n->sections);
    fl_strv_free(&n->outputs);
    fl_strv_free(&n->publish);
    for (size_t i = 0; i < n->ninputs; i++) {
        free(n->inputs[i].name);
        free(n->inputs[i].from_node);
        free(n->inputs[i].path);
    }
    free(n->inputs);
    free(n);
}

void fl_plan_free(fl_plan *p) {
    for (size_t i = 0; i < p->n; i++) node_free(p->nodes[i]);
    free(p->nodes);
    p->nodes = NULL;
    p->n = 0;
}

fl_plan_node *fl_plan_find(const fl_plan *p, const char *id) {
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->nodes[i]->id, id)) return p->nodes[i];
    return NULL;
}

static int valid_id(const char *id) {
    if (!*id) return 0;
    for (const char *c = id; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-' || *c == '.' || *c == '[' || *c == ']'))
            return 0;
    return 1;
}

fl_plan_node *fl_plan_add_as(fl_plan *p, const fl_stage_def *def, const char *id, fl_err *e) {
    if (!valid_id(id)) {
        fl_errf(e, "invalid stage id '%s' (letters, digits, _ - . [ ] only)", id);
        return NULL;
    }
    if (fl_plan_find(p, id)) {
        fl_errf(e, "stage '%s' is declared twice", id);
        return NULL;
    }
    fl_plan_node *n = calloc(1, sizeof *n);
    fl_plan_node **nv = realloc(p->nodes, (p->n + 1) * sizeof *nv);
    if (!n || !nv || !(n->id = strdup(id))) {
        free(n);
        if (nv) p->nodes = nv;
        fl_errf(e, "out of memory");
        return NULL;
    }
    p->nodes = nv;
    n->def = def;
    n->instance = -1;
    n->threads = 1;
    n->index = p->n;
    p->nodes[p->n++] = n;
    return n;
}

fl_plan_node *fl_plan_add(fl_plan *p, const fl_stage_def *def, int instance, fl_err *e) {
    char id[256];
    if (instance < 0)
        snprintf(id, sizeof id, "%s", def->name);
    else
        snprintf(id, sizeof id, "%s[%d]", def->name, instance);
    fl_plan_node *n = fl_plan_add_as(p, def, id, e);
    if (n) n->instance = instance;
    return n;
}

fl_plan_node *fl_plan_add_instance(fl_plan *p, const fl_stage_def *def, const char *id, int instance,
                                   fl_err *e) {
    fl_plan_node *n = fl_plan_add_as(p, def, id, e);
    if (n) n->instance = instance;
    return n;
}

int fl_plan_node_section(fl_plan_node *n, const char *section, fl_err *e) {
    for (size_t i = 0; i < n->sections.n; i++)
        if (!strcmp(n->sections.v[i], section)) return 0;
    if (fl_strv_push(&n->sections, section)) return fl_errf(e, "out of memory");
    return 0;
}

static int add_input(fl_plan_node *n, const char *name, const char *from, const char *path, fl_err *e) {
    for (size_t i = 0; i < n->ninputs; i++)
        if (!strcmp(n->inputs[i].name, name))
            return fl_errf(e, "stage '%s': input '%s' declared twice", n->id, name);
    fl_plan_input *nv = realloc(n->inputs, (n->ninputs + 1) * sizeof *nv);
    if (!nv) return fl_errf(e, "out of memory");
    n->inputs = nv;
    fl_plan_input *in = &n->inputs[n->ninputs++];
    in->name = strdup(name);
    in->from_node = from ? strdup(from) : NULL;
    in->path = path ? strdup(path) : NULL;
    return 0;
}

int fl_plan_node_input(fl_plan_node *n, const char *name, const char *from_node, fl_err *e) {
    return add_input(n, name, from_node, NULL, e);
}

int fl_plan_node_input_path(fl_plan_node *n, const char *name, const char *path, fl_err *e) {
    return add_input(n, name, NULL, path, e);
}

int fl_plan_node_output(fl_plan_node *n, const char *relpath, fl_err *e) {
    if (relpath[0] == '/' || strstr(relpath, ".."))
        return fl_errf(e, "stage '%s': output '%s' must be a relative path inside the output",
                       n->id, relpath);
    return fl_strv_push(&n->outputs, relpath) ? fl_errf(e, "out of memory") : 0;
}

int fl_plan_node_publish(fl_plan_node *n, const char *relpath, fl_err *e) {
    if (relpath[0] == '/' || strstr(relpath, ".."))
        return fl_errf(e, "stage '%s': published '%s' must be a relative path", n->id, relpath);
    return fl_strv_push(&n->publish, relpath) ? fl_errf(e, "out of memory") : 0;
}

void fl_plan_node_resources(fl_plan_node *n, int threads, int gpus) {
    n->threads = threads < 1 ? 1 : threads;
    n->gpus = gpus < 0 ? 0 : gpus > FL_MAX_GPUS ? FL_MAX_GPUS : gpus; /* more fails at run */
}

int fl_plan_node_reads(const fl_plan_node *n, const char *path) {
    for (size_t i = 0; i < n->sections.n; i++) {
        const char *s = n->sections.v[i];
        size_t l = strlen(s);
        if (!strncmp(path, s, l) && (path[l] == '\0' || path[l] == '.' || path[l] == '['))
            return 1;
    }
    return 0;
}
