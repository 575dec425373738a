/* coco_index_mpi.h — the training index, parsed once on a root rank and broadcast.
 * Kept apart from coco_index.h so code that does not use MPI needs no mpi.h. */
#ifndef KD_COCO_INDEX_MPI_H
#define KD_COCO_INDEX_MPI_H

#include <mpi.h>

#include "worker/data/coco_index.h"

/* Collective over comm. The root runs kd_coco_index_load (cache or parse); every rank
 * then holds an identical index. When the root fails, every rank returns an error (the
 * root's own message there, "rank R could not load the index" elsewhere); no rank hangs.
 * *from_cache (may be NULL) is meaningful on the root. */
kd_status kd_coco_index_load_bcast(const char *src_path, const char *cache_path, const kd_coco_index_opts *o,
                                   MPI_Comm comm, int root, kd_coco_index *out, int *from_cache, kd_err *err);

#endif
