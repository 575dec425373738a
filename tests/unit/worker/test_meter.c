/* test_meter.c — window means, ETA formatting (Python timedelta style) and the log line. */
#include "kd_test.h"
#include "worker/meter.h"

static void test_eta(void)
{
    char s[64];
    kd_meter_format_eta(754, s, sizeof s);
    KD_EXPECT(strcmp(s, "0:12:34") == 0);
    kd_meter_format_eta(93784, s, sizeof s);
    KD_EXPECT(strcmp(s, "1 day, 2:03:04") == 0);
    kd_meter_format_eta(2 * 86400 + 5, s, sizeof s);
    KD_EXPECT(strcmp(s, "2 days, 0:00:05") == 0);
    kd_meter_format_eta(-3, s, sizeof s);
    KD_EXPECT(strcmp(s, "0:00:00") == 0);
}

static void test_window(void)
{
    kd_meter m;
    kd_meter_init(&m, 4);
    const char *names[] = {"loss_cls", "loss"};
    for (int i = 0; i < 4; i++) {
        double v[] = {1.0 + i, 10.0 + i};
        kd_meter_add(&m, names, v, 2, i == 0 ? 5.0 : 0.5, 0.1);
    }
    KD_EXPECT_NEAR(kd_meter_mean_iter_time(&m), 0.5, 0, 1e-12); /* first step excluded */
    kd_meter_line at = {.epoch = 1, .max_epochs = 12, .iter_in_epoch = 4, .iters_per_epoch = 100,
                        .global_iter = 4, .max_iters = 1204, .lr = 0.00125};
    char text[1024], json[2048];
    kd_meter_flush(&m, &at, text, sizeof text, json, sizeof json);
    KD_EXPECT_STR_CONTAINS(text, "Epoch(train) [1][  4/100]  lr: 1.2500e-03  eta: 0:10:00");
    KD_EXPECT_STR_CONTAINS(text, "time: 1.6250  data_time: 0.1000");
    KD_EXPECT_STR_CONTAINS(text, "loss: 11.5000  loss_cls: 2.5000"); /* total first */
    KD_EXPECT_STR_CONTAINS(json, "\"loss_cls\":2.5");
    KD_EXPECT_STR_CONTAINS(json, "\"iter\":4");
    KD_EXPECT(m.window == 0);
}

int main(void)
{
    KD_TEST_RUN(test_eta);
    KD_TEST_RUN(test_window);
    return kd_test_summary();
}
