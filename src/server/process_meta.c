/*
 * process_meta.c - the meta protocol against storage (see process_meta.h).
 * Not implemented yet: every meta command answers ERROR, as a server
 * without meta support would.
 */
#include "process_meta.h"

#include <stdlib.h>

#include "server.h"

void process_meta(struct conn *c, const struct text_request *req)
{
    (void)req;
    conn_out_str(c, "ERROR");
}

void process_meta_complete_nread(struct conn *c)
{
    storage_release(c->w->srv->storage, &c->item);
    free(c->meta_pending);
    c->meta_pending = NULL;
}
