/* The pipeline registry that the fluke binary runs. */
#ifndef FLUKE_REGISTRY_H
#define FLUKE_REGISTRY_H

#include "stages/api/stage.h"

extern const fl_registry fl_pipeline_registry;

#endif
