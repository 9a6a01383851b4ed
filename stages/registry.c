/* The pipeline: which stages exist, the config keys they read, and how the plan is built from a
 * config. */
#include "stages/registry.h"

static const fl_cfg_field pipeline_schema[] = {
    {NULL, 0, 0, NULL},
};

static int plan_pipeline(const cJSON *config, const char *config_dir, fl_plan *p, fl_err *e) {
    (void)config;
    (void)config_dir;
    (void)p;
    return fl_errf(e, "the pipeline stages are not built yet (synth, detector, embed: issues 4-7)");
}

const fl_registry fl_pipeline_registry = {
    .program = "fluke",
    .default_config = "smoke.json",
    .schema = pipeline_schema,
    .plan = plan_pipeline,
    .commands = NULL,
};
