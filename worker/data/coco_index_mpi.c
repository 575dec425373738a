/* coco_index_mpi.c — broadcast of the packed COCO index (see coco_index_mpi.h).
 * Protocol: the root broadcasts {status, blob_bytes} (two uint64), then, when the status
 * is OK, the blob in chunks of at most 1 GiB (MPI counts are int). The receiving ranks
 * validate the bytes with kd_coco_index_from_bytes like any other untrusted input.
 */
#include "worker/data/coco_index_mpi.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES ((size_t)1 << 30)

static int bcast_bytes(void *buf, size_t n, MPI_Comm comm, int root)
{
    for (size_t off = 0; off < n; off += CHUNK_BYTES) {
        size_t k = n - off < CHUNK_BYTES ? n - off : CHUNK_BYTES;
        if (MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, comm) != MPI_SUCCESS) return -1;
    }
    return 0;
}

kd_status kd_coco_index_load_bcast(const char *src_path, const char *cache_path, const kd_coco_index_opts *o,
                                   MPI_Comm comm, int root, kd_coco_index *out, int *from_cache, kd_err *err)
{
    memset(out, 0, sizeof *out);
    int rank;
    if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS) return kd_errf(err, KD_EPROTO, "COCO index: MPI_Comm_rank failed");
    uint64_t head[2] = {0, 0};
    kd_status st = KD_OK;
    if (rank == root) {
        st = kd_coco_index_load(src_path, cache_path, o, out, from_cache, err);
        head[0] = (uint64_t)st;
        head[1] = st ? 0 : out->blob_bytes;
    }
    if (MPI_Bcast(head, 2, MPI_UINT64_T, root, comm) != MPI_SUCCESS) {
        if (rank == root) kd_coco_index_free(out);
        return kd_errf(err, KD_EPROTO, "COCO index: broadcast of the header failed");
    }
    if (head[0] != KD_OK) {
        if (rank == root) return st;
        return kd_errf(err, (kd_status)head[0], "COCO index: rank %d could not load %s", root, src_path);
    }
    if (rank == root) {
        if (bcast_bytes(out->blob, out->blob_bytes, comm, root)) {
            kd_coco_index_free(out);
            return kd_errf(err, KD_EPROTO, "COCO index: broadcast failed");
        }
        return KD_OK;
    }
    void *blob = malloc(head[1] ? head[1] : 1);
    if (!blob) return kd_errf(err, KD_ENOMEM, "COCO index: cannot allocate %llu bytes", (unsigned long long)head[1]);
    /* every rank must take part in the broadcast even if its allocation failed: no hang */
    if (bcast_bytes(blob, head[1], comm, root)) {
        free(blob);
        return kd_errf(err, KD_EPROTO, "COCO index: broadcast failed");
    }
    if (from_cache) *from_cache = 0;
    return kd_coco_index_from_bytes(blob, head[1], out, err);
}
