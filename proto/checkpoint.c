/* checkpoint.c — the checkpoint container and its crash-safe life on disk (see
 * checkpoint.h). Only rank 0 calls the writers; any rank may read.
 *
 * Conventions: every integer on disk is little-endian (the hosts we run on are); a reader
 * trusts nothing: sizes are checked against the file size before any allocation, names are
 * NUL-checked, and each section's raw checksum is verified before its bytes are used.
 */
#include "proto/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static const char k_magic[8] = {'K', 'D', 'C', 'K', 'P', 'T', '\r', '\n'};

typedef struct ckpt_header {
    char magic[8];
    uint32_t version, n_sections;
    uint64_t config_hash, step, epoch;
    uint32_t world_size, flags;
    uint64_t dir_offset, dir_bytes;
    uint64_t header_checksum; /* of the 64 bytes above */
} ckpt_header;
_Static_assert(sizeof(ckpt_header) == 72, "header is 72 bytes on disk");
_Static_assert(sizeof(kd_ckpt_entry) == 112, "directory entry is 112 bytes on disk");

/* ---- checksum --------------------------------------------------------------------- */

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t kd_ckpt_checksum(const void *data, size_t bytes)
{
    const uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full, P3 = 0x165667B19E3779F9ull;
    const unsigned char *p = data;
    uint64_t lane[4] = {P1 + P2, P2, 0, (uint64_t)0 - P1};
    size_t n = bytes;
    while (n >= 32) {
        for (int i = 0; i < 4; i++) {
            uint64_t w;
            memcpy(&w, p + 8 * i, 8);
            lane[i] = rotl64(lane[i] + w * P2, 31) * P1;
        }
        p += 32;
        n -= 32;
    }
    uint64_t h = rotl64(lane[0], 1) + rotl64(lane[1], 7) + rotl64(lane[2], 12) + rotl64(lane[3], 18);
    h += (uint64_t)bytes;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = rotl64(h ^ (rotl64(w * P2, 31) * P1), 27) * P1 + P3;
        p += 8;
        n -= 8;
    }
    while (n--) h = rotl64(h ^ (*p++ * P3), 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

/* ---- byte planes -------------------------------------------------------------------- */

static void planes_split(const unsigned char *in, unsigned char *out, size_t bytes)
{
    size_t n = bytes / 4;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) out[(size_t)b * n + i] = in[4 * i + (size_t)b];
}

static void planes_join(const unsigned char *in, unsigned char *out, size_t bytes)
{
    size_t n = bytes / 4;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) out[4 * i + (size_t)b] = in[(size_t)b * n + i];
}

/* ---- low-level file helpers ------------------------------------------------------------ */

static kd_status write_all(int fd, const void *buf, size_t bytes, const char *path, kd_err *err)
{
    const char *p = buf;
    while (bytes) {
        ssize_t w = write(fd, p, bytes);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return kd_errf(err, KD_EIO, "%s: write failed: %s", path, strerror(errno));
        p += w;
        bytes -= (size_t)w;
    }
    return KD_OK;
}

static kd_status read_at(int fd, void *buf, size_t bytes, uint64_t off, const char *path, kd_err *err)
{
    char *p = buf;
    while (bytes) {
        ssize_t r = pread(fd, p, bytes, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return kd_errf(err, KD_ECORRUPT, "%s: truncated (read at offset %llu failed)", path, (unsigned long long)off);
        p += r;
        off += (uint64_t)r;
        bytes -= (size_t)r;
    }
    return KD_OK;
}

static void dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, cap, ".");
    else if (slash == path) snprintf(dir, cap, "/");
    else snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

