/* checkpoint.h — the checkpoint container (DESIGN.md §8) and its life on disk.
 *
 * File layout (all integers little-endian):
 *   header   72 bytes: magic "KDCKPT\r\n", version, section count, config hash, step,
 *            epoch, world size, flags, directory offset and size, header checksum
 *   sections one zstd frame each (content checksum on), written in order
 *   directory one entry per section: name, encoding, offset, compressed and raw sizes,
 *            checksums of the stored and of the raw bytes; followed by its own checksum
 * Every section's raw bytes carry a 64-bit checksum that is verified on read, so a flipped
 * byte anywhere is detected and named. Float sections may be stored as byte planes (all
 * first bytes of every float, then all second bytes, ...), which zstd compresses better
 * because sign/exponent bytes are alike; the reader undoes it.
 *
 * On disk: a checkpoint is written to "<name>.tmp", fsynced, renamed to "<name>", and the
 * directory fsynced; then the pointer file "latest" (holding the name) is replaced the same
 * way, then checkpoints beyond the newest `keep` are removed. A crash at any moment leaves
 * `latest` naming a complete file. kd_ckpt_find_latest verifies candidates newest first and
 * falls back to the previous valid one, reporting what it skipped.
 */
#ifndef KD_CHECKPOINT_H
#define KD_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/status.h"

#define KD_CKPT_VERSION 1
#define KD_CKPT_NAME_BYTES 64

typedef struct kd_ckpt_meta {
    uint64_t config_hash;
    uint64_t step;  /* iterations completed */
    uint64_t epoch; /* epoch the next iteration belongs to */
    uint32_t world_size;
} kd_ckpt_meta;

typedef enum { KD_CKPT_RAW = 0, KD_CKPT_F32_PLANES = 1 } kd_ckpt_encoding;

typedef struct kd_ckpt_section {
    const char *name;     /* < KD_CKPT_NAME_BYTES, unique in the file */
    const void *data;
    size_t bytes;
    kd_ckpt_encoding encoding; /* F32_PLANES needs bytes % 4 == 0 */
} kd_ckpt_section;

typedef struct kd_ckpt_write_opts {
    int threads; /* zstd worker threads; 0 = single-threaded */
    int level;   /* zstd level; 0 = default (3) */
} kd_ckpt_write_opts;

/* Write one checkpoint file atomically (tmp, fsync, rename, fsync of the folder). */
kd_status kd_ckpt_write(const char *path, const kd_ckpt_meta *meta, const kd_ckpt_section *secs,
                        int n_secs, const kd_ckpt_write_opts *opts, kd_err *err);

typedef struct kd_ckpt_entry {
    char name[KD_CKPT_NAME_BYTES];
    uint32_t encoding;
    uint64_t offset, comp_bytes, raw_bytes;
    uint64_t checksum;      /* of the raw bytes */
    uint64_t comp_checksum; /* of the stored (compressed) bytes */
} kd_ckpt_entry;

typedef struct kd_ckpt_reader {
    char path[512];
    int fd;
    uint64_t file_bytes;
    kd_ckpt_meta meta;
    kd_ckpt_entry *entries;
    uint32_t n_entries;
} kd_ckpt_reader;

/* Open and validate header and directory (not the section payloads). */
kd_status kd_ckpt_open(const char *path, kd_ckpt_reader *r, kd_err *err);
const kd_ckpt_entry *kd_ckpt_find(const kd_ckpt_reader *r, const char *name);
/* Decompress one section into out (exactly its raw size) and verify its checksum. */
kd_status kd_ckpt_read(kd_ckpt_reader *r, const char *name, void *out, size_t bytes, kd_err *err);
/* Decompress and verify every section. */
kd_status kd_ckpt_verify(kd_ckpt_reader *r, kd_err *err);
void kd_ckpt_close(kd_ckpt_reader *r);

/* Save "<dir>/iter_<step>.ckpt", point "<dir>/latest" at it, keep the newest `keep`. */
kd_status kd_ckpt_save(const char *dir, const kd_ckpt_meta *meta, const kd_ckpt_section *secs,
                       int n_secs, const kd_ckpt_write_opts *opts, int keep, char *path_out,
                       size_t path_cap, kd_err *err);
/* The newest checkpoint in dir that verifies: `latest` first, then iter_*.ckpt by step,
 * newest first. Each skipped candidate is described in `skipped` (may be NULL). Returns
 * KD_ENOTFOUND when none is valid. */
kd_status kd_ckpt_find_latest(const char *dir, char *path_out, size_t path_cap, char *skipped,
                              size_t skipped_cap, kd_err *err);

/* 64-bit checksum of a byte range (fast, not cryptographic). */
uint64_t kd_ckpt_checksum(const void *data, size_t bytes);

#endif
