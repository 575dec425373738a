/* test_arch.c — the architecture tables against known numbers: the ResNet backbones at base
 * width 64 have torchvision's parameter counts without the classifier (18: 11,176,512;
 * 34: 21,284,672; 50: 23,508,032; 101: 42,500,160), the full GFL-R50 carries MMDetection's
 * key names, frozen_stages=1 freezes exactly the stem and layer1, and the planner lays out
 * trainable parameters first; model.bbox_head.norm_cfg.type picks the tower block (and its
 * keys) over the head type's default. Also: unsupported options fail with a message naming the key.
 */
#include <stdio.h>
#include <string.h>

#include "kd_test.h"
#include "proto/log.h"
#include "worker/model/model.h"
#include "worker/options.h"

static const kd_backend *be;

static kd_model *make(long long depth, long long frozen, int inference)
{
    static kd_config cfg;
    kd_err err;
    if (kd_options_load(&cfg, NULL, NULL, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    cfg.model.backbone.depth = depth;
    cfg.model.backbone.frozen_stages = frozen;
    kd_model_opts o = {1, 64, 64, inference, -1};
    kd_model *m = NULL;
    if (kd_model_create(be, &cfg.model, &o, &m, &err)) fprintf(stderr, "%s\n", err.msg);
    return m;
}

static void backbone_counts(void)
{
    static const long long depth[4] = {18, 34, 50, 101};
    static const size_t want[4] = {11176512, 21284672, 23508032, 42500160};
    for (int i = 0; i < 4; i++) {
        kd_model *m = make(depth[i], -1, 1);
        KD_REQUIRE(m);
        size_t n = 0;
        for (int k = 0; k < m->params.n; k++) {
            const kd_param *p = &m->params.p[k];
            if (!strncmp(p->name, "backbone.", 9) && p->dtype == KD_DT_F32 && !strstr(p->name, "running_"))
                n += p->elems;
        }
        KD_EXPECT_MSG(n == want[i], "ResNet-%lld: %zu parameters, torchvision has %zu", depth[i], n, want[i]);
        kd_model_destroy(m);
    }
}

static void gfl_r50_keys(void)
{
    kd_model *m = make(50, 1, 0);
    KD_REQUIRE(m);
    static const char *const keys[] = {
        "backbone.conv1.weight", "backbone.bn1.running_var", "backbone.layer1.0.downsample.0.weight",
        "backbone.layer4.2.conv3.weight", "backbone.layer3.5.bn2.num_batches_tracked",
        "neck.lateral_convs.2.conv.bias", "neck.fpn_convs.4.conv.weight",
        "bbox_head.cls_convs.3.conv.weight", "bbox_head.reg_convs.0.gn.bias",
        "bbox_head.gfl_cls.bias", "bbox_head.gfl_reg.weight", "bbox_head.scales.4.scale",
        "bbox_head.integral.project"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        KD_EXPECT_MSG(kd_params_find(&m->params, keys[i]) >= 0, "%s", keys[i]);
    KD_EXPECT(kd_params_find(&m->params, "bbox_head.cls_convs.0.conv.bias") < 0); /* norm follows */
    int ig = kd_params_find(&m->params, "bbox_head.gfl_reg.weight");
    KD_EXPECT(m->params.p[ig].shape[0] == 68 && m->params.p[ig].shape[1] == 256);
    /* frozen_stages = 1: stem and layer1 frozen, layer2 trainable; trainable entries first */
    size_t train = 0;
    for (int k = 0; k < m->params.n; k++) {
        const kd_param *p = &m->params.p[k];
        int frozen = !strncmp(p->name, "backbone.conv1", 14) || !strncmp(p->name, "backbone.bn1", 12) ||
                     !strncmp(p->name, "backbone.layer1.", 16) || strstr(p->name, "running_") ||
                     p->dtype != KD_DT_F32 || strstr(p->name, "integral");
        KD_EXPECT_MSG(p->trainable == !frozen, "%s", p->name);
        if (p->trainable) {
            KD_EXPECT(p->offset + p->elems <= m->params.train_elems);
            train += p->elems;
        }
    }
    KD_EXPECT(train == m->params.train_elems);
    KD_EXPECT(m->params.grad && m->params.mom);
    kd_model_destroy(m);
    kd_model *t = make(50, 1, 1);
    KD_REQUIRE(t);
    KD_EXPECT(!t->params.grad && !t->params.mom); /* inference: no gradient or momentum arenas */
    kd_model_destroy(t);
}

/* model.bbox_head.norm_cfg.type: the head type's block by default (RetinaHead conv + bias,
 * the others conv + GN), GN or none when set, with MMDetection's keys for each. */
static void head_norm(void)
{
    static kd_config cfg;
    kd_err err;
    kd_model_opts o = {1, 64, 64, 0, -1};
    const struct { int type, norm_type, gn; } cases[] = {
        {KD_DET_RETINANET, 0, 0}, {KD_DET_RETINANET, 1, 1}, {KD_DET_GFL, 0, 1}, {KD_DET_GFL, 2, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        KD_REQUIRE(kd_options_load(&cfg, NULL, NULL, 0, &err) == KD_OK);
        cfg.model.type = cfg.model.bbox_head.type = cases[i].type;
        cfg.model.bbox_head.norm_type = cases[i].norm_type;
        kd_model *m = NULL;
        KD_REQUIRE(kd_model_create(be, &cfg.model, &o, &m, &err) == KD_OK);
        KD_EXPECT_MSG((kd_params_find(&m->params, "bbox_head.cls_convs.3.gn.weight") >= 0) == cases[i].gn,
                      "case %zu: gn keys", i);
        KD_EXPECT_MSG((kd_params_find(&m->params, "bbox_head.reg_convs.0.conv.bias") >= 0) == !cases[i].gn,
                      "case %zu: conv bias keys", i);
        KD_EXPECT(m->head.norm == cases[i].gn);
        kd_model_destroy(m);
    }
}

static void unsupported(void)
{
    static kd_config cfg;
    kd_err err;
    KD_REQUIRE(kd_options_load(&cfg, NULL, NULL, 0, &err) == KD_OK);
    kd_model_opts o = {1, 64, 64, 0, -1};
    kd_model *m = NULL;
    cfg.model.type = KD_DET_ATSS; /* model.type and model.bbox_head.type must agree */
    KD_EXPECT(kd_model_create(be, &cfg.model, &o, &m, &err) != KD_OK);
    KD_EXPECT_STR_CONTAINS(err.msg, "does not match model.bbox_head.type");
    cfg.model.type = KD_DET_GFL;
    cfg.model.bbox_head.gn_groups = 7;
    KD_EXPECT(kd_model_create(be, &cfg.model, &o, &m, &err) != KD_OK);
    KD_EXPECT_STR_CONTAINS(err.msg, "num_groups");
    cfg.model.bbox_head.gn_groups = 32;
    cfg.model.bbox_head.strides.n = 4;
    KD_EXPECT(kd_model_create(be, &cfg.model, &o, &m, &err) != KD_OK);
    KD_EXPECT_STR_CONTAINS(err.msg, "strides");
    cfg.model.bbox_head.strides.n = 5;
    o.hold_idx = 5;
    KD_EXPECT(kd_model_create(be, &cfg.model, &o, &m, &err) != KD_OK);
    KD_EXPECT_STR_CONTAINS(err.msg, "reused_teacher_head_idx");
    KD_EXPECT(m == NULL);
}

int main(void)
{
    kd_log_init(0);
    kd_log_set_level(KD_LOG_WARN);
    kd_err err;
    if (kd_backend_open("cpu", 0, &be, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    KD_TEST_RUN(backbone_counts);
    KD_TEST_RUN(gfl_r50_keys);
    KD_TEST_RUN(head_norm);
    KD_TEST_RUN(unsupported);
    be->close(be);
    return kd_test_summary();
}
