/* The remote cache as the executor and `fluke status` see it: the config (cache.remote,
 * cache.remote_token_env, cache.remote_mode, cache.remote_timeout_s) and the command-line
 * overrides (--remote-cache URL, --remote-readonly) turned into one fl_remote per session, and
 * the three calls the run loop and status make. Every call is a no-op without a remote. */
#ifndef FLUKE_REMOTE_HOOK_H
#define FLUKE_REMOTE_HOOK_H

#include "dag/session.h"

/* Opens the session's remote (once; s->remote stays NULL when none is configured). -1 with e
 * naming the config file and line on a bad setting (an unknown mode, a malformed URL). */
int fl_remote_hook_open(fl_session *s, fl_err *e);
/* Before running node_id whose key has no local record: 1 when the remote had it and it is now
 * committed locally (*tree), 0 on a miss, -1 on a local store error. */
int fl_remote_hook_pull(fl_session *s, const char *node_id, const fl_digest *key, fl_digest *tree,
                        fl_err *e);
/* After node_id committed locally: uploads it (failures are warnings, never errors). */
void fl_remote_hook_push(fl_session *s, const char *node_id, const fl_digest *key);
/* For status: 1 when the remote has an entry for key (*tree: its output), 0 otherwise. */
int fl_remote_hook_peek(fl_session *s, const fl_digest *key, fl_digest *tree);
/* One summary line for the end of a run (nothing without a remote). */
void fl_remote_hook_summary(fl_session *s);

#endif
