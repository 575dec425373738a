/* test_tfevents.c — TensorBoard event files: the CRC-32C check value, and a written file
 * re-read record by record with both CRCs verified and the scalar fields decoded. (The
 * companion check_tfevents.py reads the same kind of file with TensorBoard itself.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kd_test.h"
#include "proto/tfevents.h"

static uint32_t unmask(uint32_t m)
{
    uint32_t r = m - 0xa282ead8u;
    return (r >> 17) | (r << 15);
}

static void test_crc32c_check_value(void)
{
    KD_EXPECT(kd_crc32c(0, "123456789", 9) == 0xE3069283u); /* the standard check value */
}

static void test_records(void)
{
    char dir[] = "/tmp/kd_tfevents_XXXXXX";
    KD_REQUIRE(mkdtemp(dir) != NULL);
    kd_tfevents w;
    kd_err err = {0};
    KD_REQUIRE(kd_tfevents_open(&w, dir, &err) == KD_OK);
    KD_EXPECT_STR_CONTAINS(w.path, "events.out.tfevents.");
    for (int s = 0; s < 5; s++) KD_REQUIRE(kd_tfevents_scalar(&w, "train/loss_cls", s * 50, 1.5f / (float)(s + 1), &err) == KD_OK);
    char path[600];
    snprintf(path, sizeof path, "%s", w.path);
    kd_tfevents_close(&w);

    FILE *f = fopen(path, "rb");
    KD_REQUIRE(f != NULL);
    int records = 0;
    uint64_t len;
    while (fread(&len, 8, 1, f) == 1) {
        uint32_t len_crc, data_crc;
        unsigned char data[2048];
        KD_REQUIRE(len < sizeof data);
        KD_REQUIRE(fread(&len_crc, 4, 1, f) == 1 && fread(data, 1, len, f) == len && fread(&data_crc, 4, 1, f) == 1);
        KD_EXPECT(unmask(len_crc) == kd_crc32c(0, &len, 8));
        KD_EXPECT(unmask(data_crc) == kd_crc32c(0, data, len));
        KD_EXPECT(data[0] == 0x09); /* wall_time, field 1, fixed64 */
        if (records == 0) {
            KD_EXPECT(memmem(data, len, "brain.Event:2", 13) != NULL);
        } else {
            KD_EXPECT(data[9] == 0x10); /* step, field 2, varint */
            KD_EXPECT(memmem(data, len, "train/loss_cls", 14) != NULL);
            float v;
            memcpy(&v, data + len - 4, 4); /* simple_value is the last field */
            KD_EXPECT(v == 1.5f / (float)records);
        }
        records++;
    }
    fclose(f);
    KD_EXPECT(records == 6);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    KD_TEST_RUN(test_crc32c_check_value);
    KD_TEST_RUN(test_records);
    return kd_test_summary();
}