static kd_status fsync_dir(const char *path, kd_err *err)
{
    char dir[512];
    dir_of(path, dir, sizeof dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return kd_errf(err, KD_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc) return kd_errf(err, KD_EIO, "%s: fsync of folder failed: %s", dir, strerror(errno));
    return KD_OK;
}

/* Open "<path>.tmp.<pid>" for a fresh atomic write. */
static int open_tmp(const char *path, char *tmp, size_t cap, kd_err *err)
{
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) kd_errf(err, KD_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    return fd;
}

static kd_status commit_tmp(int fd, const char *tmp, const char *path, kd_err *err)
{
    if (fsync(fd)) {
        close(fd);
        unlink(tmp);
        return kd_errf(err, KD_EIO, "%s: fsync failed: %s", tmp, strerror(errno));
    }
    close(fd);
    if (rename(tmp, path)) {
        unlink(tmp);
        return kd_errf(err, KD_EIO, "%s: rename to %s failed: %s", tmp, path, strerror(errno));
    }
    return fsync_dir(path, err);
}

/* ---- writer ------------------------------------------------------------------------- */

static kd_status write_section(int fd, ZSTD_CCtx *cctx, const kd_ckpt_section *s, uint64_t *off,
                               kd_ckpt_entry *e, const char *path, kd_err *err)
{
    const void *src = s->data;
    unsigned char *planes = NULL;
    if (s->encoding == KD_CKPT_F32_PLANES) {
        if (s->bytes % 4) return kd_errf(err, KD_EINVAL, "%s: section %s: %zu bytes is not whole floats", path, s->name, s->bytes);
        planes = kd_xmalloc(s->bytes);
        planes_split(s->data, planes, s->bytes);
        src = planes;
    }
    size_t cap = ZSTD_compressBound(s->bytes);
    void *comp = kd_xmalloc(cap);
    size_t got = ZSTD_compress2(cctx, comp, cap, src, s->bytes);
    free(planes);
    if (ZSTD_isError(got)) {
        free(comp);
        return kd_errf(err, KD_EIO, "%s: section %s: zstd: %s", path, s->name, ZSTD_getErrorName(got));
    }
    kd_status st = write_all(fd, comp, got, path, err);
    uint64_t comp_sum = kd_ckpt_checksum(comp, got);
    free(comp);
    if (st) return st;
    memset(e, 0, sizeof *e);
    e->comp_checksum = comp_sum;
    snprintf(e->name, sizeof e->name, "%s", s->name);
    e->encoding = (uint32_t)s->encoding;
    e->offset = *off;
    e->comp_bytes = got;
    e->raw_bytes = s->bytes;
    e->checksum = kd_ckpt_checksum(s->data, s->bytes);
    *off += got;
    return KD_OK;
}

kd_status kd_ckpt_write(const char *path, const kd_ckpt_meta *meta, const kd_ckpt_section *secs,
                        int n_secs, const kd_ckpt_write_opts *opts, kd_err *err)
{
    for (int i = 0; i < n_secs; i++) {
        if (strlen(secs[i].name) >= KD_CKPT_NAME_BYTES)
            return kd_errf(err, KD_EINVAL, "%s: section name '%s' too long", path, secs[i].name);
        for (int j = 0; j < i; j++)
            if (!strcmp(secs[i].name, secs[j].name))
                return kd_errf(err, KD_EINVAL, "%s: section '%s' given twice", path, secs[i].name);
    }
    char tmp[600];
    int fd = open_tmp(path, tmp, sizeof tmp, err);
    if (fd < 0) return KD_EIO;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    KD_CHECK(cctx != NULL);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, opts && opts->level ? opts->level : 3);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    if (opts && opts->threads > 0) ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, opts->threads);

    ckpt_header h = {.version = KD_CKPT_VERSION, .n_sections = (uint32_t)n_secs,
                     .config_hash = meta->config_hash, .step = meta->step, .epoch = meta->epoch,
                     .world_size = meta->world_size};
    memcpy(h.magic, k_magic, 8);
    kd_ckpt_entry *dir = kd_xcalloc((size_t)n_secs + 1, sizeof *dir);
    uint64_t off = sizeof h;
    kd_status st = KD_OK;
    if (lseek(fd, (off_t)off, SEEK_SET) < 0) st = kd_errf(err, KD_EIO, "%s: seek failed", tmp);
    for (int i = 0; !st && i < n_secs; i++) st = write_section(fd, cctx, &secs[i], &off, &dir[i], tmp, err);
    ZSTD_freeCCtx(cctx);
    if (!st) {
        uint64_t dir_bytes = (uint64_t)n_secs * sizeof *dir;
        uint64_t dir_sum = kd_ckpt_checksum(dir, dir_bytes);
        h.dir_offset = off;
        h.dir_bytes = dir_bytes;
        h.header_checksum = kd_ckpt_checksum(&h, offsetof(ckpt_header, header_checksum));
        st = write_all(fd, dir, dir_bytes, tmp, err);
        if (!st) st = write_all(fd, &dir_sum, sizeof dir_sum, tmp, err);
        if (!st && pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
            st = kd_errf(err, KD_EIO, "%s: header write failed: %s", tmp, strerror(errno));
    }
    free(dir);
    if (st) {
        close(fd);
        unlink(tmp);
        return st;
    }
    return commit_tmp(fd, tmp, path, err);
}

