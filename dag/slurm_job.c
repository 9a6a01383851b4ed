/* The job side of the Slurm executor: `fluke __slurm_job PREFIX`, run by the batch script on the
 * compute node. It reads PREFIX.spec.json (what the parent would have put into the stage's
 * memfd), starts the stage exactly as the local executor does (fl_runner_spawn: a fresh
 * `__stage` process with its thread budget and the GPUs Slurm gave the job), and writes
 * PREFIX.exit ({"exit", "signal", "message"}, atomically) when it ends. It never opens the store:
 * it only touches the stage's staging and work directories, and the submitting `fluke run`
 * commits. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dag/exec_slurm.h"

/* The stage process, for the forwarding handler: scancel signals the batch script's processes,
 * and the stage must see SIGTERM first to stop cleanly (it dies with us anyway: PDEATHSIG). */
static volatile pid_t g_stage_pid;
static void forward(int sig) {
    if (g_stage_pid > 0) kill(g_stage_pid, sig);
}

static const char *str(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int write_exit(const char *prefix, int code, int sig, const char *msg) {
    cJSON *j = cJSON_CreateObject();
    char *path = fl_strdupf("%s.exit", prefix), *text = NULL;
    int rc = -1;
    if (j && path && cJSON_AddNumberToObject(j, "exit", code) && cJSON_AddNumberToObject(j, "signal", sig) &&
        cJSON_AddStringToObject(j, "message", msg) && (text = cJSON_PrintUnformatted(j))) {
        fl_err e = {{0}};
        rc = fl_write_file_atomic(path, text, strlen(text), &e); /* fsync: seen by the submit host */
        if (rc) fprintf(stderr, "fluke __slurm_job: %s\n", e.msg);
    }
    cJSON_Delete(j);
    free(path);
    free(text);
    return rc;
}

int fl_slurm_job_main(int argc, char **argv, const fl_registry *reg) {
    if (argc != 3) {
        fprintf(stderr, "%s: __slurm_job is internal (the batch script of the Slurm executor runs "
                        "it): usage: __slurm_job PREFIX\n", reg->program);
        return 2;
    }
    const char *prefix = argv[2];
    char *exitp = fl_strdupf("%s.exit", prefix), *specp = fl_strdupf("%s.spec.json", prefix);
    if (!exitp || !specp) return 1;
    unlink(exitp); /* a requeued job runs again: only this run's end may be read */
    fl_err e = {{0}};
    char *text = fl_read_file(specp, NULL, &e);
    cJSON *spec = text ? cJSON_Parse(text) : NULL;
    free(text);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(spec, "config");
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(spec, "inputs");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(spec, "threads");
    const cJSON *gp = cJSON_GetObjectItemCaseSensitive(spec, "gpus");
    fl_stage_spec sp = {.program = reg->program,
                        .config = cfg,
                        .config_dir = str(spec, "config_dir"),
                        .node_id = str(spec, "node"),
                        .out_dir = str(spec, "out_dir"),
                        .work_dir = str(spec, "work_dir")};
    int rc = 1;
    const char **paths = NULL;
    char *gpus = NULL;
    if (!spec) {
        if (!e.msg[0]) fl_errf(&e, "%s: malformed stage spec", specp);
        goto out;
    }
    if (!cJSON_IsObject(cfg) || !cJSON_IsArray(ins) || !cJSON_IsNumber(th) || !cJSON_IsNumber(gp) ||
        !sp.config_dir || !sp.node_id || !sp.out_dir || !sp.work_dir) {
        fl_errf(&e, "%s: malformed stage spec", specp);
        goto out;
    }
    sp.ninputs = (size_t)cJSON_GetArraySize(ins);
    paths = calloc(sp.ninputs + 1, sizeof *paths);
    if (!paths) {
        fl_errf(&e, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (const cJSON *p = ins->child; p; p = p->next) paths[k++] = cJSON_IsString(p) ? p->valuestring : "";
    sp.input_paths = paths;
    sp.threads = (int)th->valuedouble;
    sp.ngpus = (int)gp->valuedouble;
    /* The GPUs are the ones Slurm bound to the job (--gres sets CUDA_VISIBLE_DEVICES); a site
     * that does not set it gives the job the node's first ones. */
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (sp.ngpus > 0 && cvd && *cvd) {
        gpus = strdup(cvd);
    } else if (sp.ngpus > 0) {
        size_t cap = (size_t)sp.ngpus * 12 + 1;
        gpus = calloc(cap, 1);
        for (int g = 0; gpus && g < sp.ngpus; g++)
            snprintf(gpus + strlen(gpus), cap - strlen(gpus), "%s%d", g ? "," : "", g);
    } else {
        gpus = strdup("");
    }
    if (!gpus) {
        fl_errf(&e, "out of memory");
        goto out;
    }
    sp.gpu_list = gpus;
    /* Requeued after a preemption: the staging dir may hold the killed run's partial outputs. */
    if (fl_remove_tree(sp.out_dir, &e) || fl_mkdirs(sp.out_dir, &e)) goto out;
    struct sigaction sa = {0};
    sa.sa_handler = forward;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    pid_t pid;
    int err_fd;
    printf("[fluke] job    %s on %s: stage process starting\n", sp.node_id,
           getenv("SLURMD_NODENAME") ? getenv("SLURMD_NODENAME") : "this node");
    fflush(stdout);
    if (fl_runner_spawn(&sp, &pid, &err_fd, &e)) goto out;
    g_stage_pid = pid;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    g_stage_pid = 0;
    char msg[FL_ERRLEN] = "";
    ssize_t r = read(err_fd, msg, sizeof msg - 1);
    if (r > 0) msg[r] = '\0';
    close(err_fd);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 0, sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    printf("[fluke] job    %s: stage process ended (exit %d, signal %d)%s%s\n", sp.node_id, code,
           sig, msg[0] ? ": " : "", msg);
    fflush(stdout);
    if (write_exit(prefix, code, sig, msg) == 0) rc = code || sig ? (sig ? 128 + sig : code) : 0;
    else rc = 1;
    goto done;
out:
    fprintf(stderr, "%s __slurm_job: %s\n", reg->program, e.msg);
    write_exit(prefix, 1, 0, e.msg);
done:
    free(paths);
    free(gpus);
    cJSON_Delete(spec);
    free(exitp);
    free(specp);
    return rc;
}
