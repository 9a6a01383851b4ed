#include "dag/publish.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dag/exec.h"

int fl_publish_file(fl_store *s, const fl_publish_item *it, int *kind, fl_err *e) {
    fl_digest want, got;
    *kind = FL_RUN_ERR_STORE;
    if (fl_store_tree_lookup(s, it->tree, it->rel, &want, e))
        return fl_errprefix(e, "publishing '%s' of stage '%s'", it->rel, it->node_id);
    *kind = FL_RUN_ERR_STAGE;
    char *src = fl_strdupf("%s/%s", it->checkout, it->rel);
    char *tmp = fl_strdupf("%s.fluke-publish.%ld", it->dst, (long)getpid());
    int rc = -1;
    if (!src || !tmp) {
        fl_errf(e, "out of memory");
        goto out;
    }
    /* Hash the copy itself: what lands in out/ is exactly what was checked. */
    if (fl_copy_file(src, tmp, e) || fl_hash_file(tmp, &got, e)) {
        fl_errprefix(e, "publishing '%s' of stage '%s' to %s", it->rel, it->node_id, it->dst);
        goto out;
    }
    if (fl_digest_eq(&want, &got)) {
        if (rename(tmp, it->dst) != 0) {
            fl_errf(e, "publishing '%s' of stage '%s': cannot replace %s: %s", it->rel,
                    it->node_id, it->dst, strerror(errno));
            goto out;
        }
        rc = 0;
        goto out;
    }
    char whex[FL_DIGEST_HEX], ghex[FL_DIGEST_HEX];
    fl_digest_hex(&want, whex);
    fl_digest_hex(&got, ghex);
    int corrupt = 0;
    fl_err re = {{0}};
    const char *done;
    if (fl_store_object_recheck(s, &want, &corrupt, &re) != 0) {
        done = re.msg;
    } else if (corrupt) {
        /* Quarantined: the next run cannot reuse it; dropping the record makes it recompute. */
        fl_store_record_drop(s, it->key, &re);
        fl_remove_tree(it->checkout, &re);
        done = "the object was quarantined and the stage's record dropped: the next run "
               "recomputes it";
    } else {
        fl_remove_tree(it->checkout, &re);
        done = "the object itself is intact; the damaged checkout was removed: the next run "
               "rebuilds it";
    }
    fl_errf(e,
            "stage '%s': %s in the store is corrupt (object %s, content hashes to %s); not "
            "published to %s; %s (`fluke verify` checks the rest of the store)",
            it->node_id, it->rel, whex, ghex, it->dst, done);
out:
    if (tmp) unlink(tmp);
    free(src);
    free(tmp);
    return rc;
}
