/* Stage "embed_weights", planned as node "weights" (issue 12, Build 2): timm's pretrained
 * EfficientNet weights by name (embed.backbone.weights: "tf_efficientnet_b7.ns_jft_in1k",
 * "efficientnet_b0.ra_in1k", ... (tf_)efficientnet_b0..b7 with a timm tag after the dot),
 * downloaded once from {embed.backbone.weights_url}/timm/<name>/resolve/main/model.safetensors
 * (default https://huggingface.co; pytorch_model.bin when the hub has no safetensors file, read
 * by the safe torch.save reader and converted) and written as FL_EMBED_PRETRAINED_FILE in the
 * node's outputs, content-addressed like every artifact. The file is checked to be safetensors
 * holding an EfficientNet stem (conv_stem.weight). embed_train loads it with fl_effnet_load
 * (runtime/models/effnet.h) strictly by name, skipping "classifier.", "conv_head.", "bn2.".
 *
 * The node reads only the sections "embed.backbone.weights" and "embed.backbone.weights_url",
 * so no other embed setting (learning rate, epochs, ...) downloads again. */
#ifndef FLUKE_IDENT_WEIGHTS_STAGE_H
#define FLUKE_IDENT_WEIGHTS_STAGE_H

#include <cjson/cJSON.h>

#include "stages/api/stage.h"

#define FL_EMBED_PRETRAINED_FILE "weights/model.safetensors"
#define FL_EMBED_WEIGHTS_URL "https://huggingface.co"
#define FL_EMBED_WEIGHTS_NODE "weights"

extern const fl_stage_def fl_stage_embed_weights;
/* Only embed.backbone.weights and embed.backbone.weights_url (the lead declares the "embed" and
 * "embed.backbone" objects). */
extern const fl_cfg_field fl_embed_weights_schema[];

/* Checks an embed.backbone.weights value: (tf_)efficientnet_b0..b7 + "." + a timm tag of
 * [a-z0-9_] (starting with a letter or digit, at most 64 bytes). -1 with a message naming the
 * key and the accepted form. */
int fl_embed_weights_name(const char *v, fl_err *e);

/* Adds the node (id "weights", output FL_EMBED_PRETRAINED_FILE) when the config sets
 * embed.backbone.weights; *out gets it, or NULL when the key is absent. A bad name (or a
 * weights_url that is not a non-empty string) is an error here already, before anything runs. */
int fl_plan_embed_weights(fl_plan *p, const cJSON *config, fl_plan_node **out, fl_err *e);

#endif