/* ---- reader ------------------------------------------------------------------------- */

kd_status kd_ckpt_open(const char *path, kd_ckpt_reader *r, kd_err *err)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    snprintf(r->path, sizeof r->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kd_errf(err, KD_ENOTFOUND, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    ckpt_header h;
    kd_status st = KD_OK;
    if (fstat(fd, &sb) || sb.st_size < (off_t)sizeof h) st = kd_errf(err, KD_ECORRUPT, "%s: truncated (no header)", path);
    if (!st) st = read_at(fd, &h, sizeof h, 0, path, err);
    if (!st && memcmp(h.magic, k_magic, 8)) st = kd_errf(err, KD_ECORRUPT, "%s: not a crosskd checkpoint (bad magic)", path);
    if (!st && h.header_checksum != kd_ckpt_checksum(&h, offsetof(ckpt_header, header_checksum)))
        st = kd_errf(err, KD_ECORRUPT, "%s: header checksum mismatch", path);
    if (!st && h.version != KD_CKPT_VERSION)
        st = kd_errf(err, KD_EUNSUPPORTED, "%s: checkpoint version %u, this build reads %d", path, h.version, KD_CKPT_VERSION);
    uint64_t fsize = (uint64_t)sb.st_size;
    if (!st && (h.dir_bytes != (uint64_t)h.n_sections * sizeof(kd_ckpt_entry) || h.dir_offset > fsize ||
                fsize - h.dir_offset != h.dir_bytes + 8))
        st = kd_errf(err, KD_ECORRUPT, "%s: truncated or malformed (directory does not fit the file)", path);
    kd_ckpt_entry *dir = NULL;
    if (!st) {
        dir = kd_xmalloc(h.dir_bytes + 8);
        st = read_at(fd, dir, h.dir_bytes + 8, h.dir_offset, path, err);
        uint64_t want;
        memcpy(&want, (char *)dir + h.dir_bytes, 8);
        if (!st && want != kd_ckpt_checksum(dir, h.dir_bytes))
            st = kd_errf(err, KD_ECORRUPT, "%s: directory checksum mismatch", path);
    }
    for (uint32_t i = 0; !st && i < h.n_sections; i++) {
        kd_ckpt_entry *e = &dir[i];
        if (!memchr(e->name, 0, sizeof e->name) || e->encoding > KD_CKPT_F32_PLANES ||
            e->offset < sizeof h || e->offset > h.dir_offset || e->comp_bytes > h.dir_offset - e->offset)
            st = kd_errf(err, KD_ECORRUPT, "%s: directory entry %u is malformed", path, i);
    }
    if (st) {
        free(dir);
        close(fd);
        return st;
    }
    r->fd = fd;
    r->file_bytes = fsize;
    r->meta = (kd_ckpt_meta){h.config_hash, h.step, h.epoch, h.world_size};
    r->entries = dir;
    r->n_entries = h.n_sections;
    return KD_OK;
}

const kd_ckpt_entry *kd_ckpt_find(const kd_ckpt_reader *r, const char *name)
{
    for (uint32_t i = 0; i < r->n_entries; i++)
        if (!strcmp(r->entries[i].name, name)) return &r->entries[i];
    return NULL;
}

static kd_status read_entry(kd_ckpt_reader *r, const kd_ckpt_entry *e, void *out, kd_err *err)
{
    void *comp = kd_xmalloc(e->comp_bytes);
    kd_status st = read_at(r->fd, comp, e->comp_bytes, e->offset, r->path, err);
    if (!st && kd_ckpt_checksum(comp, e->comp_bytes) != e->comp_checksum)
        st = kd_errf(err, KD_ECORRUPT, "%s: section %s: stored bytes checksum mismatch", r->path, e->name);
    void *dst = e->encoding == KD_CKPT_F32_PLANES ? kd_xmalloc(e->raw_bytes) : out;
    if (!st) {
        size_t got = ZSTD_decompress(dst, e->raw_bytes, comp, e->comp_bytes);
        if (ZSTD_isError(got) || got != e->raw_bytes)
            st = kd_errf(err, KD_ECORRUPT, "%s: section %s is corrupt (%s)", r->path, e->name,
                         ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size");
    }
    if (!st && e->encoding == KD_CKPT_F32_PLANES) planes_join(dst, out, e->raw_bytes);
    if (dst != out) free(dst);
    free(comp);
    if (!st && kd_ckpt_checksum(out, e->raw_bytes) != e->checksum)
        st = kd_errf(err, KD_ECORRUPT, "%s: section %s checksum mismatch", r->path, e->name);
    return st;
}

kd_status kd_ckpt_read(kd_ckpt_reader *r, const char *name, void *out, size_t bytes, kd_err *err)
{
    const kd_ckpt_entry *e = kd_ckpt_find(r, name);
    if (!e) return kd_errf(err, KD_ENOTFOUND, "%s: no section '%s'", r->path, name);
    if (e->raw_bytes != bytes)
        return kd_errf(err, KD_EINVAL, "%s: section %s holds %llu bytes, expected %zu", r->path, name,
                       (unsigned long long)e->raw_bytes, bytes);
    return read_entry(r, e, out, err);
}

kd_status kd_ckpt_verify(kd_ckpt_reader *r, kd_err *err)
{
    for (uint32_t i = 0; i < r->n_entries; i++) {
        void *buf = kd_xmalloc(r->entries[i].raw_bytes);
        kd_status st = read_entry(r, &r->entries[i], buf, err);
        free(buf);
        if (st) return st;
    }
    return KD_OK;
}

void kd_ckpt_close(kd_ckpt_reader *r)
{
    if (r->fd >= 0) close(r->fd);
    free(r->entries);
    r->entries = NULL;
    r->fd = -1;
}

/* ---- a folder of checkpoints ----------------------------------------------------------- */

static int parse_step(const char *name, unsigned long long *step)
{
    int used = 0;
    if (sscanf(name, "iter_%llu.ckpt%n", step, &used) == 1 && name[used] == '\0') return 1;
    return 0;
}

/* Steps of every iter_*.ckpt in dir, newest first. */
static size_t list_steps(const char *dir, unsigned long long **steps_out)
{
    DIR *d = opendir(dir);
    size_t n = 0, cap = 16;
    unsigned long long *steps = kd_xmalloc(cap * sizeof *steps);
    for (struct dirent *de; d && (de = readdir(d));) {
        unsigned long long s;
        if (!parse_step(de->d_name, &s)) continue;
        if (n == cap) steps = kd_xrealloc(steps, (cap *= 2) * sizeof *steps);
        steps[n++] = s;
    }
    if (d) closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort, descending */
        for (size_t j = i; j > 0 && steps[j] > steps[j - 1]; j--) {
            unsigned long long t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    *steps_out = steps;
    return n;
}

kd_status kd_ckpt_save(const char *dir, const kd_ckpt_meta *meta, const kd_ckpt_section *secs,
                       int n_secs, const kd_ckpt_write_opts *opts, int keep, char *path_out,
                       size_t path_cap, kd_err *err)
{
    char path[600], latest[600], tmp[700], name[64];
    snprintf(name, sizeof name, "iter_%llu.ckpt", (unsigned long long)meta->step);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    kd_status st = kd_ckpt_write(path, meta, secs, n_secs, opts, err);
    if (st) return st;
    snprintf(latest, sizeof latest, "%s/latest", dir);
    int fd = open_tmp(latest, tmp, sizeof tmp, err);
    if (fd < 0) return KD_EIO;
    char line[80];
    int len = snprintf(line, sizeof line, "%s\n", name);
    st = write_all(fd, line, (size_t)len, tmp, err);
    if (st) {
        close(fd);
        unlink(tmp);
        return st;
    }
    if ((st = commit_tmp(fd, tmp, latest, err))) return st;
    /* Only now that `latest` is durable: drop checkpoints beyond the newest `keep`. */
    unsigned long long *steps;
    size_t n = list_steps(dir, &steps);
    for (size_t i = (size_t)(keep > 0 ? keep : 1); i < n; i++) {
        char old[600];
        snprintf(old, sizeof old, "%s/iter_%llu.ckpt", dir, steps[i]);
        unlink(old);
    }
    free(steps);
    if (path_out) snprintf(path_out, path_cap, "%s", path);
    return KD_OK;
}

static kd_status verify_path(const char *path, kd_err *err)
{
    kd_ckpt_reader r;
    kd_status st = kd_ckpt_open(path, &r, err);
    if (!st) {
        st = kd_ckpt_verify(&r, err);
        kd_ckpt_close(&r);
    }
    return st;
}

static void note_skip(char *skipped, size_t cap, const char *msg)
{
    if (!skipped) return;
    size_t used = strlen(skipped);
    if (used + 1 < cap) snprintf(skipped + used, cap - used, "%s%s", used ? "; " : "", msg);
}

kd_status kd_ckpt_find_latest(const char *dir, char *path_out, size_t path_cap, char *skipped,
                              size_t skipped_cap, kd_err *err)
{
    if (skipped && skipped_cap) skipped[0] = '\0';
    char latest[600], name[256] = "", path[900];
    kd_err e = {0};
    snprintf(latest, sizeof latest, "%s/latest", dir);
    FILE *f = fopen(latest, "r");
    if (f) {
        if (fgets(name, sizeof name, f)) name[strcspn(name, "\r\n")] = '\0';
        fclose(f);
        unsigned long long s;
        if (parse_step(name, &s)) {
            snprintf(path, sizeof path, "%s/%s", dir, name);
            if (!verify_path(path, &e)) {
                snprintf(path_out, path_cap, "%s", path);
                return KD_OK;
            }
            note_skip(skipped, skipped_cap, e.msg);
        } else {
            note_skip(skipped, skipped_cap, "latest: does not name a checkpoint");
        }
    }
    unsigned long long *steps;
    size_t n = list_steps(dir, &steps);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/iter_%llu.ckpt", dir, steps[i]);
        if (!strcmp(path + strlen(dir) + 1, name)) continue; /* already tried through latest */
        if (!verify_path(path, &e)) {
            free(steps);
            snprintf(path_out, path_cap, "%s", path);
            return KD_OK;
        }
        note_skip(skipped, skipped_cap, e.msg);
    }
    free(steps);
    return kd_errf(err, KD_ENOTFOUND, "%s: no valid checkpoint", dir);
}
