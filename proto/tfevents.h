/* tfevents.h — TensorBoard scalar event files, written directly (no Python needed).
 *
 * Format: a TFRecord stream of serialized `Event` protocol buffers. Each record is
 *   uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
 * with masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 and CRC-32C (Castagnoli).
 * The first event carries file_version "brain.Event:2"; each scalar is an Event with
 * wall_time (field 1, double), step (field 2, int64) and summary (field 5) holding one
 * Summary.Value {tag (1, string), simple_value (2, float)}.
 * The file is named events.out.tfevents.<seconds>.<host> so TensorBoard finds it.
 */
#ifndef KD_TFEVENTS_H
#define KD_TFEVENTS_H

#include <stdint.h>
#include <stdio.h>

#include "proto/status.h"

typedef struct kd_tfevents {
    FILE *f;
    char path[600];
} kd_tfevents;

kd_status kd_tfevents_open(kd_tfevents *w, const char *dir, kd_err *err);
kd_status kd_tfevents_scalar(kd_tfevents *w, const char *tag, int64_t step, float value, kd_err *err);
void kd_tfevents_flush(kd_tfevents *w);
void kd_tfevents_close(kd_tfevents *w);

uint32_t kd_crc32c(uint32_t crc, const void *data, size_t bytes);

#endif
